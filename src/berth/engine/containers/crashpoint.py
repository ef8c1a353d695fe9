"""Test-only: `BERTH_CRASH_AT=<point>` in berthd's environment makes it
kill itself with SIGKILL when it reaches that point of a create, start or
remove (tests/api/test_crash_points.py), so each window between two steps
of a state change is crashed into on purpose, not by luck. Unset (always,
outside tests), a point costs one dictionary lookup."""
import os
import signal


def reached(point):
    if os.environ.get("BERTH_CRASH_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
