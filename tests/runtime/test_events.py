"""`events` on the real kernel, runc and berth-runtime side by side: the
--stats JSON has runc's keys and its numbers agree with the cgroup files;
an allocation past the memory limit is OOM-killed and reported."""
import json
import os
import time

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

LIMIT = 48 << 20


# numbers Go omits when zero, which timing decides (a CPU period ran or not)
TIMING = {"throttling", "cache"}


def shape(obj):
    """Keys all the way down; raw's keys are the kernel's, lists by type."""
    if isinstance(obj, dict):
        return {k: ("raw" if k == "raw" else shape(v)) for k, v in obj.items()
                if k not in TIMING}
    if isinstance(obj, list):
        return "list"
    return type(obj).__name__


def own_cgroup(pid, ctrl):
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrl in ctrls.split(","):
                return f"/sys/fs/cgroup/{ctrl}{path}"
    raise AssertionError(f"{pid} has no {ctrl} cgroup")


def read(path):
    with open(path) as f:
        return f.read().strip()


def stats_of(runtime, busybox_bundle):
    b = busybox_bundle(args=["sleep", "60"],
                       changes={"linux.resources.memory": {"limit": LIMIT},
                                "linux.resources.pids": {"limit": 33},
                                "linux.resources.cpu": {"quota": 20000, "period": 100000}})
    cid = runtime.new_id("ev")
    runtime.run(["run", "-d", "--bundle", b, cid])
    pid = runtime.state(cid)["pid"]
    ev = json.loads(runtime.run(["events", "--stats", cid]).stdout)
    return cid, pid, ev


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory"), reason="v1 memory needed")
def test_stats_match_runcs_shape_and_the_cgroup_files(runtime, busybox_bundle, runc_ref):
    cid, pid, ev = stats_of(runtime, busybox_bundle)
    assert ev["type"] == "stats" and ev["id"] == cid
    d = ev["data"]
    mem = own_cgroup(pid, "memory")
    assert d["memory"]["usage"]["limit"] == LIMIT == int(read(f"{mem}/memory.limit_in_bytes"))
    usage = int(read(f"{mem}/memory.usage_in_bytes"))
    assert abs(d["memory"]["usage"]["usage"] - usage) < (1 << 20)
    assert d["pids"] == {"current": 1, "limit": 33}
    assert d["pids"]["current"] == int(read(f"{own_cgroup(pid, 'pids')}/pids.current"))
    acct = int(read(f"{own_cgroup(pid, 'cpuacct')}/cpuacct.usage"))
    assert 0 < d["cpu"]["usage"]["total"] <= acct
    assert sum(d["cpu"]["usage"]["percpu"]) == d["cpu"]["usage"]["total"]
    assert d["memory"]["raw"]["hierarchical_memory_limit"] == LIMIT
    if runtime.name != "runc":
        _, _, ref = stats_of(runc_ref, busybox_bundle)
        assert shape(d) == shape(ref["data"])
        assert list(d) == list(ref["data"])


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory"), reason="v1 memory needed")
def test_oom_kill_is_reported(runtime, busybox_bundle):
    # memory plus swap capped too, so the hog cannot page out; the hog is a
    # shell capturing 256 MiB, killed at 48
    script = "sleep 1.5; x=$(head -c 268435456 /dev/zero | tr '\\0' a); echo survived"
    b = busybox_bundle(args=["sh", "-c", script],
                       changes={"linux.resources.memory": {"limit": LIMIT, "swap": LIMIT}})
    cid = runtime.new_id("oom")
    runtime.run(["run", "-d", "--bundle", b, cid])
    events = runtime.spawn(["events", "--interval", "1s", cid])
    deadline = time.monotonic() + 20
    lines = []
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in events.out.read_text().splitlines() if x.strip()]
        if any(e["type"] == "oom" for e in lines):
            break
        time.sleep(0.1)
    events.kill()
    assert {"type": "oom", "id": cid} in lines, lines


def test_events_of_an_unknown_container_fails(runtime):
    res = runtime.run(["events", "--stats", "berth-test-nonexistent"], check=False)
    assert res.returncode != 0 and res.stdout == ""
