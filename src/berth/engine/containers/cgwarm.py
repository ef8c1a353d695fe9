"""Starts the kernel's cgroup-migration grace period ahead of the runtime.

The first write to a cgroup.procs after a quiet spell waits for an RCU
grace period (~10-20 ms here; berth/runtime/warmup.py has the details),
and the lock stays fast for about one more grace period after. berthd
starts one when a create or start request arrives: a thread re-writes the
shim zygote into the cgroup it is already in (nothing moves). By the time
the runtime joins the container to its cgroup, the client's next request
and the shim's start-up have hidden most of the wait."""
import threading

from berth.sys.procfs import rewrite_own_cgroup


def start(pid):
    if pid:
        # rootless: no cgroup to write, and rewrite_own_cgroup says so quietly
        threading.Thread(target=rewrite_own_cgroup, args=(pid,), name="cgroup-warm",
                         daemon=True).start()
