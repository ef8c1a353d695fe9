"""kill -9 at chosen points of create, start, pause and remove (the windows the
random kills of test_crash_kill9 hit only sometimes): berthd started with
BERTH_CRASH_AT=<point> kills itself there (engine/containers/crashpoint.py);
started again without it, the container must be running with its shim,
or stopped and startable, or gone, with nothing left behind."""
import os
import signal

import pytest

from test_crash_kill9 import check_invariant, runtime_ids

POINTS = {
    # point: (steps up to the kill, what the container may be afterwards)
    "create:prepared": ("create", {None}),
    "start:launched": ("start", {"created"}),
    "start:started": ("start", {"running"}),
    "pause:done": ("pause", {"paused"}),
    "remove:removing": ("remove", {None}),
    "remove:destroyed": ("remove", {None}),
}


@pytest.fixture(scope="module")
def daemon(alpine_berthd):
    return alpine_berthd


def crash_at(d, point):
    """Restarts d with the crash point armed."""
    d.stop()
    d._log.close()
    os.environ["BERTH_CRASH_AT"] = point
    try:
        d.start()
    finally:
        del os.environ["BERTH_CRASH_AT"]


@pytest.mark.parametrize("point", sorted(POINTS))
def test_kill9_at(daemon, point):
    d = daemon
    step, after = POINTS[point]
    cid = None
    if step != "create":
        cid = d.json("POST", "/containers/create", {"Image": "alpine", "Cmd": ["sleep", "1000"]})["Id"]
    if step in ("remove", "pause"):
        d.json("POST", f"/containers/{cid}/start", expect=204)
    crash_at(d, point)
    try:
        if step == "create":
            d.api("POST", "/containers/create", {"Image": "alpine", "Cmd": ["sleep", "1000"]},
                  timeout=60)
        elif step in ("start", "pause"):
            d.api("POST", f"/containers/{cid}/{step}", timeout=60)
        else:
            d.api("DELETE", f"/containers/{cid}?force=1", timeout=60)
    except OSError:
        pass          # the daemon died answering
    assert d.proc.wait(30) == -signal.SIGKILL, d.log()
    d._log.close()
    d.start()
    listed = {c["Id"]: c["State"] for c in d.json("GET", "/containers/json?all=1")}
    if step == "create":
        assert listed == {}, listed
    else:
        assert listed.get(cid) in after, (listed, d.log())
    assert not check_invariant(d, sample_starts=10)
    for c in listed:
        assert d.api("DELETE", f"/containers/{c}?force=1")[0] == 204
    assert runtime_ids(d) == set()
    assert not os.listdir(d.exec_root / "shims")
    assert not [n for n in os.listdir(d.data_root / "containers")]
    assert "Traceback" not in d.log()
