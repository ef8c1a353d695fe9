"""`delete`: remove a stopped (or, with -f, any) container and everything
it owns; poststop hooks run last."""
import os

from berth.errors import Conflict, NotFound
from berth.runtime.container import Container
from berth.runtime.teardown import destroy


def delete(ctx, cid, force=False):
    try:
        c = Container.load(ctx.root, cid)
    except NotFound:
        # a create that died before writing state leaves a bare directory
        path = os.path.join(ctx.root, cid)
        if os.path.isdir(path) and "/" not in cid and cid not in (".", ".."):
            import shutil
            shutil.rmtree(path, ignore_errors=True)
        if force:
            return
        raise
    st = c.status()
    if st in ("running", "paused") and not force:
        raise Conflict(f"cannot delete container {cid} that is not stopped: {st}",
                       hint="stop it first, or use delete --force")
    if st == "paused":
        cg = c.cgroup()
        if cg is not None:
            cg.thaw()
    destroy(ctx, c)


def main(ctx, opts, args):
    delete(ctx, args[0], opts.get("force"))
    return 0
