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


def cgroup_file(ctrl, path, name):
    v1 = f"/sys/fs/cgroup/{ctrl}"
    return f"{v1}{path}/{name}" if os.path.isdir(v1) else f"/sys/fs/cgroup{path}/{name}"


def test_update_takes_flags_after_the_id(runtime, busybox_bundle):
    cid = runtime.new_id("upd")
    path = f"/{cid}"
    b = busybox_bundle(args=SLEEP, changes={"linux.cgroupsPath": path})
    runtime.run(["run", "-d", "--bundle", b, cid])
    runtime.run(["update", cid, "--pids-limit", "42", "--cpu-share", "200"])
    with open(cgroup_file("pids", path, "pids.max")) as f:
        assert f.read().strip() == "42"
    if os.path.isdir("/sys/fs/cgroup/cpu"):
        with open(cgroup_file("cpu", path, "cpu.shares")) as f:
            assert f.read().strip() == "200"


@pytest.mark.skipif(not os.path.exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                    reason="needs the v1 cpu controller")
def test_update_period_and_quota_in_an_order_the_parent_allows(runtime, busybox_bundle):
    # the parent caps its children at 50%; the container has 50% as
    # 500000/1000000, and asks for 30% as 3000/10000
    parent = f"/sys/fs/cgroup/cpu/berth-test-{runtime.token}-pod-{os.getpid()}"
    os.mkdir(parent)
    cid = runtime.new_id("pod")
    try:
        with open(f"{parent}/cpu.cfs_quota_us", "w") as f:
            f.write("50000")
        path = f"/{os.path.basename(parent)}/{cid}"
        b = busybox_bundle(args=SLEEP, changes={
            "linux.cgroupsPath": path,
            "linux.resources.cpu": {"quota": 500000, "period": 1000000}})
        runtime.run(["run", "-d", "--bundle", b, cid])
        runtime.run(["update", "--cpu-period", "10000", "--cpu-quota", "3000", cid])
        with open(cgroup_file("cpu", path, "cpu.cfs_quota_us")) as f:
            assert f.read().strip() == "3000"
    finally:
        runtime.run(["delete", "-f", cid], check=False)
        # the runtimes made the parent in every hierarchy, and leave it
        name = os.path.basename(parent)
        for h in os.listdir("/sys/fs/cgroup"):
            if os.path.isdir(f"/sys/fs/cgroup/{h}/{name}"):
                os.rmdir(f"/sys/fs/cgroup/{h}/{name}")


def test_signal_0_checks_the_container_without_signalling_it(runtime, busybox_bundle):
    cid = runtime.new_id("sig0")
    runtime.run(["run", "-d", "--bundle", busybox_bundle(args=SLEEP), cid])
    runtime.run(["kill", cid, "0"])
    runtime.run(["kill", "-a", cid, "0"])
    assert runtime.state(cid)["status"] == "running"


def test_ps_of_a_stopped_container_lists_nothing(runtime, busybox_bundle):
    cid = runtime.new_id("psstop")
    runtime.run(["run", "-d", "--bundle", busybox_bundle(args=SLEEP), cid])
    runtime.run(["kill", cid, "KILL"])
    runtime.wait_status(cid, "stopped")
    res = runtime.run(["ps", cid])
    assert res.stdout.splitlines()[0].split()[:2] == ["UID", "PID"], res
    assert len(res.stdout.splitlines()) == 1, res


def test_a_config_the_runtime_refuses_is_an_invalid_configuration(runtime, busybox_bundle):
    # runc's wording, which its own tests look for
    b = busybox_bundle(args=SLEEP, changes={"linux.resources.cpu": {"shares": "many"}})
    res = runtime.run(["run", "-d", "--bundle", b, runtime.new_id("badcfg")], check=False)
    assert res.returncode != 0
    if runtime.name == "berth":
        assert res.stderr.count("\n") == 1 and "invalid configuration: " in res.stderr, res


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory"), reason="needs v1 memory")
def test_exec_joins_a_sub_cgroup_given_by_cgroup(runtime, busybox_bundle):
    cid = runtime.new_id("subcg")
    path = f"/{cid}"
    runtime.run(["run", "-d", "--bundle",
                 busybox_bundle(args=SLEEP, changes={"linux.cgroupsPath": path}), cid])
    os.mkdir(f"/sys/fs/cgroup/memory{path}/sub")  # delete removes it with the container
    res = runtime.run(["exec", "--cgroup", "memory:sub", cid, "cat", "/proc/self/cgroup"])
    lines = res.stdout.splitlines()
    assert any(line.endswith(f":memory:{path}/sub") for line in lines), res
    assert any(line.endswith(f":pids:{path}") for line in lines), res
    # elsewhere the init's cgroups, the unified one of a hybrid host too
    with open(f"/proc/{runtime.state(cid)['pid']}/cgroup") as f:
        assert f.read().splitlines()[-1] == lines[-1]
    for arg, says in (("..", ".. is not a sub cgroup path"), ("nope", "/nope/cgroup.procs: no such file"),
                      ("whaaat:/", "unknown controller")):
        res = runtime.run(["exec", "--cgroup", arg, cid, "true"], check=False)
        assert res.returncode == 255 and says in res.stderr, res


def test_exec_in_a_paused_container_needs_ignore_paused(runtime, busybox_bundle):
    cid = runtime.new_id("paused")
    runtime.run(["run", "-d", "--bundle", busybox_bundle(args=SLEEP), cid])
    runtime.run(["pause", cid])
    res = runtime.run(["exec", cid, "echo", "ok"], check=False)
    assert res.returncode == 255 and "cannot exec in a paused container" in res.stderr, res
    waiting = runtime.spawn(["exec", "--ignore-paused", cid, "echo", "ok"])
    time.sleep(1)
    assert waiting.proc.poll() is None  # frozen with the container until it resumes
    runtime.run(["resume", cid])
    res = waiting.wait()
    assert res.returncode == 0 and res.stdout == "ok\n", res


def test_a_shared_cgroup_is_warned_about(runtime, busybox_bundle):
    path = f"/berth-test-{runtime.token}-shared-{os.getpid()}"
    first, second = runtime.new_id("share"), runtime.new_id("share")
    for cid in (first, second):
        b = busybox_bundle(args=SLEEP, changes={"linux.cgroupsPath": path})
        res = runtime.run(["run", "-d", "--bundle", b, cid])
    assert "container's cgroup is not empty" in res.stderr, res
    runtime.run(["delete", "-f", second])
    runtime.run(["delete", "-f", first], check=False)


def test_create_then_start_as_a_non_root_user(runtime, busybox_bundle):
    # the init opens exec.fifo once it is that user, without DAC_OVERRIDE
    cid = runtime.new_id("user")
    b = busybox_bundle(args=SLEEP, changes={"process.user.uid": 1000, "process.user.gid": 1000})
    runtime.run(["create", "--bundle", b, cid])
    runtime.run(["start", cid])
    runtime.wait_status(cid, "running")


def test_a_cgroup_made_before_create_goes_with_the_container(runtime, busybox_bundle):
    cid = runtime.new_id("premade")
    pids = cgroup_file("pids", f"/{cid}", "")
    os.makedirs(pids)
    b = busybox_bundle(args=SLEEP, changes={"linux.cgroupsPath": f"/{cid}"})
    runtime.run(["run", "-d", "--bundle", b, cid])
    runtime.run(["delete", "-f", cid])
    assert not os.path.exists(pids)


@pytest.mark.skipif(not os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
                    reason="needs v1 swap accounting")
def test_update_memory_to_no_limit_after_a_swap_limit(runtime, busybox_bundle):
    cid = runtime.new_id("memsw")
    b = busybox_bundle(args=SLEEP, changes={"linux.cgroupsPath": f"/{cid}"})
    runtime.run(["run", "-d", "--bundle", b, cid])
    runtime.run(["update", cid, "--memory", "52428800", "--memory-swap", "96468992"])
    runtime.run(["update", cid, "--memory", "-1"])
    with open(cgroup_file("memory", f"/{cid}", "memory.limit_in_bytes")) as f:
        assert int(f.read()) > 1 << 60
