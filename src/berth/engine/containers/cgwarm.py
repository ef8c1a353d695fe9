"""Starts the kernel's cgroup-migration grace period ahead of the runtime.

The first write to a cgroup.procs after a quiet spell waits for an RCU
grace period (~10-20 ms here; berth/runtime/warmup.py has the details),
and the lock stays fast for about one more grace period after. berthd
starts one when a create or start request arrives: a thread re-writes the
shim zygote into the cgroup it is already in (nothing moves). By the time
the runtime joins the container to its cgroup, the client's next request
and the shim's start-up have hidden most of the wait."""
import threading


def _procs_file(pid):
    """pid's cgroup.procs in its first v1 controller hierarchy, else in
    the unified one."""
    unified = None
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrls and not ctrls.startswith("name="):
                return f"/sys/fs/cgroup/{ctrls}{path}/cgroup.procs"
            if not ctrls:
                unified = f"/sys/fs/cgroup/unified{path}/cgroup.procs"
    return unified


def _write(pid):
    try:
        path = _procs_file(pid)
        if path:
            with open(path, "w") as f:
                f.write(str(pid))
    except (OSError, ValueError):
        pass   # only ever a head start (rootless: no cgroup to write)


def start(pid):
    if pid:
        threading.Thread(target=_write, args=(pid,), name="cgroup-warm", daemon=True).start()
