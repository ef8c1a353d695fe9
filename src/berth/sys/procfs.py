"""Small reads of /proc shared by the runtime and the daemon."""
import os


def start_time(pid):
    """Field 22 of /proc/<pid>/stat, to tell a recycled pid from the process
    recorded; None if the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


def cgroups(pid="self"):
    """[(controllers, path)] of /proc/<pid>/cgroup (controllers "" on the
    cgroup2 line); [] if the process is gone."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [tuple(line.split(":", 2)[1:]) for line in lines if line.count(":") >= 2]


def rewrite_own_cgroup(pid=None):
    """Writes pid (default: this process) into the cgroup it is already in,
    in the first hierarchy that takes it: nothing moves, but the kernel's
    cgroup-migration grace period starts now (runtime/warmup.py says why).
    -> True if a write went through. Never raises."""
    for ctrls, path in cgroups("self" if pid is None else pid):
        if ctrls == "":
            dirs = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
        elif ctrls.startswith("name="):
            continue
        else:
            dirs = (f"/sys/fs/cgroup/{ctrls}",)
        for d in dirs:
            try:
                fd = os.open(f"{d}{path}/cgroup.procs", os.O_WRONLY)
            except OSError:
                continue
            try:
                os.write(fd, b"0" if pid is None else str(pid).encode())
                return True
            except OSError:
                pass
            finally:
                os.close(fd)
    return False
