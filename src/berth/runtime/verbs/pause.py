"""`pause` and `resume`: freeze and thaw the container's cgroup."""
from berth.errors import Conflict
from berth.runtime.container import Container


def _cgroup(ctx, cid, want):
    c = Container.load(ctx.root, cid)
    st = c.status()
    if st not in want:
        raise Conflict(f"container {cid} is {st}, not {' or '.join(want)}")
    cg = c.cgroup()
    if cg is None:
        raise Conflict(f"container {cid} has no cgroup (rootless without cgroup "
                       "delegation), so it cannot be frozen")
    return cg


def pause(ctx, opts, args):
    _cgroup(ctx, args[0], ("running",)).freeze()
    return 0


def resume(ctx, opts, args):
    _cgroup(ctx, args[0], ("paused",)).thaw()
    return 0
