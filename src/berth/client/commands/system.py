"""version, info, inspect (any object), events, system df, system prune,
login, logout."""
import os
import sys

from berth.client.commands import Exit, filters, prune_report


def client_version():
    from berth import __version__
    return __version__


def _arch():
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def cmd_version(ctx, argv):
    from berth.client.api import API_VERSION, APIError, ConnectError
    o, _ = ctx.parse(argv, "version", max_args=0)
    client = {"Platform": {"Name": "berth"}, "Version": client_version(), "ApiVersion": API_VERSION,
              "DefaultAPIVersion": API_VERSION, "GoVersion": "python" + sys.version.split()[0],
              "Os": "linux", "Arch": _arch(), "Context": "default"}
    server, error = None, None
    try:
        server = ctx.client.get("/version")
    except (APIError, ConnectError) as e:
        error = e
    spoken = ctx.client.version if server else None
    if spoken and spoken != API_VERSION:
        client["ApiVersion"] = spoken
    if o["format"]:
        from berth.client.format import render
        ctx.out.write(render([{"Client": client, "Server": server}], o["format"], None))
    else:
        c = client
        api = c["ApiVersion"] + (f" (downgraded from {API_VERSION})" if c["ApiVersion"] != API_VERSION
                                 else "")
        ctx.out.write(f"Client:\n Version:           {c['Version']}\n API version:       {api}\n"
                      f" Python version:    {c['GoVersion'][6:]}\n OS/Arch:           linux/{c['Arch']}\n"
                      f" Context:           default\n")
        if server:
            s = server
            ctx.out.write(f"\nServer: {s.get('Platform', {}).get('Name', 'berth')}\n Engine:\n"
                          f"  Version:          {s.get('Version', '')}\n"
                          f"  API version:      {s.get('ApiVersion', '')} (minimum version "
                          f"{s.get('MinAPIVersion', '')})\n"
                          f"  Go version:       {s.get('GoVersion', '')}\n"
                          f"  Git commit:       {s.get('GitCommit', '')}\n"
                          f"  Built:            {s.get('BuildTime', '')}\n"
                          f"  OS/Arch:          {s.get('Os', '')}/{s.get('Arch', '')}\n"
                          f"  Experimental:     {str(bool(s.get('Experimental'))).lower()}\n")
    if error:
        ctx.fail(str(error) if isinstance(error, ConnectError) else f"Error response from daemon: {error}")
        raise Exit(1)


def cmd_info(ctx, argv):
    o, _ = ctx.parse(argv, "info", max_args=0)
    info = ctx.client.get("/info")
    if o["format"]:
        from berth.client.format import render
        ctx.out.write(render([info], o["format"], None))
        return
    from berth.client.format import bytes_size
    g = info.get
    lines = ["Client:", f" Version:    {client_version()}", " Context:    default",
             f" Debug Mode: {str(bool(ctx.gopts['debug'])).lower()}", "", "Server:",
             f" Containers: {g('Containers', 0)}", f"  Running: {g('ContainersRunning', 0)}",
             f"  Paused: {g('ContainersPaused', 0)}", f"  Stopped: {g('ContainersStopped', 0)}",
             f" Images: {g('Images', 0)}", f" Server Version: {g('ServerVersion', '')}",
             f" Storage Driver: {g('Driver', '')}"]
    lines += [f"  {k}: {v}" for k, v in g("DriverStatus") or []]
    lines += [f" Logging Driver: {g('LoggingDriver', '')}", f" Cgroup Driver: {g('CgroupDriver', '')}",
              f" Cgroup Version: {g('CgroupVersion', '')}", " Plugins:"]
    lines += [f"  {k}: {' '.join(v or [])}" for k, v in (g("Plugins") or {}).items()]
    lines += [f" Runtimes: {' '.join(sorted(g('Runtimes') or {}))}",
              f" Default Runtime: {g('DefaultRuntime', '')}",
              f" Init Binary: {g('InitBinary', '')}", " Security Options:"]
    for opt in g("SecurityOptions") or []:
        parts = dict(p.partition("=")[::2] for p in opt.split(","))
        lines.append(f"  {parts.get('name', opt)}")
        lines += [f"   {k.title()}: {v}" for k, v in parts.items() if k != "name"]
    lines += [f" Kernel Version: {g('KernelVersion', '')}", f" Operating System: {g('OperatingSystem', '')}",
              f" OSType: {g('OSType', '')}", f" Architecture: {g('Architecture', '')}",
              f" CPUs: {g('NCPU', 0)}", f" Total Memory: {bytes_size(g('MemTotal') or 0)}",
              f" Name: {g('Name', '')}", f" ID: {g('ID', '')}",
              f" Docker Root Dir: {g('DockerRootDir', '')}",
              f" Debug Mode: {str(bool(g('Debug'))).lower()}",
              f" Experimental: {str(bool(g('ExperimentalBuild'))).lower()}",
              f" Live Restore Enabled: {str(bool(g('LiveRestoreEnabled'))).lower()}"]
    ctx.out.write("\n".join(lines) + "\n\n")
    for w in g("Warnings") or []:
        ctx.err.write(w + "\n")


# -- inspect --------------------------------------------------------------------

KINDS = {
    "container": lambda c, n, size: c.get(f"/containers/{n}/json", size=size or None),
    "image": lambda c, n, size: c.get(f"/images/{n}/json"),
    "network": lambda c, n, size: c.get(f"/networks/{n}"),
    "volume": lambda c, n, size: c.get(f"/volumes/{n}"),
}


def inspect(ctx, argv, kind=None):
    """Shared by inspect, container/image/volume/network inspect."""
    from berth.client.api import APIError
    o, args = ctx.parse(argv, f"{kind} inspect" if kind else "inspect", min_args=1)
    kinds = [kind] if kind else ([o["type"]] if o.get("type") else list(KINDS))
    for k in kinds:
        if k not in KINDS:
            ctx.fail(f'"{k}" is not a valid value for --type')
            raise Exit(1)
    found, failed = [], False
    for name in args:
        for k in kinds:
            try:
                found.append(KINDS[k](ctx.client, name, o.get("size")))
                break
            except APIError as e:
                if e.status != 404:
                    ctx.daemon_error(e)
                    failed = True
                    break
                last = e
        else:
            if len(kinds) == 1:
                ctx.err.write(f"berth: Error response from daemon: {last}\n")
            else:
                ctx.err.write(f"berth: Error: No such object: {name}\n")
            failed = True
    if o["format"]:
        from berth.client.format import Template, _unescape
        tpl = Template(_unescape(o["format"]) if o["format"] != "json" else "{{json .}}")
        for obj in found:
            ctx.out.write(tpl.render(obj) + "\n")
    else:
        from berth.client.format import indent_json
        ctx.out.write(indent_json(found) + "\n")
    if failed:
        raise Exit(1)


def cmd_inspect(ctx, argv):
    inspect(ctx, argv)


# -- events ---------------------------------------------------------------------

def event_line(ev):
    import time
    ns = ev.get("timeNano") or int(ev.get("time", 0)) * 10**9
    secs, frac = divmod(ns, 10**9)
    lt = time.localtime(secs)
    off = lt.tm_gmtoff
    tz = "Z" if off == 0 else "%s%02d:%02d" % ("+" if off > 0 else "-", abs(off) // 3600, abs(off) % 3600 // 60)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", lt) + ".%09d" % frac + tz
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    text = f"{stamp} {ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        text += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return text


def cmd_events(ctx, argv):
    from berth.client.format import timestamp_arg
    o, _ = ctx.parse(argv, "events", max_args=0)
    params = {"since": timestamp_arg(o["since"]), "until": timestamp_arg(o["until"]),
              "filters": filters(o["filter"])}
    resp = ctx.client.request("GET", "/events", params)
    tpl = None
    if o["format"]:
        from berth.client.format import Template, _unescape
        tpl = Template("{{json .}}" if o["format"] == "json" else _unescape(o["format"]))
    for ev in resp.json_stream():
        ctx.out.write((tpl.render(ev) if tpl else event_line(ev)) + "\n")
        ctx.out.flush()


# -- system df / prune -------------------------------------------------------------

def cmd_df(ctx, argv):
    from berth.client.format import human_size, render
    o, _ = ctx.parse(argv, "system df", max_args=0)
    df = ctx.client.get("/system/df")
    images = df.get("Images") or []
    conts = df.get("Containers") or []
    vols = df.get("Volumes") or []
    cache = df.get("BuildCache") or []

    def pct(rec, total):
        return f"{human_size(rec)} ({rec * 100 // total}%)" if total > 0 else human_size(rec)

    total = df.get("LayersSize") or 0
    used = sum((i.get("Size", 0) - max(i.get("SharedSize", 0), 0)) for i in images if i.get("Containers", 0) > 0)
    csize = sum(c.get("SizeRw") or 0 for c in conts)
    crec = sum(c.get("SizeRw") or 0 for c in conts if c.get("State") not in ("running", "paused", "restarting"))
    vsize = sum(max((v.get("UsageData") or {}).get("Size", 0), 0) for v in vols)
    vrec = sum(max((v.get("UsageData") or {}).get("Size", 0), 0) for v in vols
               if (v.get("UsageData") or {}).get("RefCount", 0) == 0)
    bsize = sum(b.get("Size") or 0 for b in cache)
    rows = [
        {"Type": "Images", "TotalCount": len(images),
         "Active": sum(1 for i in images if i.get("Containers", 0) > 0),
         "Size": human_size(total), "Reclaimable": pct(max(total - used, 0), total)},
        {"Type": "Containers", "TotalCount": len(conts),
         "Active": sum(1 for c in conts if c.get("State") in ("running", "paused", "restarting")),
         "Size": human_size(csize), "Reclaimable": pct(crec, csize)},
        {"Type": "Local Volumes", "TotalCount": len(vols),
         "Active": sum(1 for v in vols if (v.get("UsageData") or {}).get("RefCount", 0) > 0),
         "Size": human_size(vsize), "Reclaimable": pct(vrec, vsize)},
        {"Type": "Build Cache", "TotalCount": len(cache), "Active": 0,
         "Size": human_size(bsize), "Reclaimable": human_size(bsize)},
    ]
    ctx.out.write(render(rows, o["format"], "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}"
                         "\t{{.Reclaimable}}", {"TotalCount": "TOTAL", "Type": "TYPE"}, kind="disk usage"))


def cmd_prune(ctx, argv):
    o, _ = ctx.parse(argv, "system prune", max_args=0)
    if not o["force"]:
        what = ["all stopped containers", "all networks not used by at least one container"]
        if o["volumes"]:
            what.append("all anonymous volumes not used by at least one container")
        what += ["all images without at least one container associated to them" if o["all"]
                 else "all dangling images", "unused build cache"]
        if not ctx.confirm("This will remove:\n" + "".join(f"  - {w}\n" for w in what)):
            return 0
    c = ctx.client
    flt = filters(o["filter"]) or {}
    total = 0
    r = c.post("/containers/prune", filters=flt or None) or {}
    if r.get("ContainersDeleted"):
        ctx.out.write("Deleted Containers:\n" + "".join(f"{i}\n" for i in r["ContainersDeleted"]) + "\n")
    total += r.get("SpaceReclaimed") or 0
    r = c.post("/networks/prune", filters=flt or None) or {}
    if r.get("NetworksDeleted"):
        ctx.out.write("Deleted Networks:\n" + "".join(f"{i}\n" for i in r["NetworksDeleted"]) + "\n")
    if o["volumes"]:
        r = c.post("/volumes/prune", filters=flt or None) or {}
        if r.get("VolumesDeleted"):
            ctx.out.write("Deleted Volumes:\n" + "".join(f"{i}\n" for i in r["VolumesDeleted"]) + "\n")
        total += r.get("SpaceReclaimed") or 0
    iflt = dict(flt, dangling=["false" if o["all"] else "true"])
    r = c.post("/images/prune", filters=iflt) or {}
    if r.get("ImagesDeleted"):
        ctx.out.write("Deleted Images:\n" + "".join(
            "".join(f"{k.lower()}: {v}\n" for k, v in d.items()) for d in r["ImagesDeleted"]) + "\n")
    total += r.get("SpaceReclaimed") or 0
    prune_report(ctx, "", [], total)


def cmd_login(ctx, argv):
    o, args = ctx.parse(argv, "login", max_args=1)
    from berth.client import creds
    server = args[0] if args else creds.DOCKER_HUB
    user, password = o["username"], o["password"]
    if o["password_stdin"]:
        if password:
            ctx.fail("--password and --password-stdin are mutually exclusive")
            raise Exit(1)
        password = sys.stdin.readline().rstrip("\n")
    elif password:
        ctx.warn("Using --password via the CLI is insecure. Use --password-stdin.")
    if not user and sys.stdin.isatty():
        user = input("Username: ").strip()
    if not password and sys.stdin.isatty():
        import getpass
        password = getpass.getpass("Password: ")
    if not user or not password:
        ctx.fail("login needs a user name and a password (-u, -p or --password-stdin)")
        raise Exit(1)
    r = ctx.client.post("/auth", body={"username": user, "password": password,
                                       "serveraddress": server})
    creds.store(server, user, password)
    ctx.out.write(f"{(r or {}).get('Status') or 'Login Succeeded'}\n")


def cmd_logout(ctx, argv):
    _, args = ctx.parse(argv, "logout", max_args=1)
    from berth.client import creds
    server = args[0] if args else creds.DOCKER_HUB
    if creds.forget(server):
        ctx.out.write(f"Removing login credentials for {creds.server_key(server)}\n")
    else:
        ctx.out.write(f"Not logged in to {creds.server_key(server)}\n")
