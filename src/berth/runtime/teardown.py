"""Removing a container: kept apart from create so that `delete` does not
import the whole process-creation path (ctypes, rootfs, init) to do it."""
import os

from berth.errors import BerthError


def destroy(ctx, c, run_poststop=True):
    """Removes everything the container owns; safe to repeat after a crash."""
    cg = c.cgroup()
    if c.pid and c.alive():
        try:
            os.kill(c.pid, 9)
        except ProcessLookupError:
            pass
    if cg is not None:
        cg.destroy()
    if run_poststop and "config" in c.data:
        hooks = c.config.get("hooks") or {}
        if hooks.get("poststop"):
            from berth.runtime import hooks as H
            try:
                H.run(hooks["poststop"], c.oci_state("stopped"), "poststop")
            except BerthError as e:
                ctx.warn(str(e))
    c.remove_dir()
