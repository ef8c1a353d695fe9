"""Hides the kernel's cgroup-migration latency behind our own start-up.

The first write to any cgroup.procs after a quiet spell waits for an RCU
grace period (the global cgroup_threadgroup_rwsem switching to its slow
path): ~10-20 ms on this 2-core VM, more than the rest of `run`. Once
switched, it stays switched for about another grace period. So the
runtime forks, as its first act, a child that writes itself into the
cgroup it is already in: nothing moves, but the grace period starts while
the parent imports and checks the config, and the container's own
migration later finds the lock fast. Measured: the container's cgroup
join went from 15-20 ms to 0.3 ms.

The child holds the cgroup mutex while it waits, and cgroup mkdir needs
that mutex: callers do their slow work (imports, security checks) before
their mkdirs, so that only the mkdir waits out what is left."""
import os

from berth.sys.procfs import rewrite_own_cgroup


def start():
    """Returns the child's pid (reaped by whoever waits on any child), or
    None. Never raises: this only ever saves time."""
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid:
        return pid
    try:
        rewrite_own_cgroup()
    except BaseException:  # noqa: B902 -- a forked child must never return
        pass
    os._exit(0)
