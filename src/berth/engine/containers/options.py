"""The Engine API's create body (Config + HostConfig) -> RunOptions.

Named and anonymous volumes become binds of their directories here, and
container names in namespace modes become pids, so that specgen only
ever sees paths and numbers."""
import shlex

from berth.errors import BerthError, ConfigError
from berth.engine.containers import volmounts
from berth.engine.specgen import RunOptions

# HostConfig / Config fields berth does something with; anything else that
# is set (non-empty, non-default) is refused by name rather than ignored
_KNOWN_HOST = {
    "Binds", "Mounts", "Tmpfs", "PortBindings", "PublishAllPorts", "CapAdd", "CapDrop",
    "Privileged", "SecurityOpt", "Devices", "Ulimits", "Memory", "MemorySwap",
    "MemoryReservation", "CpuShares", "CpuPeriod", "CpuQuota", "NanoCpus", "CpusetCpus",
    "CpusetMems", "PidsLimit", "OomScoreAdj", "ShmSize", "ReadonlyRootfs", "GroupAdd",
    "PidMode", "IpcMode", "UTSMode", "NetworkMode", "CgroupnsMode", "UsernsMode",
    "RestartPolicy", "AutoRemove", "Init", "Sysctls", "CgroupParent", "Runtime",
    "LogConfig", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "Links", "VolumesFrom",
    "ContainerIDFile", "ConsoleSize", "Annotations", "Isolation", "OomKillDisable",
    "MemorySwappiness", "BlkioWeight", "BlkioWeightDevice", "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "CpuRealtimePeriod",
    "CpuRealtimeRuntime", "DeviceCgroupRules", "DeviceRequests", "MaskedPaths",
    "ReadonlyPaths", "VolumeDriver", "StorageOpt", "CgroupnsMode", "Dns",
}
# (KernelMemory, KernelMemoryTCP, CpuCount, CpuPercent, IOMaximum*, Cgroup and
# Capabilities are not in the set: a value there is refused by name)


def _refused(host, storage_driver):
    """The fields dockerd accepts that berth cannot honour here, refused
    in dockerd's words where it has some."""
    iso = host.get("Isolation") or ""
    if iso not in ("", "default"):
        # these two are 500s from dockerd
        raise BerthError(f"Invalid isolation: \"{iso}\" - linux only supports 'default'")
    if host.get("StorageOpt"):
        if storage_driver == "overlay":
            raise BerthError("--storage-opt is supported only for overlay over xfs with "
                             "'pquota' mount option")
        raise ConfigError(f"HostConfig.StorageOpt: not supported by berth's {storage_driver} "
                          "storage driver")
    for req in host.get("DeviceRequests") or ():
        # (dockerd says so at start; here at create, in the same words)
        caps = (req or {}).get("Capabilities") or []
        shown = "[" + " ".join("[" + " ".join(c) + "]" for c in caps) + "]"
        raise ConfigError(f'could not select device driver "{(req or {}).get("Driver") or ""}" '
                          f"with capabilities: {shown}")
    vd = host.get("VolumeDriver") or ""
    if vd not in ("", "local"):
        raise ConfigError(f"HostConfig.VolumeDriver: volume driver {vd!r} is not supported by "
                          "berth", hint="local")


def _warnings(host):
    """dockerd's warnings: when the kernel has no I/O weights (no BFQ, no
    CFQ) the weights are dropped, as dockerd drops them."""
    import glob
    warnings = []
    if host.get("OomKillDisable") and not host.get("Memory"):
        warnings.append("OOM killer is disabled for the container, but no memory limit is set, "
                        "this can result in the system running out of resources.")
    have = glob.glob("/sys/fs/cgroup/blkio/blkio*weight") or \
        glob.glob("/sys/fs/cgroup/io*weight") or glob.glob("/sys/fs/cgroup/*/io*weight")
    if host.get("BlkioWeight") and not have:
        warnings.append("Your kernel does not support Block I/O weight or the cgroup is not "
                        "mounted. Weight discarded.")
        host = dict(host, BlkioWeight=0)
    if host.get("BlkioWeightDevice") and not have:
        warnings.append("Your kernel does not support Block I/O weight_device or the cgroup is "
                        "not mounted. Weight-device discarded.")
        host = dict(host, BlkioWeightDevice=[])
    return host, warnings


def strslice(value, field):
    """Docker accepts a string or a list for Cmd and Entrypoint."""
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{field}: must be a string or a list of strings")


def _list(value, field):
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{field}: must be a list")
    return value


def _devices(devs):
    out = []
    for i, d in enumerate(_list(devs, "HostConfig.Devices")):
        if not isinstance(d, dict) or not d.get("PathOnHost"):
            raise ConfigError(f"HostConfig.Devices[{i}]: needs PathOnHost")
        out.append(f"{d['PathOnHost']}:{d.get('PathInContainer') or d['PathOnHost']}:"
                   f"{d.get('CgroupPermissions') or 'rwm'}")
    return out


def _ns_mode(value, field, resolve_pid):
    value = value or ""
    if value.startswith("container:"):
        return "container:" + str(resolve_pid(value[len("container:"):], field))
    return value


def run_options(cid, config, host, volumes, resolve_pid, init_path=None, inherited=((), ()),
                storage_driver="overlay"):
    """-> (RunOptions, mounts for inspect [{Type, Name, Source, Destination, ...}],
    warnings). inherited: (binds, mounts for inspect) of --volumes-from,
    which the request's own mounts override at the same destination."""
    for k, v in host.items():
        if k not in _KNOWN_HOST and v not in (None, "", 0, False, [], {}):
            raise ConfigError(f"HostConfig.{k}: not supported by berth")
    _refused(host, storage_driver)
    host, warnings = _warnings(host)
    if host.get("UsernsMode") not in (None, "", "host", "auto", "private"):
        raise ConfigError(f"HostConfig.UsernsMode: {host['UsernsMode']!r} is not a user "
                          "namespace mode", hint="host, or auto for a range of its own")
    binds, shown = volmounts.resolve_binds(volumes, _list(host.get("Binds"), "HostConfig.Binds"))
    mounts, shown2 = volmounts.resolve_mounts(volumes, _list(host.get("Mounts"), "HostConfig.Mounts"))
    shown += shown2
    own = {m["Destination"] for m in shown} | set((host.get("Tmpfs") or {}))
    for bind, m in zip(*inherited):
        if m["Destination"] not in own:
            binds.append(bind)
            shown.append(m)
    taken = {m["Destination"] for m in shown} | set((host.get("Tmpfs") or {}))
    anon_binds, shown3 = volmounts.image_volumes(volumes, config.get("Volumes") or {}, taken)
    binds += anon_binds
    shown += shown3
    init = host.get("Init")
    if init and not init_path:
        raise ConfigError("HostConfig.Init: this daemon has no init binary",
                          hint="start berthd with --init-path /usr/bin/tini-static (Debian's tini)")
    pids = host.get("PidsLimit")
    opts = RunOptions(
        container_id=cid,
        cmd=strslice(config.get("Cmd"), "Config.Cmd"),
        entrypoint=strslice(config.get("Entrypoint"), "Config.Entrypoint"),
        env=_list(config.get("Env"), "Config.Env"),
        user=config.get("User") or "",
        group_add=_list(host.get("GroupAdd"), "HostConfig.GroupAdd"),
        workdir=config.get("WorkingDir") or "",
        hostname=config.get("Hostname") or "",
        domainname=config.get("Domainname") or "",
        tty=bool(config.get("Tty")),
        read_only=bool(host.get("ReadonlyRootfs")),
        privileged=bool(host.get("Privileged")),
        cap_add=_list(host.get("CapAdd"), "HostConfig.CapAdd"),
        cap_drop=_list(host.get("CapDrop"), "HostConfig.CapDrop"),
        security_opt=_list(host.get("SecurityOpt"), "HostConfig.SecurityOpt"),
        devices=_devices(host.get("Devices")),
        ulimits=_list(host.get("Ulimits"), "HostConfig.Ulimits"),
        memory=host.get("Memory") or 0,
        memory_swap=host.get("MemorySwap") or 0,
        memory_reservation=host.get("MemoryReservation") or 0,
        cpu_shares=host.get("CpuShares") or 0,
        cpu_period=host.get("CpuPeriod") or 0,
        cpu_quota=host.get("CpuQuota") or 0,
        nano_cpus=host.get("NanoCpus") or 0,
        cpuset_cpus=host.get("CpusetCpus") or "",
        cpuset_mems=host.get("CpusetMems") or "",
        # the docker CLI sends 0 when --pids-limit is not given: 0 keeps
        # berth's default limit, a negative value means unlimited
        pids_limit=None if pids in (None, 0) else pids,
        oom_score_adj=host.get("OomScoreAdj") or None,
        shm_size=host.get("ShmSize") or (64 << 20),
        binds=binds,
        mounts=mounts,
        tmpfs=host.get("Tmpfs") or None,
        sysctls=host.get("Sysctls") or None,
        init=bool(init),
        init_path=init_path or "",
        pid_mode=_ns_mode(host.get("PidMode"), "HostConfig.PidMode", resolve_pid),
        ipc_mode=_ns_mode(host.get("IpcMode"), "HostConfig.IpcMode", resolve_pid),
        uts_mode=_ns_mode(host.get("UTSMode"), "HostConfig.UTSMode", resolve_pid),
        network_mode=_ns_mode(host.get("NetworkMode"), "HostConfig.NetworkMode", resolve_pid),
        cgroupns_mode=host.get("CgroupnsMode") or "",
        cgroup_parent=host.get("CgroupParent") or "",
        annotations=host.get("Annotations") or None,
        masked_paths=host.get("MaskedPaths"),
        readonly_paths=host.get("ReadonlyPaths"),
        cpu_rt_period=host.get("CpuRealtimePeriod") or 0,
        cpu_rt_runtime=host.get("CpuRealtimeRuntime") or 0,
        memory_swappiness=host.get("MemorySwappiness"),
        oom_kill_disable=bool(host.get("OomKillDisable")),
        blkio_weight=host.get("BlkioWeight") or 0,
        blkio_weight_device=_list(host.get("BlkioWeightDevice"), "HostConfig.BlkioWeightDevice"),
        blkio_throttle={k: _list(host.get(f), f"HostConfig.{f}") for k, f in (
            ("read_bps", "BlkioDeviceReadBps"), ("write_bps", "BlkioDeviceWriteBps"),
            ("read_iops", "BlkioDeviceReadIOps"), ("write_iops", "BlkioDeviceWriteIOps"))},
        device_cgroup_rules=_list(host.get("DeviceCgroupRules"), "HostConfig.DeviceCgroupRules"),
    )
    return opts, shown, warnings
