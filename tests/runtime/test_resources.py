"""linux.resources on the real kernel, the same workload under runc and
berth-runtime: a fork loop held by the pids limit, a CPU quota holding a
busy loop, device rules, `update` on a running container, and the
container's read-only cgroup view. Every workload is bounded (capped by the
limit under test, by a loop count and by the harness's timeouts)."""
import json
import os
import subprocess
import time

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def wait_until(pred, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_detached(runtime, bundle, hint):
    cid = runtime.new_id(hint)
    runtime.run(["run", "-d", "--bundle", bundle, cid])
    return cid


def test_fork_loop_stops_at_the_pids_limit_and_the_host_can_still_fork(runtime, busybox_bundle):
    # 200 attempts at most, in a child shell (ash exits when a fork fails);
    # "set --" then counts /proc entries without a fork
    script = ("sh -c 'i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done' 2>/dev/null; "
              "echo loop=$?; set -- /proc/[0-9]*; echo live=$#")
    b = busybox_bundle(args=["sh", "-c", script],
                       changes={"linux.resources.pids": {"limit": 20}})
    cid = runtime.new_id("pids")
    sp = runtime.spawn(["run", "--bundle", b, cid])
    host = subprocess.run(["sh", "-c", "echo forked"], capture_output=True, text=True, timeout=10)
    res = sp.wait(60)
    assert host.stdout == "forked\n"
    assert res.returncode == 0, res
    live = int(res.stdout.strip().split("live=")[1])
    assert "loop=2" in res.stdout, res.stdout  # the loop's shell died of a failed fork
    assert 10 <= live <= 20, res.stdout  # the limit held, and it was reached


def test_cpu_quota_of_half_a_cpu_holds_a_busy_loop_near_half(runtime, busybox_bundle):
    b = busybox_bundle(args=["sh", "-c", "i=0; while [ $i -lt 100000000 ]; do i=$((i+1)); done"],
                       changes={"linux.resources.cpu": {"quota": 50000, "period": 100000}})
    cid = run_detached(runtime, b, "cpu")
    pid = runtime.state(cid)["pid"]
    tick = os.sysconf("SC_CLK_TCK")

    def cpu_s():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    time.sleep(0.3)
    c0, t0 = cpu_s(), time.monotonic()
    time.sleep(2.0)
    share = (cpu_s() - c0) / (time.monotonic() - t0)
    runtime.run(["delete", "-f", cid])
    print(f"{runtime.name}: busy loop under a 0.5 CPU quota used {share:.3f} CPU")
    assert 0.35 <= share <= 0.62, share


def test_device_rules_let_dev_null_open_and_refuse_a_block_device(runtime, busybox_bundle):
    disk = next((f"/dev/{n}" for n in ("vda", "sda", "nvme0n1", "xvda")
                 if os.path.exists(f"/dev/{n}")), None)
    if disk is None:
        pytest.skip("no block device to try")
    # the node is bound in, so only the device cgroup stands in the way
    mounts = bundles_mounts(busybox_bundle) + [
        {"destination": "/dev/disk0", "type": "bind", "source": disk, "options": ["bind", "ro"]}]
    b = busybox_bundle(
        args=["sh", "-c", "head -c1 /dev/null && echo null-ok; "
                          "head -c1 /dev/disk0 2>&1 >/dev/null"],
        changes={"mounts": mounts})
    res = runtime.run_bundle(b)
    assert res.returncode == 1, res
    assert res.stdout.startswith("null-ok\n"), res.stdout
    assert "/dev/disk0: Operation not permitted" in res.stdout, res.stdout


def bundles_mounts(busybox_bundle):
    import bundle as bundles
    return bundles.base_spec()["mounts"]


def test_update_changes_a_running_containers_limit_and_it_takes_effect(runtime, busybox_bundle):
    b = busybox_bundle(args=["sleep", "60"], changes={"linux.resources.pids": {"limit": 100}})
    cid = run_detached(runtime, b, "upd")
    # init, the exec'd shell, a child shell and its sleeps: 3 tasks before
    # the first sleep, 13 with all ten; ash exits 2 when a fork fails. The
    # new limit leaves room for the exec itself: runc's exec is a Go
    # program whose threads count against it while it joins the cgroup
    probe = ["exec", cid, "sh", "-c",
             "sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1 & done; wait' 2>/dev/null;"
             " echo rc=$?"]
    before = runtime.run(probe)
    assert before.stdout == "rc=0\n", before
    runtime.run(["update", "--pids-limit", "10", "--memory", "64m", cid])
    after = runtime.run(probe)
    assert after.stdout == "rc=2\n", after
    state = runtime.state(cid)
    assert state["status"] == "running"


def test_update_with_a_bad_value_changes_nothing(runtime, busybox_bundle):
    b = busybox_bundle(args=["sleep", "60"], changes={"linux.resources.pids": {"limit": 50}})
    cid = run_detached(runtime, b, "upd")
    bad = runtime.run(["update", "--pids-limit", "7", "--cpu-shares", "1", cid], check=False)
    assert bad.returncode != 0
    # a fork still works, so the pids limit of 7 was not written either
    probe = runtime.run(["exec", cid, "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done "
                                                  "2>/tmp/err; wait; cat /tmp/err; echo ok"])
    assert probe.stdout.strip() == "ok", probe


def test_update_from_a_resources_file(runtime, busybox_bundle, tmp_path):
    b = busybox_bundle(args=["sleep", "60"])
    cid = run_detached(runtime, b, "updr")
    f = tmp_path / f"res-{runtime.name}.json"
    f.write_text(json.dumps({"pids": {"limit": 12}}))
    runtime.run(["update", "-r", str(f), cid])
    # room for runc's exec (its Go threads count against the limit while it
    # starts), not for twenty sleeps
    out = runtime.run(["exec", cid, "sh", "-c",
                       "for i in " + " ".join(["1"] * 20) + "; do sleep 1 & done; wait; echo end"],
                      check=False)
    assert "can't fork" in out.stderr and "end" not in out.stdout, out


def test_cgroup_view_inside_is_read_only(runtime, busybox_bundle):
    b = busybox_bundle(args=["sh", "-c", "ls /sys/fs/cgroup; { echo 1 > /sys/fs/cgroup/x; } 2>&1; "
                                         "touch /sys/fs/cgroup/pids/x 2>&1; echo end"])
    res = runtime.run_bundle(b)
    assert res.returncode == 0, res
    assert "pids" in res.stdout and "memory" in res.stdout, res.stdout
    lines = res.stdout.splitlines()
    # the top is a read-only tmpfs (runc's says EACCES, a mode 755 dir in a
    # user-less view), the hierarchies below read-only binds
    assert any(ln.startswith("sh: can't create /sys/fs/cgroup/x: ") for ln in lines), lines
    assert "touch: /sys/fs/cgroup/pids/x: Read-only file system" in lines, lines


def test_cgroup_namespace_shows_the_container_at_the_root(runtime, busybox_bundle):
    b = busybox_bundle(args=["cat", "/proc/self/cgroup"],
                       changes={"linux.namespaces": [{"type": t} for t in
                                                     ("pid", "network", "ipc", "uts", "mount",
                                                      "cgroup")]})
    res = runtime.run_bundle(b)
    assert res.returncode == 0, res
    paths = {line.split(":", 2)[2] for line in res.stdout.splitlines() if line}
    assert paths == {"/"}, res.stdout


def test_exec_needs_only_one_free_pid(runtime, busybox_bundle):
    # init plus the exec'd process fill a limit of 2: the runtime's own
    # helper processes must not count against the container
    if runtime.name == "runc":
        pytest.skip("runc's exec starts Go threads inside the cgroup, which may hit a limit of 2")
    b = busybox_bundle(args=["sleep", "60"], changes={"linux.resources.pids": {"limit": 2}})
    cid = run_detached(runtime, b, "exp")
    res = runtime.run(["exec", cid, "echo", "ok"], check=False)
    assert (res.returncode, res.stdout) == (0, "ok\n"), res
