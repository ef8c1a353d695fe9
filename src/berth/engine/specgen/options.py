"""What `docker run` flags / the Engine API's Config+HostConfig ask for, as
plain data. The API layer and the CLI fill one of these; only specgen turns
it into a runtime spec, so nothing below reads flags."""
import os

from berth.errors import ConfigError

# name -> default; mutable defaults are copied per instance
_FIELDS = {
    "container_id": "",
    "cmd": None,             # list; None or [] = use the image's Cmd
    "entrypoint": None,      # list; not None = replaces the image's, drops its Cmd
    "env": (),               # "K=V"; a bare "K" removes K (Docker's rule)
    "user": "",              # uid | uid:gid | name | name:group
    "group_add": (),         # extra groups, names or gids
    "workdir": "",
    "hostname": "",
    "domainname": "",        # the NIS domain name of the container's UTS namespace
    "tty": False,
    "read_only": False,
    "privileged": False,
    "cap_add": (),
    "cap_drop": (),
    "security_opt": (),
    "devices": (),           # "/dev/x[:/dev/y[:rwm]]"
    "ulimits": (),           # {"Name","Soft","Hard"} or "nofile=1024[:2048]"
    "memory": 0,             # bytes
    "memory_swap": 0,        # memory+swap bytes, -1 unlimited (Docker's meaning)
    "memory_reservation": 0,
    "cpu_shares": 0,
    "cpu_period": 0,
    "cpu_quota": 0,
    "nano_cpus": 0,          # --cpus 1.5 -> 1500000000
    "cpuset_cpus": "",
    "cpuset_mems": "",
    "cpu_rt_period": 0,      # µs, cgroup v1's realtime budget
    "cpu_rt_runtime": 0,
    "memory_swappiness": None,   # 0-100; None or -1 = the kernel's
    "oom_kill_disable": False,
    "blkio_weight": 0,           # 10-1000
    "blkio_weight_device": (),   # ({"Path", "Weight"})
    "blkio_throttle": None,      # {"read_bps": [{"Path", "Rate"}], ...}
    "device_cgroup_rules": (),   # "c 1:3 rwm", "a *:* r"
    "pids_limit": None,      # None = berth's default; 0 or -1 = unlimited
    "oom_score_adj": None,
    "shm_size": 64 << 20,
    "masked_paths": None,    # None = Docker's list; [] = none (systempaths=unconfined)
    "readonly_paths": None,
    "shm_path": "",          # a host directory bound at /dev/shm (a shared IPC's)
    "binds": (),             # "/host:/ctr[:ro,rshared,...]"
    "mounts": (),            # API Mount objects {"Type","Source","Target",...}
    "tmpfs": None,           # {"/run": "size=64m,noexec"}
    "sysctls": None,         # {"net.ipv4.ip_forward": "1"}
    "init": False,
    "init_path": "",         # host binary mounted as the container's init
    "pid_mode": "",          # "" | private | host | container:<pid or ns path>
    "ipc_mode": "",
    "uts_mode": "",
    "network_mode": "",
    "cgroupns_mode": "",     # "" | private | host
    "time_ns": False,
    "cgroup_parent": "",
    "cgroups_path": "",
    "annotations": None,
    "userns_map": None,      # (uid, gid, size): own user namespace, 0 -> uid/gid
}


class RunOptions:
    __slots__ = tuple(_FIELDS)

    def __init__(self, **kwargs):
        for name, default in _FIELDS.items():
            setattr(self, name, default)
        for name, value in kwargs.items():
            if name not in _FIELDS:
                raise ConfigError(f"run options: unknown option {name!r}")
            setattr(self, name, value)

    def __repr__(self):
        changed = {n: getattr(self, n) for n in _FIELDS if getattr(self, n) != _FIELDS[n]}
        return f"RunOptions({changed})"


class Host:
    """What specgen needs to know about the machine; tests pass a fake."""

    def __init__(self, arch=None, kernel=None, apparmor=None, selinux=None,
                 last_cap=None, dev_root="/dev", swap_limit=None, bounding=None):
        self.arch = arch or os.uname().machine
        self.kernel = kernel  # None: from_docker_profile reads the running kernel
        self.apparmor = os.path.isdir("/sys/kernel/security/apparmor") if apparmor is None else apparmor
        self.selinux = _selinux_on() if selinux is None else selinux
        if last_cap is None:
            from berth.sys import caps
            try:
                last_cap = caps.last_cap()
            except OSError:
                last_cap = len(caps.NAMES) - 1
        self.last_cap = last_cap
        # what this process may hand out: --privileged on a host that was
        # itself started without, say, CAP_SYS_RESOURCE cannot grant it
        self.bounding = _bounding() if bounding is None else frozenset(bounding)
        self.dev_root = dev_root
        self.swap_limit = _swap_accounting() if swap_limit is None else swap_limit


def _selinux_on():
    try:
        with open("/sys/fs/selinux/enforce") as f:
            f.read()
        return True
    except OSError:
        return False


def _swap_accounting():
    """Can a memory+swap limit be set? cgroup v1 needs swapaccount
    (memory.memsw.*); cgroup v2 has memory.swap.max wherever memory is."""
    if os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"):
        return True
    try:
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            return "memory" in f.read().split()
    except OSError:
        return False


def _bounding():
    from berth.sys import caps
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return frozenset(caps.names(int(line.split()[1], 16)))
    except (OSError, ValueError):
        pass
    return frozenset(caps.NAMES)
