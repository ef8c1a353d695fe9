"""`start`: release a created container's init by reading its exec.fifo."""
import os
import select

from berth.errors import BerthError, Conflict
from berth.runtime.container import Container


def start(ctx, cid):
    c = Container.load(ctx.root, cid)
    st = c.status()
    if st == "stopped":
        raise Conflict("cannot start a container that has stopped")
    if st != "created":
        raise Conflict(f"cannot start an already {st} container")
    fd = os.open(c.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        while True:
            # the init may die before it writes; check instead of blocking forever
            if p.poll(100) and os.read(fd, 1):
                break
            if not c.alive():
                raise BerthError(f"container {cid}: init exited before it started")
    finally:
        os.close(fd)
    os.unlink(c.fifo)
    poststart(ctx, c)


def poststart(ctx, c):
    hooks = c.config.get("hooks") or {}
    if hooks.get("poststart"):
        from berth.runtime import hooks as H
        H.run(hooks["poststart"], c.oci_state("running"), "poststart")


def main(ctx, opts, args):
    start(ctx, args[0])
    return 0
