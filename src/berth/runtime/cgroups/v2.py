"""What differs on the cgroup2 hierarchy: controllers must be enabled in
every ancestor's cgroup.subtree_control before a cgroup gets their files,
and freezing is cgroup.freeze with the outcome in cgroup.events."""
from berth.errors import BerthError
from berth.runtime.cgroups import fs


def enable_controllers(mount, leaf):
    """Enables, from the root down to leaf's parent, every controller the
    parent offers. Controllers that cannot be enabled (e.g. cpuset under a
    threaded parent) are skipped; writing to them later fails by name."""
    rel = leaf[len(mount):].strip("/")
    parts = rel.split("/") if rel else []
    d = mount
    for part in parts:
        offered = fs.read_or(f"{d}/cgroup.controllers").split()
        enabled = fs.read_or(f"{d}/cgroup.subtree_control").split()
        missing = [c for c in offered if c not in enabled]
        if missing:
            ctl = f"{d}/cgroup.subtree_control"
            try:
                fs.write(ctl, " ".join("+" + c for c in missing))
            except BerthError:
                for c in missing:
                    try:
                        fs.write(ctl, "+" + c)
                    except BerthError:
                        pass
        d = f"{d}/{part}"


def _events_frozen(d):
    for line in fs.read_or(f"{d}/cgroup.events").splitlines():
        k, _, v = line.partition(" ")
        if k == "frozen":
            return v.strip() == "1"
    return None


def set_frozen(d, on, deadline_s=5.0):
    """Writes cgroup.freeze and waits until cgroup.events agrees."""
    import time
    fs.write(f"{d}/cgroup.freeze", "1" if on else "0")
    end = time.monotonic() + deadline_s
    delay = 0.0005
    while True:
        state = _events_frozen(d)
        if state is None or state == on:
            return  # a kernel without the "frozen" key: nothing to wait on
        if time.monotonic() > end:
            if on:
                fs.write(f"{d}/cgroup.freeze", "0")
            raise BerthError(f"cgroup {d} did not {'freeze' if on else 'thaw'} "
                             f"within {deadline_s:g}s",
                             hint="a process may be stuck in the kernel; try again")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def frozen(d):
    return fs.read_or(f"{d}/cgroup.freeze", "0") == "1"


def enable_controller(mount, leaf, ctrl):
    """Switches one controller on from the root down to leaf's parent (a
    hybrid host's cgroup2 starts with none). An ancestor that has processes
    of its own refuses (EBUSY); the error names it."""
    mount = mount.rstrip("/")
    rel = leaf[len(mount):].strip("/")
    d = mount
    for part in rel.split("/") if rel else ():
        if ctrl not in fs.read_or(f"{d}/cgroup.subtree_control").split():
            fs.write(f"{d}/cgroup.subtree_control", f"+{ctrl}",
                     field=f"enabling the {ctrl} controller")
        d = f"{d}/{part}"
