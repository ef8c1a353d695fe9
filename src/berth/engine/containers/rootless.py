"""What a rootless daemon changes in a container's spec.

No cgroup is delegated to the user (hybrid layout, no systemd user
delegation), so a limit the user asks for cannot be enforced: it is
refused, naming the option, rather than silently dropped. The default
pids limit (a berth default, not the user's request) is dropped and the
container is marked so `inspect` does not claim it."""
from berth.errors import ConfigError

# HostConfig fields that need a cgroup, with the docker flag a user typed
LIMITS = {
    "Memory": "--memory", "MemorySwap": "--memory-swap",
    "MemoryReservation": "--memory-reservation", "CpuShares": "--cpu-shares",
    "CpuPeriod": "--cpu-period", "CpuQuota": "--cpu-quota", "NanoCpus": "--cpus",
    "CpusetCpus": "--cpuset-cpus", "CpusetMems": "--cpuset-mems", "PidsLimit": "--pids-limit",
    "BlkioWeight": "--blkio-weight", "BlkioWeightDevice": "--blkio-weight-device",
    "BlkioDeviceReadBps": "--device-read-bps", "BlkioDeviceWriteBps": "--device-write-bps",
    "BlkioDeviceReadIOps": "--device-read-iops", "BlkioDeviceWriteIOps": "--device-write-iops",
    "DeviceCgroupRules": "--device-cgroup-rule", "KernelMemory": "--kernel-memory",
    "CpuRealtimePeriod": "--cpu-rt-period", "CpuRealtimeRuntime": "--cpu-rt-runtime",
    "OomScoreAdj": "--oom-score-adj",
}
NETWORKS = ("", "default", "bridge", "slirp4netns", "host", "none")


def check(host):
    """Refuse what a rootless daemon cannot do, before anything is made."""
    for key, flag in LIMITS.items():
        v = host.get(key)
        if v in (None, 0, "", []) or (key == "PidsLimit" and v == -1):
            continue
        raise ConfigError(f"{flag} (HostConfig.{key}): rootless mode cannot enforce it: "
                          "no cgroup is delegated to this user on this host",
                          hint="run the container from a root berthd for resource limits")
    mode = host.get("NetworkMode") or ""
    if mode not in NETWORKS and not mode.startswith("container:"):
        raise ConfigError(f"--network {mode}: rootless mode has the slirp4netns network "
                          "(the default), host, none and container:<name>",
                          hint="bridge networks need a root berthd")
    if host.get("UsernsMode") and host.get("UsernsMode") != "host":
        raise ConfigError(f"--userns {host['UsernsMode']}: a rootless daemon has no "
                          "subordinate ids left to give a container a range of its own")


def adjust(spec):
    """The spec a runtime in the daemon's user namespace can apply."""
    linux = spec.get("linux") or {}
    linux.pop("cgroupsPath", None)
    linux.pop("resources", None)
    # device nodes cannot be made in a user namespace; the runtime binds
    # the host's instead (the default /dev/null, zero, ... are harmless)
    spec.get("process", {}).pop("oomScoreAdj", None)
    sysctl = linux.get("sysctl") or {}
    if sysctl.get("net.ipv4.ping_group_range") == "0 2147483647":
        # the kernel refuses groups the namespace does not map
        sysctl["net.ipv4.ping_group_range"] = f"0 {_mapped_gids() - 1}"
    return spec


def _mapped_gids():
    with open("/proc/self/gid_map") as f:
        return max(int(p[0]) + int(p[2]) for p in (line.split() for line in f) if len(p) == 3)
