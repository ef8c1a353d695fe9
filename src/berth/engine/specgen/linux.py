"""Namespaces, resources, sysctls and rlimits."""
from berth.errors import ConfigError

# A fork bomb in one container must not starve the host. 4096 is far above
# what real services use (a busy JVM or nginx stays in the hundreds of
# threads) yet small enough that the host's pid_max (4M) and the kernel's
# per-task memory survive many containers hitting it at once.
DEFAULT_PIDS_LIMIT = 4096

_NS = {"pid": "pid", "ipc": "ipc", "uts": "uts", "network": "net"}

# Docker's namespaced sysctls; anything else would change the host
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")

_RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue",
            "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


def namespaces(opts):
    """-> (linux.namespaces, {kind: "private"|"host"|"join"})"""
    out = [{"type": "mount"}]
    modes = {}
    for kind, ns_file in _NS.items():
        field = f"{kind}_mode"
        mode = getattr(opts, field) or ""
        if mode in ("", "private", "default", "bridge", "none", "shareable"):
            # network modes other than host/container: a private netns
            # which the engine's network code wires up (or leaves empty)
            out.append({"type": kind})
            modes[kind] = "private"
        elif mode == "host":
            modes[kind] = "host"
        elif mode.startswith("container:"):
            target = mode[len("container:"):]
            if target.isdigit():
                path = f"/proc/{target}/ns/{ns_file}"
            elif target.startswith("/"):
                path = target
            else:
                raise ConfigError(f"{field}: {mode!r}: the engine passes container:<pid> "
                                  f"or container:<namespace path>, not a name")
            out.append({"type": kind, "path": path})
            modes[kind] = "join"
        elif kind == "network":
            # user-defined network names: still a private netns
            out.append({"type": kind})
            modes[kind] = "private"
        else:
            raise ConfigError(f"{field}: unknown mode {mode!r}",
                              hint="host, private or container:<pid>")
    cg = opts.cgroupns_mode or "private"
    if cg == "private":
        out.append({"type": "cgroup"})
    elif cg != "host":
        raise ConfigError(f"cgroupns_mode: unknown mode {cg!r}", hint="host or private")
    if opts.time_ns:
        out.append({"type": "time"})
    return out, modes


def sysctls(opts, modes):
    out = {}
    for key, value in (opts.sysctls or {}).items():
        field = f"sysctls[{key!r}]"
        if key.startswith("net."):
            if modes["network"] == "host":
                raise ConfigError(f"{field}: not allowed with network_mode host",
                                  hint="it would change the host's network settings")
        elif key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if modes["ipc"] == "host":
                raise ConfigError(f"{field}: not allowed with ipc_mode host")
        else:
            raise ConfigError(f"{field}: not a namespaced sysctl",
                              hint="net.*, fs.mqueue.* and kernel IPC keys are allowed")
        out[key] = str(value)
    if modes["network"] == "private":
        # every group may use ICMP echo sockets: ping works without NET_RAW
        # (in a user namespace only its own gids can be named)
        top = int(opts.userns_map[2]) - 1 if opts.userns_map else 2147483647
        out.setdefault("net.ipv4.ping_group_range", f"0 {top}")
        # as Docker: a non-root service may bind port 80 in its own netns,
        # which touches no host port
        out.setdefault("net.ipv4.ip_unprivileged_port_start", "0")
    return out


def integer(value, field, minimum=None, maximum=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field}: {value!r} must be an integer")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{field}: {value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{field}: {value} must be at most {maximum}")
    return value


def resources(opts, host):
    res = {}
    mem = {}
    if opts.memory:
        mem["limit"] = integer(opts.memory, "memory", 6 << 20)
    if opts.memory_swap:
        swap = integer(opts.memory_swap, "memory_swap", -1)
        if swap != -1 and opts.memory and swap < opts.memory:
            raise ConfigError(f"memory_swap: {swap} is below memory {opts.memory}",
                              hint="memory_swap is memory plus swap")
        if swap != -1 and not opts.memory:
            raise ConfigError("memory_swap: needs memory to be set too")
        if not host.swap_limit:
            raise ConfigError("memory_swap: this host's kernel does not account swap",
                              hint="boot with swapaccount=1 or drop memory_swap")
        mem["swap"] = swap
    elif opts.memory and host.swap_limit:
        # Docker's rule: as much swap as memory unless told otherwise
        mem["swap"] = 2 * mem["limit"]
    if opts.memory_reservation:
        mem["reservation"] = integer(opts.memory_reservation, "memory_reservation", 0)
    if mem:
        res["memory"] = mem
    cpu = {}
    if opts.cpu_shares:
        # as Docker: 1 is accepted, and the kernel makes it its minimum of 2
        cpu["shares"] = max(2, integer(opts.cpu_shares, "cpu_shares", 1))
    if opts.nano_cpus:
        if opts.cpu_quota or opts.cpu_period:
            raise ConfigError("nano_cpus: conflicts with cpu_quota/cpu_period",
                              hint="give either --cpus or --cpu-quota/--cpu-period")
        n = integer(opts.nano_cpus, "nano_cpus", 1)
        cpu["period"] = 100000
        cpu["quota"] = max(1000, n * 100000 // 1000000000)
    if opts.cpu_period:
        cpu["period"] = integer(opts.cpu_period, "cpu_period", 1000)
    if opts.cpu_quota:
        cpu["quota"] = integer(opts.cpu_quota, "cpu_quota", -1)
    if opts.cpuset_cpus:
        cpu["cpus"] = str(opts.cpuset_cpus)
    if opts.cpuset_mems:
        cpu["mems"] = str(opts.cpuset_mems)
    if opts.cpu_rt_period:
        cpu["realtimePeriod"] = integer(opts.cpu_rt_period, "cpu_rt_period", 0)
    if opts.cpu_rt_runtime:
        cpu["realtimeRuntime"] = integer(opts.cpu_rt_runtime, "cpu_rt_runtime", -1)
    if cpu:
        res["cpu"] = cpu
    if opts.memory_swappiness not in (None, -1):
        res.setdefault("memory", {})["swappiness"] = integer(opts.memory_swappiness,
                                                             "memory_swappiness", 0, 100)
    if opts.oom_kill_disable:
        res.setdefault("memory", {})["disableOOMKiller"] = True
    blkio = block_io(opts)
    if blkio:
        res["blockIO"] = blkio
    pids = DEFAULT_PIDS_LIMIT
    if opts.pids_limit is not None:
        pids = integer(opts.pids_limit, "pids_limit", -1)
    if pids > 0:
        res["pids"] = {"limit": pids}
    return res


_THROTTLES = {"read_bps": "throttleReadBpsDevice", "write_bps": "throttleWriteBpsDevice",
              "read_iops": "throttleReadIOPSDevice", "write_iops": "throttleWriteIOPSDevice"}


def _device_numbers(path, field):
    import os
    import stat
    try:
        st = os.stat(path)
    except OSError as e:
        raise ConfigError(f"{field}: {path}: {os.strerror(e.errno)}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise ConfigError(f"{field}: {path} is not a block device")
    return {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}


def block_io(opts):
    out = {}
    if opts.blkio_weight:
        out["weight"] = integer(opts.blkio_weight, "blkio_weight", 10, 1000)
    for i, d in enumerate(opts.blkio_weight_device or ()):
        field = f"blkio_weight_device[{i}]"
        dev = _device_numbers((d or {}).get("Path"), field)
        dev["weight"] = integer(d.get("Weight"), f"{field}.Weight", 10, 1000)
        out.setdefault("weightDevice", []).append(dev)
    for key, spec_key in _THROTTLES.items():
        for i, d in enumerate((opts.blkio_throttle or {}).get(key) or ()):
            field = f"blkio_throttle[{key}][{i}]"
            dev = _device_numbers((d or {}).get("Path"), field)
            dev["rate"] = integer(d.get("Rate"), f"{field}.Rate", 0)
            out.setdefault(spec_key, []).append(dev)
    return out


def rlimits(opts):
    out = {}
    for i, u in enumerate(opts.ulimits or ()):
        field = f"ulimits[{i}]"
        if isinstance(u, dict):
            name, soft, hard = u.get("Name"), u.get("Soft"), u.get("Hard")
        elif isinstance(u, str) and "=" in u:
            name, _, vals = u.partition("=")
            soft, _, hard = vals.partition(":")
            try:
                soft = int(soft)
                hard = int(hard) if hard else soft
            except ValueError:
                raise ConfigError(f"{field}: {u!r} is not \"name=soft[:hard]\"") from None
        else:
            raise ConfigError(f"{field}: {u!r} is not \"name=soft[:hard]\" or {{Name,Soft,Hard}}")
        if name not in _RLIMITS:
            raise ConfigError(f"{field}: unknown ulimit {name!r}")
        if hard is None:
            hard = soft
        soft = integer(soft, f"{field}.Soft", -1)
        hard = integer(hard, f"{field}.Hard", -1)
        # -1 is Docker's "unlimited"
        soft = (1 << 64) - 1 if soft == -1 else soft
        hard = (1 << 64) - 1 if hard == -1 else hard
        if soft > hard:
            raise ConfigError(f"{field}: soft limit {soft} is above hard limit {hard}")
        out[name] = {"type": "RLIMIT_" + name.upper(), "soft": soft, "hard": hard}
    return list(out.values())
