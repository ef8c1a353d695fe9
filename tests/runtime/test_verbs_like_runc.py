"""Verbs where runc's own integration suite found berth-runtime differing,
checked on both runtimes: a pre-frozen cgroup is refused, not joined."""
import os
import subprocess
import time

import pytest

SLEEP = ["sleep", "60"]


def freezer_of(name):
    """(dir, file, frozen value) of a cgroup named name in the freezer the
    runtimes use: the v1 freezer where mounted, else cgroup2."""
    v1 = "/sys/fs/cgroup/freezer"
    if os.path.exists(f"{v1}/freezer.state") or os.path.isdir(v1):
        return f"{v1}/{name}", "freezer.state", "FROZEN"
    return f"/sys/fs/cgroup/{name}", "cgroup.freeze", "1"


@pytest.fixture
def frozen_cgroup(runtime):
    name = f"berth-test-{runtime.token}-frozen-{os.getpid()}"
    d, f, value = freezer_of(name)
    os.mkdir(d)
    try:
        with open(f"{d}/{f}", "w") as fh:
            fh.write(value)
        yield name
    finally:
        with open(f"{d}/{f}", "w") as fh:
            fh.write("THAWED" if value == "FROZEN" else "0")
        for _ in range(100):
            try:
                os.rmdir(d)
                break
            except OSError:
                time.sleep(0.05)


@pytest.mark.parametrize("verb", [["run", "-d"], ["create"]])
def test_a_frozen_cgroup_is_refused_not_joined(runtime, busybox_bundle, frozen_cgroup, verb):
    b = busybox_bundle(args=SLEEP, changes={"linux.cgroupsPath": f"/{frozen_cgroup}"})
    cid = runtime.new_id("frozen")
    res = runtime.run([*verb, "--bundle", b, cid], check=False, timeout=30)
    assert res.returncode == 1, res
    assert "container's cgroup unexpectedly frozen" in res.stderr, res
    assert runtime.run(["state", cid], check=False).returncode != 0
