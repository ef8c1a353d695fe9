"""run/create flags -> the Engine API's ContainerCreate body, as the docker
CLI builds it: ports, mounts, devices, ulimits, restart policy, sizes,
durations, environment and label files."""
import os

from berth.client.args import UsageError
from berth.client.commands import labels


def kv_file(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def env_list(values):
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
            try:
                m.setdefault("TmpfsOptions", {})["Mode"] = int(v, 8)
            except ValueError:
                raise UsageError(f"invalid tmpfs-mode {v!r} in --mount {spec!r}: expected "
                                 "octal, e.g. 1777") from None
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


def restart_policy(spec):
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise UsageError(f"invalid restart policy {name!r}")
    if count and (name != "on-failure" or not count.isdigit()):
        raise UsageError(f"invalid restart policy {spec!r}: a maximum retry count is a "
                         "number, and only on-failure takes one, e.g. on-failure:5")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def byte_size(v, what):
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


def terminal_size():
    try:
        return os.get_terminal_size(1)
    except OSError:
        try:
            return os.get_terminal_size(0)
        except OSError:
            return None


def create_body(o, image, cmd, detach=False):
    """run/create flags -> (ContainerCreate body, name)."""
    env = []
    for f in o["env_file"]:
        env += kv_file(f)
    env = env_list(env + o["env"])
    lab = {}
    for f in o["label_file"]:
        lab.update(labels(kv_file(f)))
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
        "RestartPolicy": restart_policy(o["restart"]) or {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": o["rm"], "CapAdd": o["cap_add"] or None, "CapDrop": o["cap_drop"] or None,
        "Privileged": o["privileged"], "SecurityOpt": o["security_opt"] or None,
        "Devices": [_device(d) for d in o["device"]] or None,
        "DeviceCgroupRules": o["device_cgroup_rule"] or None,
        "Ulimits": [_ulimit(u) for u in o["ulimit"]] or None,
        "ReadonlyRootfs": o["read_only"], "Init": True if o["init"] else None,
        "Runtime": o["runtime"] or None, "UsernsMode": o["userns"] or "", "PidMode": o["pid"] or "",
        "IpcMode": o["ipc"] or "", "UTSMode": o["uts"] or "", "CgroupnsMode": o["cgroupns"] or "",
        "CgroupParent": o["cgroup_parent"] or "",
        "Memory": byte_size(o["memory"], "--memory") or 0,
        "MemorySwap": byte_size(o["memory_swap"], "--memory-swap") or 0,
        "MemoryReservation": byte_size(o["memory_reservation"], "--memory-reservation") or 0,
        "ShmSize": byte_size(o["shm_size"], "--shm-size") or 0,
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
    size = terminal_size() if o["tty"] else None
    if size:
        host["ConsoleSize"] = [size.lines, size.columns]
    config["HostConfig"] = {k: v for k, v in host.items() if v is not None}
    if networks and (o["network_alias"] or o["ip"] or o["ip6"]):
        ep = {"Aliases": o["network_alias"] or None}
        if o["ip"] or o["ip6"]:
            ep["IPAMConfig"] = {"IPv4Address": o["ip"] or "", "IPv6Address": o["ip6"] or ""}
        config["NetworkingConfig"] = {"EndpointsConfig": {networks[0]: ep}}
    return {k: v for k, v in config.items() if v is not None}
