"""Container verbs: run, create, start, stop, restart, kill, rm, ps, logs,
exec, top, stats, cp, export, diff, pause, unpause, rename, update, wait,
port, attach, container inspect/prune."""
import os
import sys

from berth.client.args import UsageError
from berth.client.commands import Exit, filters, labels, prune_report

CREATE = (
    "a/attach=* add-host=* annotation=* blkio-weight= cap-add=* cap-drop=* cgroup-parent= cgroupns= "
    "cidfile= c/cpu-shares= cpu-period= cpu-quota= cpus= cpuset-cpus= cpuset-mems= device=* "
    "device-cgroup-rule=* dns=* dns-option=* dns-search=* domainname= entrypoint= e/env=* "
    "env-file=* expose=* gpus= group-add=* health-cmd= health-interval= health-retries= "
    "health-start-period= health-timeout= h/hostname= init i/interactive ip= ip6= ipc= "
    "isolation= kernel-memory= l/label=* label-file=* link=* log-driver= log-opt=* mac-address= "
    "m/memory= memory-reservation= memory-swap= memory-swappiness= mount=* name= network=* net=* "
    "network-alias=* no-healthcheck oom-kill-disable oom-score-adj= pid= pids-limit= platform= "
    "privileged p/publish=* P/publish-all pull= q/quiet read-only restart= rm runtime= "
    "security-opt=* shm-size= stop-signal= stop-timeout= storage-opt=* sysctl=* tmpfs=* "
    "t/tty ulimit=* u/user= userns= uts= v/volume=* volume-driver= volumes-from=* "
    "w/workdir= detach-keys= disable-content-trust")
RUN = CREATE + " d/detach sig-proxy"

PS_TABLE = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}"
            "\t{{.Names}}")
PS_HEADERS = {"ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedAt": "CREATED AT",
              "LocalVolumes": "LOCAL VOLUMES"}


# -- run / create options -> the API's create body ---------------------------------

def _kv_file(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _env(values):
    out = []
    for v in values:
        if "=" in v:
            out.append(v)
        elif v in os.environ:
            out.append(f"{v}={os.environ[v]}")
    return out


def _ports(specs):
    """-p [ip:][hostPort:]containerPort[/proto], ranges allowed ->
    (ExposedPorts, PortBindings)."""
    exposed, bindings = {}, {}
    for spec in specs:
        spec, _, proto = spec.partition("/")
        proto = proto or "tcp"
        ip = ""
        if spec.startswith("["):
            ip, _, spec = spec[1:].partition("]")
            spec = spec.lstrip(":")
        parts = spec.rsplit(":", 2) if not ip else [ip] + spec.split(":")
        if len(parts) == 1:
            host, cport = "", parts[0]
        elif len(parts) == 2:
            host, cport = parts
        else:
            ip, host, cport = parts
        cports = _range(cport, spec)
        hports = _range(host, spec) if host else [""] * len(cports)
        if len(hports) == 1 and len(cports) > 1 and host:
            hports = [f"{hports[0]}"] * len(cports)
        if len(hports) != len(cports):
            raise UsageError(f"invalid ranges specified for container and host ports: {spec}")
        for c, h in zip(cports, hports):
            key = f"{c}/{proto}"
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": str(h)})
    return exposed, bindings


def _range(text, spec):
    lo, dash, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi) if dash else int(lo)
    except ValueError:
        raise UsageError(f"invalid port specification: {spec!r}") from None
    if not (0 <= a <= b <= 65535):
        raise UsageError(f"invalid port specification: {spec!r}")
    return list(range(a, b + 1))


def _mount(spec):
    m = {"Type": "volume"}
    for field in spec.split(","):
        k, eq, v = field.partition("=")
        k = k.strip().lower()
        if k == "type":
            m["Type"] = v
        elif k in ("source", "src"):
            m["Source"] = v
        elif k in ("target", "destination", "dst"):
            m["Target"] = v
        elif k in ("readonly", "ro"):
            m["ReadOnly"] = (v or "true").lower() in ("true", "1")
        elif k == "bind-propagation":
            m.setdefault("BindOptions", {})["Propagation"] = v
        elif k == "bind-recursive":
            m.setdefault("BindOptions", {})["NonRecursive"] = v == "disabled"
        elif k == "volume-nocopy":
            m.setdefault("VolumeOptions", {})["NoCopy"] = (v or "true").lower() in ("true", "1")
        elif k == "volume-label":
            lk, _, lv = v.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("Labels", {})[lk] = lv
        elif k == "volume-driver":
            m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})["Name"] = v
        elif k == "volume-opt":
            ok, _, ov = v.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {}).setdefault("Options", {})[ok] = ov
        elif k == "tmpfs-size":
            from berth.client.format import ram_bytes
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = ram_bytes(v)
        elif k == "tmpfs-mode":
            m.setdefault("TmpfsOptions", {})["Mode"] = int(v, 8)
        elif k == "consistency":
            m["Consistency"] = v
        else:
            raise UsageError(f"unexpected key '{k}' in '{spec}'")
    if "Target" not in m:
        raise UsageError(f"target is required in --mount {spec!r}")
    return m


def _device(spec):
    parts = spec.split(":")
    perms = "rwm"
    if len(parts) > 1 and set(parts[-1]) <= set("rwm") and parts[-1]:
        perms = parts.pop()
    host = parts[0]
    return {"PathOnHost": host, "PathInContainer": parts[1] if len(parts) > 1 else host,
            "CgroupPermissions": perms}


def _ulimit(spec):
    name, _, vals = spec.partition("=")
    soft, _, hard = vals.partition(":")
    try:
        return {"Name": name, "Soft": int(soft), "Hard": int(hard or soft)}
    except ValueError:
        raise UsageError(f"invalid ulimit argument: {spec}") from None


def _restart(spec):
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise UsageError(f"invalid restart policy {name!r}")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def _size(v, what):
    from berth.client.format import ram_bytes
    if v is None:
        return None
    if v == "-1":
        return -1
    try:
        return ram_bytes(v)
    except ValueError:
        raise UsageError(f"invalid argument {v!r} for {what}") from None


def _dur(v, what):
    from berth.client.format import go_duration
    if v is None:
        return None
    try:
        return go_duration(v)
    except ValueError:
        raise UsageError(f"invalid argument {v!r} for {what}: time: invalid duration") from None


def create_body(o, image, cmd, detach=False):
    """run/create flags -> (ContainerCreate body, name)."""
    env = []
    for f in o["env_file"]:
        env += _kv_file(f)
    env = _env(env + o["env"])
    lab = {}
    for f in o["label_file"]:
        lab.update(labels(_kv_file(f)))
    lab.update(labels(o["label"]))
    exposed, bindings = _ports(o["publish"])
    for e in o["expose"]:
        p, _, proto = e.partition("/")
        for n in _range(p, e):
            exposed.setdefault(f"{n}/{proto or 'tcp'}", {})
    binds, volumes = [], {}
    for v in o["volume"]:
        if ":" in v.lstrip("/") or (":" in v and not v.startswith("/")):
            binds.append(v)
        else:
            volumes[v] = {}
    tmpfs = {}
    for t in o["tmpfs"]:
        path, _, opts = t.partition(":")
        tmpfs[path] = opts
    if o["rm"] and o["restart"] and o["restart"] != "no":
        raise UsageError("conflicting options: cannot specify both --restart and --rm")
    attach = o["attach"]
    stdin = o["interactive"]
    config = {
        "Hostname": o["hostname"] or "", "Domainname": o["domainname"] or "", "User": o["user"] or "",
        "AttachStdin": (stdin and not detach) or "stdin" in attach,
        "AttachStdout": (not detach and not attach) or "stdout" in attach,
        "AttachStderr": (not detach and not attach) or "stderr" in attach,
        "Tty": o["tty"], "OpenStdin": stdin, "StdinOnce": stdin and not detach,
        "Env": env, "Cmd": cmd or None, "Image": image, "Labels": lab,
        "WorkingDir": o["workdir"] or "", "ExposedPorts": exposed or None, "Volumes": volumes or None,
    }
    if o["entrypoint"] is not None:
        config["Entrypoint"] = [o["entrypoint"]] if o["entrypoint"] else [""]
    if o["stop_signal"]:
        config["StopSignal"] = o["stop_signal"]
    if o["stop_timeout"]:
        config["StopTimeout"] = int(o["stop_timeout"])
    if o["mac_address"]:
        config["MacAddress"] = o["mac_address"]
    if o["no_healthcheck"]:
        config["Healthcheck"] = {"Test": ["NONE"]}
    elif o["health_cmd"] or o["health_interval"] or o["health_timeout"] or o["health_retries"] \
            or o["health_start_period"]:
        hc = {"Test": ["CMD-SHELL", o["health_cmd"]] if o["health_cmd"] else None,
              "Interval": _dur(o["health_interval"], "--health-interval"),
              "Timeout": _dur(o["health_timeout"], "--health-timeout"),
              "StartPeriod": _dur(o["health_start_period"], "--health-start-period"),
              "Retries": int(o["health_retries"]) if o["health_retries"] else None}
        config["Healthcheck"] = {k: v for k, v in hc.items() if v is not None}
    networks = o["network"] + o["net"]
    host = {
        "Binds": binds or None, "Mounts": [_mount(m) for m in o["mount"]] or None,
        "Tmpfs": tmpfs or None, "PortBindings": bindings or None, "PublishAllPorts": o["publish_all"],
        "NetworkMode": networks[0] if networks else "default",
        "RestartPolicy": _restart(o["restart"]) or {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": o["rm"], "CapAdd": o["cap_add"] or None, "CapDrop": o["cap_drop"] or None,
        "Privileged": o["privileged"], "SecurityOpt": o["security_opt"] or None,
        "Devices": [_device(d) for d in o["device"]] or None,
        "DeviceCgroupRules": o["device_cgroup_rule"] or None,
        "Ulimits": [_ulimit(u) for u in o["ulimit"]] or None,
        "ReadonlyRootfs": o["read_only"], "Init": True if o["init"] else None,
        "Runtime": o["runtime"] or None, "UsernsMode": o["userns"] or "", "PidMode": o["pid"] or "",
        "IpcMode": o["ipc"] or "", "UTSMode": o["uts"] or "", "CgroupnsMode": o["cgroupns"] or "",
        "CgroupParent": o["cgroup_parent"] or "",
        "Memory": _size(o["memory"], "--memory") or 0,
        "MemorySwap": _size(o["memory_swap"], "--memory-swap") or 0,
        "MemoryReservation": _size(o["memory_reservation"], "--memory-reservation") or 0,
        "ShmSize": _size(o["shm_size"], "--shm-size") or 0,
        "NanoCpus": int(float(o["cpus"]) * 1e9) if o["cpus"] else 0,
        "CpuShares": int(o["cpu_shares"]) if o["cpu_shares"] else 0,
        "CpuPeriod": int(o["cpu_period"]) if o["cpu_period"] else 0,
        "CpuQuota": int(o["cpu_quota"]) if o["cpu_quota"] else 0,
        "CpusetCpus": o["cpuset_cpus"] or "", "CpusetMems": o["cpuset_mems"] or "",
        "PidsLimit": int(o["pids_limit"]) if o["pids_limit"] else None,
        "OomKillDisable": o["oom_kill_disable"] or None,
        "OomScoreAdj": int(o["oom_score_adj"]) if o["oom_score_adj"] else 0,
        "Dns": o["dns"] or None, "DnsSearch": o["dns_search"] or None, "DnsOptions": o["dns_option"] or None,
        "ExtraHosts": o["add_host"] or None, "GroupAdd": o["group_add"] or None,
        "Sysctls": labels(o["sysctl"]) or None, "VolumesFrom": o["volumes_from"] or None,
        "VolumeDriver": o["volume_driver"] or "", "Links": o["link"] or None,
        "StorageOpt": labels(o["storage_opt"]) or None, "Annotations": labels(o["annotation"]) or None,
        "LogConfig": {"Type": o["log_driver"] or "", "Config": labels(o["log_opt"])},
    }
    if o["memory_swappiness"]:
        host["MemorySwappiness"] = int(o["memory_swappiness"])
    if o["blkio_weight"]:
        host["BlkioWeight"] = int(o["blkio_weight"])
    size = _size_of_terminal() if o["tty"] else None
    if size:
        host["ConsoleSize"] = [size.lines, size.columns]
    config["HostConfig"] = {k: v for k, v in host.items() if v is not None}
    if networks and (o["network_alias"] or o["ip"] or o["ip6"]):
        ep = {"Aliases": o["network_alias"] or None}
        if o["ip"] or o["ip6"]:
            ep["IPAMConfig"] = {"IPv4Address": o["ip"] or "", "IPv6Address": o["ip6"] or ""}
        config["NetworkingConfig"] = {"EndpointsConfig": {networks[0]: ep}}
    return {k: v for k, v in config.items() if v is not None}


def _create(ctx, o, image, cmd, detach=False):
    """POST /containers/create, pulling the image first when it is missing
    (--pull missing, the default) as docker does. Returns the id."""
    from berth.client.api import APIError
    from berth.client.commands.images import full_name, pull
    body = create_body(o, image, cmd, detach)
    policy = o["pull"] or "missing"
    if policy not in ("missing", "always", "never"):
        raise UsageError(f'invalid pull option: {policy!r}: must be one of "always", "missing" or "never"')
    if policy == "always":
        pull(ctx, image, quiet=o["quiet"], out=ctx.err)
    params = {"name": o["name"], "platform": o["platform"]}
    if o["cidfile"] and os.path.exists(o["cidfile"]):
        raise UsageError(f"container ID file found, make sure the other container isn't running "
                         f"or delete {o['cidfile']}")
    try:
        r = ctx.client.post("/containers/create", body, **params)
    except APIError as e:
        if e.status != 404 or policy != "missing" or "image" not in str(e).lower():
            raise
        ref = full_name(image).replace("docker.io/library/", "").replace("docker.io/", "")
        ctx.err.write(f"Unable to find image '{ref}' locally\n")
        pull(ctx, image, quiet=o["quiet"], out=ctx.err)
        r = ctx.client.post("/containers/create", body, **params)
    for w in r.get("Warnings") or []:
        ctx.warn(w)
    if o["cidfile"]:
        with open(o["cidfile"], "x") as f:
            f.write(r["Id"])
    return r["Id"]


def cmd_create(ctx, argv):
    ctx.error_code = 125
    o, args = ctx.parse(argv, CREATE, "create [OPTIONS] IMAGE [COMMAND] [ARG...]", min_args=1,
                        interspersed=False)
    ctx.out.write(_create(ctx, o, args[0], args[1:], detach=True) + "\n")


def cmd_run(ctx, argv):
    ctx.error_code = 125
    o, args = ctx.parse(argv, RUN, "run [OPTIONS] IMAGE [COMMAND] [ARG...]", min_args=1,
                        interspersed=False)
    detach = o["detach"]
    cid = _create(ctx, o, args[0], args[1:], detach)
    if detach:
        _start(ctx, cid)
        ctx.out.write(cid + "\n")
        return 0
    proxy = "--sig-proxy=false" not in argv
    return attach_run(ctx, cid, tty=o["tty"], stdin=o["interactive"], start=True,
                      condition="removed" if o["rm"] else "next-exit", sig_proxy=proxy and not o["tty"])


def _start(ctx, cid):
    from berth.client.api import APIError
    try:
        ctx.client.request("POST", f"/containers/{cid}/start").close()
    except APIError as e:
        msg = str(e)
        ctx.daemon_error(e)
        low = msg.lower()
        if "not found" in low or "no such file" in low:
            raise Exit(127)
        if "permission denied" in low or "cannot execute" in low:
            raise Exit(126)
        raise Exit(ctx.error_code)


# -- attached streams ------------------------------------------------------------------

class Terminal:
    """Raw mode on the local terminal for -t, restored on exit."""

    def __init__(self, fd=0):
        self.fd = fd
        self.saved = None

    def __enter__(self):
        import termios
        import tty
        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def _size_of_terminal():
    try:
        return os.get_terminal_size(1)
    except OSError:
        try:
            return os.get_terminal_size(0)
        except OSError:
            return None


def _resize(ctx, path):
    size = _size_of_terminal()
    if size:
        try:
            ctx.client.request("POST", path, {"h": size.lines, "w": size.columns}).close()
        except Exception:  # noqa: BLE001 - a resize that fails does not end the session
            pass


def pump(ctx, conn, tty, stdin):
    """Copies stdin -> conn (thread) and conn -> stdout/stderr until the
    output ends."""
    import threading
    out, err = sys.stdout.buffer, sys.stderr.buffer
    sys.stdout.flush()

    def feed():
        try:
            while True:
                data = os.read(0, 65536)
                if not data:
                    break
                conn.send(data)
        except OSError:
            pass
        if not tty:
            conn.close_write()

    if stdin:
        threading.Thread(target=feed, daemon=True).start()
    if tty:
        while True:
            data = conn.recv()
            if not data:
                break
            out.write(data)
            out.flush()
    else:
        for kind, data in conn.frames():
            w = err if kind == 2 else out
            w.write(data)
            w.flush()
    conn.close()


def attach_run(ctx, cid, tty, stdin, start, condition="next-exit", sig_proxy=False):
    """attach (hijacked) + start + wait; returns the container's exit code."""
    import signal
    c = ctx.client
    ws, wf = c.send("POST", f"/containers/{cid}/wait", {"condition": condition})
    conn = c.hijack("POST", f"/containers/{cid}/attach",
                    {"stream": 1, "stdin": int(stdin), "stdout": 1, "stderr": 1})
    term = Terminal() if tty and stdin and os.isatty(0) else None
    if sig_proxy:
        def proxy(signum, frame):
            try:
                c.request("POST", f"/containers/{cid}/kill", {"signal": signum}).close()
            except Exception:  # noqa: BLE001
                pass
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(s, proxy)
    try:
        if term:
            term.__enter__()
        if start:
            _start(ctx, cid)
        if tty:
            _resize(ctx, f"/containers/{cid}/resize")
            signal.signal(signal.SIGWINCH, lambda *a: _resize(ctx, f"/containers/{cid}/resize"))
        pump(ctx, conn, tty, stdin)
    finally:
        if term:
            term.__exit__()
    return _wait_answer(ctx, c, ws, wf)


def _wait_answer(ctx, c, ws, wf):
    from berth.client.api import APIError
    try:
        r = c.answer(ws, wf).json() or {}
    except APIError as e:
        ctx.daemon_error(e)
        return 125
    if (r.get("Error") or {}).get("Message"):
        ctx.fail(r["Error"]["Message"])
    return int(r.get("StatusCode", 0))


def _inspect(ctx, name):
    return ctx.client.get(f"/containers/{name}/json")


def cmd_start(ctx, argv):
    o, args = ctx.parse(argv, "a/attach i/interactive detach-keys= checkpoint= checkpoint-dir=",
                        "start [OPTIONS] CONTAINER [CONTAINER...]", min_args=1)
    if o["attach"] or o["interactive"]:
        if len(args) > 1:
            ctx.fail("you cannot start and attach multiple containers at once")
            raise Exit(1)
        info = _inspect(ctx, args[0])
        cfg = info.get("Config") or {}
        return attach_run(ctx, info["Id"], cfg.get("Tty", False), o["interactive"] and cfg.get("OpenStdin"),
                          start=True, sig_proxy=not cfg.get("Tty"))
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/start").close())


def cmd_attach(ctx, argv):
    o, args = ctx.parse(argv, "no-stdin sig-proxy detach-keys=", "attach [OPTIONS] CONTAINER",
                        min_args=1, max_args=1)
    info = _inspect(ctx, args[0])
    cfg = info.get("Config") or {}
    stdin = cfg.get("OpenStdin") and not o["no_stdin"]
    return attach_run(ctx, info["Id"], cfg.get("Tty", False), stdin, start=False,
                      sig_proxy=not cfg.get("Tty"))


def cmd_stop(ctx, argv):
    o, args = ctx.parse(argv, "t/time= s/signal=", "stop [OPTIONS] CONTAINER [CONTAINER...]", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/stop",
                                                {"t": o["time"], "signal": o["signal"]}).close())


def cmd_restart(ctx, argv):
    o, args = ctx.parse(argv, "t/time= s/signal=", "restart [OPTIONS] CONTAINER [CONTAINER...]", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/restart",
                                                {"t": o["time"], "signal": o["signal"]}).close())


def cmd_kill(ctx, argv):
    o, args = ctx.parse(argv, "s/signal=", "kill [OPTIONS] CONTAINER [CONTAINER...]", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/kill",
                                                {"signal": o["signal"]}).close())


def cmd_rm(ctx, argv):
    o, args = ctx.parse(argv, "f/force v/volumes l/link", "rm [OPTIONS] CONTAINER [CONTAINER...]", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("DELETE", f"/containers/{n}",
                                                {"force": o["force"] or None, "v": o["volumes"] or None}).close())


def cmd_pause(ctx, argv):
    _, args = ctx.parse(argv, "", "pause CONTAINER [CONTAINER...]", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/pause").close())


def cmd_unpause(ctx, argv):
    _, args = ctx.parse(argv, "", "unpause CONTAINER [CONTAINER...]", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/unpause").close())


def cmd_wait(ctx, argv):
    _, args = ctx.parse(argv, "", "wait CONTAINER [CONTAINER...]", min_args=1)
    ctx.each(args, lambda n: str((ctx.client.post(f"/containers/{n}/wait") or {}).get("StatusCode")))


def cmd_rename(ctx, argv):
    _, args = ctx.parse(argv, "", "rename CONTAINER NEW_NAME", min_args=2, max_args=2)
    ctx.client.request("POST", f"/containers/{args[0]}/rename", {"name": args[1]}).close()


def cmd_update(ctx, argv):
    o, args = ctx.parse(argv, "m/memory= memory-swap= memory-reservation= cpus= c/cpu-shares= "
                              "cpu-period= cpu-quota= cpuset-cpus= cpuset-mems= pids-limit= restart= "
                              "blkio-weight=", "update [OPTIONS] CONTAINER [CONTAINER...]", min_args=1)
    body = {"Memory": _size(o["memory"], "--memory"), "MemorySwap": _size(o["memory_swap"], "--memory-swap"),
            "MemoryReservation": _size(o["memory_reservation"], "--memory-reservation"),
            "NanoCpus": int(float(o["cpus"]) * 1e9) if o["cpus"] else None,
            "CpuShares": int(o["cpu_shares"]) if o["cpu_shares"] else None,
            "CpuPeriod": int(o["cpu_period"]) if o["cpu_period"] else None,
            "CpuQuota": int(o["cpu_quota"]) if o["cpu_quota"] else None,
            "CpusetCpus": o["cpuset_cpus"], "CpusetMems": o["cpuset_mems"],
            "PidsLimit": int(o["pids_limit"]) if o["pids_limit"] else None,
            "BlkioWeight": int(o["blkio_weight"]) if o["blkio_weight"] else None,
            "RestartPolicy": _restart(o["restart"])}
    body = {k: v for k, v in body.items() if v is not None}

    def one(n):
        r = ctx.client.post(f"/containers/{n}/update", body) or {}
        for w in r.get("Warnings") or []:
            ctx.warn(w)
    ctx.each(args, one)


def cmd_port(ctx, argv):
    _, args = ctx.parse(argv, "", "port CONTAINER [PRIVATE_PORT[/PROTO]]", min_args=1, max_args=2)
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
    _, args = ctx.parse(argv, "", "top CONTAINER [ps OPTIONS]", min_args=1, interspersed=False)
    r = ctx.client.get(f"/containers/{args[0]}/top", ps_args=" ".join(args[1:]) or None)
    rows = [r.get("Titles") or []] + [list(p) for p in r.get("Processes") or []]
    ctx.out.write("".join(line + "\n" for line in align(rows, minwidth=0, padding=4)))


def cmd_diff(ctx, argv):
    _, args = ctx.parse(argv, "", "diff CONTAINER", min_args=1, max_args=1)
    for ch in ctx.client.get(f"/containers/{args[0]}/changes") or []:
        ctx.out.write(f"{'CAD'[ch.get('Kind', 0)]} {ch.get('Path')}\n")


def cmd_export(ctx, argv):
    from berth.client.commands.images import _output
    o, args = ctx.parse(argv, "o/output=", "export [OPTIONS] CONTAINER", min_args=1, max_args=1)
    resp = ctx.client.request("GET", f"/containers/{args[0]}/export")
    out = _output(ctx, o["output"])
    for piece in resp.chunks():
        out.write(piece)
    out.close() if out is not sys.stdout.buffer else out.flush()


def cmd_prune(ctx, argv):
    o, _ = ctx.parse(argv, "f/force filter=*", "container prune [OPTIONS]", max_args=0)
    if not o["force"] and not ctx.confirm("This will remove all stopped containers."):
        return
    r = ctx.client.post("/containers/prune", filters=filters(o["filter"])) or {}
    prune_report(ctx, "Deleted Containers", r.get("ContainersDeleted") or [], r.get("SpaceReclaimed"))


def cmd_inspect(ctx, argv):
    from berth.client.commands.system import inspect
    inspect(ctx, argv, "container", "container inspect [OPTIONS] CONTAINER [CONTAINER...]")


# -- ps ----------------------------------------------------------------------------------

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
    from berth.client.format import ago, ellipsis, human_size, local_time
    cmd = c.get("Command", "")
    names = [n[1:] if n.startswith("/") else n for n in c.get("Names") or []]
    if trunc:
        names = [n for n in names if "/" not in n][:1] or names[:1]
    size = ""
    if "SizeRw" in c:
        size = f"{human_size(c.get('SizeRw') or 0, 3)} (virtual {human_size(c.get('SizeRootFs') or 0, 3)})"
    return {"ID": c["Id"][:12] if trunc else c["Id"], "Image": c.get("Image", ""),
            "Command": '"' + (ellipsis(cmd, 20) if trunc else cmd).replace('"', '\\"') + '"',
            "CreatedAt": local_time(c.get("Created", 0)),
            "RunningFor": ago(c.get("Created", 0), now), "Ports": port_text(c.get("Ports")),
            "State": c.get("State", ""), "Status": c.get("Status", ""), "Size": size,
            "Names": ",".join(names),
            "Labels": ",".join(f"{k}={v}" for k, v in (c.get("Labels") or {}).items()),
            "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []),
            "Networks": ",".join(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())}


def cmd_ps(ctx, argv):
    from berth.client.format import render
    o, _ = ctx.parse(argv, "a/all q/quiet f/filter=* format= no-trunc n/last= l/latest s/size",
                     "ps [OPTIONS]", max_args=0)
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


# -- logs / exec -------------------------------------------------------------------------

def cmd_logs(ctx, argv):
    from berth.client.api import demux
    from berth.client.format import timestamp_arg
    o, args = ctx.parse(argv, "f/follow since= until= n/tail= t/timestamps details",
                        "logs [OPTIONS] CONTAINER", min_args=1, max_args=1)
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


def cmd_exec(ctx, argv):
    o, args = ctx.parse(argv, "d/detach i/interactive t/tty u/user= w/workdir= e/env=* env-file=* "
                              "privileged detach-keys=", "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
                        min_args=2, interspersed=False)
    env = []
    for f in o["env_file"]:
        env += _kv_file(f)
    c = ctx.client
    body = {"AttachStdin": o["interactive"] and not o["detach"], "AttachStdout": not o["detach"],
            "AttachStderr": not o["detach"], "Tty": o["tty"], "Env": _env(env + o["env"]),
            "Cmd": args[1:], "User": o["user"] or "", "WorkingDir": o["workdir"] or "",
            "Privileged": o["privileged"]}
    if o["detach_keys"]:
        body["DetachKeys"] = o["detach_keys"]
    size = _size_of_terminal() if o["tty"] else None
    if size:
        body["ConsoleSize"] = [size.lines, size.columns]
    eid = c.post(f"/containers/{args[0]}/exec", body)["Id"]
    if o["detach"]:
        c.request("POST", f"/exec/{eid}/start", body={"Detach": True, "Tty": o["tty"]}).close()
        return 0
    import signal
    conn = c.hijack("POST", f"/exec/{eid}/start",
                    body={"Detach": False, "Tty": o["tty"], "ConsoleSize": body.get("ConsoleSize")})
    term = Terminal() if o["tty"] and o["interactive"] and os.isatty(0) else None
    try:
        if term:
            term.__enter__()
        if o["tty"]:
            _resize(ctx, f"/exec/{eid}/resize")
            signal.signal(signal.SIGWINCH, lambda *a: _resize(ctx, f"/exec/{eid}/resize"))
        pump(ctx, conn, o["tty"], o["interactive"])
    finally:
        if term:
            term.__exit__()
    r = c.get(f"/exec/{eid}/json") or {}
    code = r.get("ExitCode")
    return 126 if code is None else int(code)


# -- stats -------------------------------------------------------------------------------

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
    o, args = ctx.parse(argv, "a/all no-stream no-trunc format=", "stats [OPTIONS] [CONTAINER...]")
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
        text = render(rows, o["format"], STATS_TABLE, STATS_HEADERS)
        if o["no_stream"]:
            ctx.out.write(text)
            if failed:
                raise Exit(1)
            return
        ctx.out.write(("\x1b[2J\x1b[H" if tty else "") + text)
        ctx.out.flush()
        time.sleep(1)


# -- cp ------------------------------------------------------------------------------------

def _split_cp(arg):
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    c, _, path = arg.partition(":")
    return c, path


def cmd_cp(ctx, argv):
    import io
    import tarfile
    o, args = ctx.parse(argv, "a/archive L/follow-link q/quiet", "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n"
                        "        berth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH", min_args=2, max_args=2)
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
