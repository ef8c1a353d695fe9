"""What differs on a v1 hierarchy: the freezer."""
import os

from berth.errors import BerthError
from berth.runtime.cgroups import fs


def freeze(d, deadline_s=5.0):
    """Writes FROZEN and waits for freezer.state to say so. A freeze can
    stall in FREEZING (a task in an uninterruptible sleep); thawing and
    freezing again now and then gets past that, as runc found."""
    import time
    state = f"{d}/freezer.state"
    end = time.monotonic() + deadline_s
    delay = 0.0005
    n = 0
    while True:
        fs.write(state, "FROZEN")
        cur = fs.read(state)
        if cur == "FROZEN":
            return
        if time.monotonic() > end:
            fs.write(state, "THAWED")
            raise BerthError(f"cgroup {d} did not freeze within {deadline_s:g}s (still {cur})",
                             hint="a process may be stuck in the kernel; try again")
        n += 1
        if n % 50 == 0:
            fs.write(state, "THAWED")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def thaw(d):
    fs.write(f"{d}/freezer.state", "THAWED")


def frozen(d):
    return fs.read_or(f"{d}/freezer.state") == "FROZEN"


def has_freezer(d):
    return os.path.exists(f"{d}/freezer.state")
