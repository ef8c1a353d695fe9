"""Listings of containers: ps and stats."""
from berth.client.commands import Exit, filters

PS_TABLE = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}"
            "\t{{.Names}}")
PS_HEADERS = {"ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedAt": "CREATED AT",
              "LocalVolumes": "LOCAL VOLUMES"}


def port_text(ports):
    out = []
    for p in sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""), p.get("IP", ""))):
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            ip = f"[{ip}]" if ":" in ip else ip
            out.append(f"{ip}:{p['PublicPort']}->{p['PrivatePort']}/{p.get('Type', 'tcp')}")
        else:
            out.append(f"{p['PrivatePort']}/{p.get('Type', 'tcp')}")
    return ", ".join(out)


def ps_row(c, trunc=True, now=None):
    from berth.client.format import Row, ago, ellipsis, go_quote, human_size, local_time
    cmd = c.get("Command", "")
    names = [n[1:] if n.startswith("/") else n for n in c.get("Names") or []]
    if trunc:
        names = [n for n in names if "/" not in n][:1] or names[:1]
    size = ""
    if "SizeRw" in c:
        size = f"{human_size(c.get('SizeRw') or 0, 3)} (virtual {human_size(c.get('SizeRootFs') or 0, 3)})"
    return Row("container", {
            "ID": c["Id"][:12] if trunc else c["Id"], "Image": c.get("Image", ""),
            "Command": go_quote(ellipsis(cmd, 20) if trunc else cmd),
            "CreatedAt": local_time(c.get("Created", 0)),
            "RunningFor": ago(c.get("Created", 0), now), "Ports": port_text(c.get("Ports")),
            "State": c.get("State", ""), "Status": c.get("Status", ""), "Size": size,
            "Names": ",".join(names),
            "Labels": ",".join(f"{k}={v}" for k, v in (c.get("Labels") or {}).items()),
            "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []),
            "Networks": ",".join(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())},
        labels=c.get("Labels"))


def cmd_ps(ctx, argv):
    from berth.client.format import render
    o, _ = ctx.parse(argv, "ps", max_args=0)
    limit = 1 if o["latest"] else int(o["last"]) if o["last"] else None
    items = ctx.client.get("/containers/json", all=o["all"] or limit is not None or None,
                           limit=limit, size=o["size"] or None, filters=filters(o["filter"])) or []
    trunc = not o["no_trunc"]
    if o["quiet"]:
        ctx.out.write("".join((c["Id"][:12] if trunc else c["Id"]) + "\n" for c in items))
        return
    rows = [ps_row(c, trunc) for c in items]
    table = PS_TABLE + ("\t{{.Size}}" if o["size"] else "")
    ctx.out.write(render(rows, o["format"], table, PS_HEADERS))


def stats_row(name, s):
    from berth.client.format import bytes_size, human_size
    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sys_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    ncpu = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_pct = cpu_delta / sys_delta * ncpu * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    st = mem.get("stats") or {}
    used = (mem.get("usage") or 0) - st.get("total_inactive_file", st.get("inactive_file", 0) if "inactive_file" in st else st.get("cache", 0))
    used = max(used, 0)
    limit = mem.get("limit") or 0
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    rd = sum(b.get("value", 0) for b in blk if (b.get("op") or "").lower() == "read")
    wr = sum(b.get("value", 0) for b in blk if (b.get("op") or "").lower() == "write")
    cid = s.get("id", "")
    return {"ID": cid[:12], "Container": name, "Name": (s.get("name") or name).lstrip("/"),
            "CPUPerc": "%.2f%%" % cpu_pct,
            "MemUsage": f"{bytes_size(used)} / {bytes_size(limit)}",
            "MemPerc": "%.2f%%" % (used / limit * 100 if limit else 0),
            "NetIO": f"{human_size(rx, 3)} / {human_size(tx, 3)}",
            "BlockIO": f"{human_size(rd, 3)} / {human_size(wr, 3)}",
            "PIDs": str((s.get("pids_stats") or {}).get("current", 0))}


STATS_TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
               "\t{{.BlockIO}}\t{{.PIDs}}")
STATS_HEADERS = {"ID": "CONTAINER ID", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
                 "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
                 "Container": "CONTAINER"}


def cmd_stats(ctx, argv):
    import time
    from berth.client.api import APIError
    from berth.client.format import render
    o, args = ctx.parse(argv, "stats")
    names = args or [c["Id"] for c in ctx.client.get("/containers/json", all=o["all"] or None) or []]
    tty = ctx.out.isatty()
    while True:
        rows, failed = [], False
        for n in names:
            try:
                s = ctx.client.get(f"/containers/{n}/stats", stream=0)
                rows.append(stats_row(n, s))
            except APIError as e:
                if args:
                    ctx.daemon_error(e)
                    failed = True
        text = render(rows, o["format"], STATS_TABLE, STATS_HEADERS, kind="stats")
        if o["no_stream"]:
            ctx.out.write(text)
            if failed:
                raise Exit(1)
            return
        ctx.out.write(("\x1b[2J\x1b[H" if tty else "") + text)
        ctx.out.flush()
        time.sleep(1)
