"""Container verbs that need no streams of their own: start, stop,
restart, kill, rm, pause, unpause, wait, rename, update, port, top, diff,
export, logs, cp, container inspect/prune (run, create, attach and exec are
in run.py, ps and stats in ps.py)."""
import os
import sys

from berth.client.commands import Exit, filters, prune_report
from berth.client.runopts import byte_size, restart_policy


def _inspect(ctx, name):
    return ctx.client.get(f"/containers/{name}/json")


def cmd_stop(ctx, argv):
    o, args = ctx.parse(argv, "stop", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/stop",
                                                {"t": o["time"], "signal": o["signal"]}).close())


def cmd_restart(ctx, argv):
    o, args = ctx.parse(argv, "restart", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/restart",
                                                {"t": o["time"], "signal": o["signal"]}).close())


def cmd_kill(ctx, argv):
    o, args = ctx.parse(argv, "kill", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/kill",
                                                {"signal": o["signal"]}).close())


def cmd_rm(ctx, argv):
    o, args = ctx.parse(argv, "rm", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("DELETE", f"/containers/{n}",
                                                {"force": o["force"] or None, "v": o["volumes"] or None}).close())


def cmd_pause(ctx, argv):
    _, args = ctx.parse(argv, "pause", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/pause").close())


def cmd_unpause(ctx, argv):
    _, args = ctx.parse(argv, "unpause", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/unpause").close())


def cmd_wait(ctx, argv):
    _, args = ctx.parse(argv, "wait", min_args=1)
    ctx.each(args, lambda n: str((ctx.client.post(f"/containers/{n}/wait") or {}).get("StatusCode")))


def cmd_rename(ctx, argv):
    _, args = ctx.parse(argv, "rename", min_args=2, max_args=2)
    ctx.client.request("POST", f"/containers/{args[0]}/rename", {"name": args[1]}).close()


def cmd_update(ctx, argv):
    o, args = ctx.parse(argv, "update", min_args=1)
    body = {"Memory": byte_size(o["memory"], "--memory"), "MemorySwap": byte_size(o["memory_swap"], "--memory-swap"),
            "MemoryReservation": byte_size(o["memory_reservation"], "--memory-reservation"),
            "NanoCpus": int(float(o["cpus"]) * 1e9) if o["cpus"] else None,
            "CpuShares": int(o["cpu_shares"]) if o["cpu_shares"] else None,
            "CpuPeriod": int(o["cpu_period"]) if o["cpu_period"] else None,
            "CpuQuota": int(o["cpu_quota"]) if o["cpu_quota"] else None,
            "CpusetCpus": o["cpuset_cpus"], "CpusetMems": o["cpuset_mems"],
            "PidsLimit": int(o["pids_limit"]) if o["pids_limit"] else None,
            "BlkioWeight": int(o["blkio_weight"]) if o["blkio_weight"] else None,
            "RestartPolicy": restart_policy(o["restart"])}
    body = {k: v for k, v in body.items() if v is not None}

    def one(n):
        r = ctx.client.post(f"/containers/{n}/update", body) or {}
        for w in r.get("Warnings") or []:
            ctx.warn(w)
    ctx.each(args, one)


def cmd_port(ctx, argv):
    _, args = ctx.parse(argv, "port", min_args=1, max_args=2)
    ports = ((_inspect(ctx, args[0]).get("NetworkSettings") or {}).get("Ports")) or {}
    want = None
    if len(args) > 1:
        p, _, proto = args[1].partition("/")
        want = f"{p}/{proto or 'tcp'}"
        if want not in ports or not ports[want]:
            ctx.fail(f"Error: No public port '{want}' published for {args[0]}")
            raise Exit(1)
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        if want and key != want:
            continue
        for b in ports[key] or []:
            ip = b.get("HostIp") or "0.0.0.0"
            addr = f"[{ip}]" if ":" in ip else ip
            ctx.out.write((f"{addr}:{b.get('HostPort')}" if want else
                           f"{key} -> {addr}:{b.get('HostPort')}") + "\n")


def cmd_top(ctx, argv):
    from berth.client.format import align
    _, args = ctx.parse(argv, "top", min_args=1, interspersed=False)
    r = ctx.client.get(f"/containers/{args[0]}/top", ps_args=" ".join(args[1:]) or None)
    rows = [r.get("Titles") or []] + [list(p) for p in r.get("Processes") or []]
    ctx.out.write("".join(line + "\n" for line in align(rows, minwidth=0, padding=4)))


def cmd_diff(ctx, argv):
    _, args = ctx.parse(argv, "diff", min_args=1, max_args=1)
    for ch in ctx.client.get(f"/containers/{args[0]}/changes") or []:
        ctx.out.write(f"{'CAD'[ch.get('Kind', 0)]} {ch.get('Path')}\n")


def cmd_export(ctx, argv):
    from berth.client.commands.images import _output
    o, args = ctx.parse(argv, "export", min_args=1, max_args=1)
    resp = ctx.client.request("GET", f"/containers/{args[0]}/export")
    out = _output(ctx, o["output"])
    for piece in resp.chunks():
        out.write(piece)
    out.close() if out is not sys.stdout.buffer else out.flush()


def cmd_prune(ctx, argv):
    o, _ = ctx.parse(argv, "container prune", max_args=0)
    if not o["force"] and not ctx.confirm("This will remove all stopped containers."):
        return
    r = ctx.client.post("/containers/prune", filters=filters(o["filter"])) or {}
    prune_report(ctx, "Deleted Containers", r.get("ContainersDeleted") or [], r.get("SpaceReclaimed"))


def cmd_inspect(ctx, argv):
    from berth.client.commands.system import inspect
    inspect(ctx, argv, "container")


def cmd_logs(ctx, argv):
    from berth.client.api import demux
    from berth.client.format import timestamp_arg
    o, args = ctx.parse(argv, "logs", min_args=1, max_args=1)
    tty = ((_inspect(ctx, args[0]).get("Config") or {}).get("Tty"))
    resp = ctx.client.request("GET", f"/containers/{args[0]}/logs", {
        "stdout": 1, "stderr": 1, "follow": o["follow"] or None, "since": timestamp_arg(o["since"]),
        "until": timestamp_arg(o["until"]), "tail": o["tail"] or "all",
        "timestamps": o["timestamps"] or None, "details": o["details"] or None})
    out, err = sys.stdout.buffer, sys.stderr.buffer
    if tty:
        for data in resp.chunks():
            out.write(data)
            out.flush()
    else:
        for kind, data in demux(resp.chunks()):
            w = err if kind == 2 else out
            w.write(data)
            w.flush()
    resp.close()


# -- cp ------------------------------------------------------------------------------------

def _split_cp(arg):
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    c, _, path = arg.partition(":")
    return c, path


def cmd_cp(ctx, argv):
    import io
    import tarfile
    o, args = ctx.parse(argv, "cp", min_args=2, max_args=2)
    (sc, src), (dc, dst) = _split_cp(args[0]), _split_cp(args[1])
    if bool(sc) == bool(dc):
        ctx.fail("copying between containers is not supported" if sc else
                 "must specify at least one container source")
        raise Exit(1)
    c = ctx.client
    if sc:  # container -> host
        resp = c.request("GET", f"/containers/{sc}/archive", {"path": src})
        if dst == "-":
            for piece in resp.chunks():
                sys.stdout.buffer.write(piece)
            return
        data = io.BytesIO(resp.read())
        resp.close()
        with tarfile.open(fileobj=data, mode="r:*") as tar:
            members = tar.getmembers()
            if not members:
                return
            top = members[0].name.split("/")[0]
            if os.path.isdir(dst):
                target = dst
            else:
                parent = os.path.dirname(os.path.abspath(dst))
                if not os.path.isdir(parent):
                    ctx.fail(f"no such directory: {parent}")
                    raise Exit(1)
                target = parent
                for m in members:
                    rest = m.name[len(top):]
                    m.name = os.path.basename(dst) + rest
            tar.extractall(target, members=members, filter="tar" if not o["archive"] else "fully_trusted")
        return
    # host -> container
    if src == "-":
        body = sys.stdin.buffer
        path = dst
    else:
        if not os.path.lexists(src):
            ctx.fail(f"no such file or directory: {src}")
            raise Exit(1)
        path, name = dst, os.path.basename(os.path.normpath(src))
        try:
            st = c.request("HEAD", f"/containers/{dc}/archive", {"path": dst})
            stat = st.header("x-docker-container-path-stat")
            st.close()
            import base64
            import json
            mode = json.loads(base64.b64decode(stat)).get("mode", 0) if stat else 0
            is_dir = bool(mode & (1 << 31))
        except Exception:  # noqa: BLE001 - a missing destination is a new name
            is_dir = False
        if not is_dir:
            path, name = os.path.dirname(dst.rstrip("/")) or "/", os.path.basename(dst.rstrip("/"))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(src, arcname=name, recursive=True)
        body = buf.getvalue()
    c.request("PUT", f"/containers/{dc}/archive", {"path": path, "noOverwriteDirNonDir": True}, body=body).close()
