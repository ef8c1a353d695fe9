"""Per-container choices a Docker user makes: --runtime, --init,
healthchecks, log rotation, read-only root, capabilities, auto-remove."""
import json
import shutil
import time

import pytest

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


@pytest.fixture
def alpine(berthd):
    berthd.load("alpine-3.20")
    return berthd


def test_runtime_per_container(alpine):
    out = {}
    for rt in ("berth", "runc"):
        out[rt] = ok(alpine.docker("run", "--rm", "--runtime", rt, "alpine", "sh", "-c",
                                   "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status"))
    assert out["berth"] == out["runc"]
    r = alpine.docker("run", "--rm", "--runtime", "nosuch", "alpine", "true")
    assert r.returncode != 0 and "unknown runtime" in r.stderr


@pytest.mark.skipif(not shutil.which("tini-static"), reason="Debian's tini not installed")
def test_init_reaps_and_is_pid1(alpine):
    out = ok(alpine.docker("run", "--rm", "--init", "alpine", "cat", "/proc/1/cmdline"))
    assert out.startswith("/sbin/berth-init")


def test_healthcheck_turns_healthy_and_unhealthy(alpine):
    ok(alpine.docker("run", "-d", "--name", "hc", "--health-cmd", "test -e /tmp/ok",
                     "--health-interval", "200ms", "--health-retries", "2", "alpine",
                     "sh", "-c", "touch /tmp/ok; sleep 1.5; rm /tmp/ok; exec sleep 1000"))
    seen = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        h = json.loads(ok(alpine.docker("inspect", "hc")))[0]["State"].get("Health", {})
        if not seen or seen[-1] != h.get("Status"):
            seen.append(h.get("Status"))
        if h.get("Status") == "unhealthy":
            break
        time.sleep(0.1)
    assert "healthy" in seen and seen[-1] == "unhealthy", seen
    assert "(unhealthy)" in ok(alpine.docker("ps", "--filter", "name=hc"))


def test_healthcheck_output_and_timeout(alpine):
    ok(alpine.docker("run", "-d", "--name", "talks", "--health-cmd",
                     "echo to-out; echo to-err >&2; exit 1", "--health-interval", "200ms",
                     "alpine", "sleep", "1000"))
    ok(alpine.docker("run", "-d", "--name", "slow", "--health-cmd", "sleep 5",
                     "--health-timeout", "300ms", "--health-interval", "200ms",
                     "alpine", "sleep", "1000"))
    logs = {}
    deadline = time.monotonic() + 15
    while len(logs) < 2 and time.monotonic() < deadline:
        for name in ("talks", "slow"):
            h = json.loads(ok(alpine.docker("inspect", name)))[0]["State"].get("Health", {})
            if h.get("Log"):
                logs[name] = h["Log"][-1]
        time.sleep(0.1)
    assert logs["talks"]["ExitCode"] == 1
    assert "to-out" in logs["talks"]["Output"] and "to-err" in logs["talks"]["Output"]
    assert logs["slow"]["ExitCode"] == -1 and "timeout" in logs["slow"]["Output"]


def test_update_of_a_created_container_holds_at_its_start(alpine):
    ok(alpine.docker("create", "--name", "later", "alpine", "cat", "/sys/fs/cgroup/pids/pids.max"))
    ok(alpine.docker("update", "--pids-limit", "42", "later"))
    assert ok(alpine.docker("start", "-a", "later")).strip() == "42"
    ok(alpine.docker("update", "--pids-limit", "43", "later"))
    assert ok(alpine.docker("start", "-a", "later")).strip() == "43"


def test_read_only_root_and_capabilities(alpine):
    r = alpine.docker("run", "--rm", "--read-only", "alpine", "touch", "/x")
    assert r.returncode != 0 and "Read-only" in r.stderr
    ok(alpine.docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", "alpine", "touch", "/tmp/x"))
    # berth's defaults: no NET_RAW, no MKNOD; --cap-add gives them back
    r = alpine.docker("run", "--rm", "alpine", "mknod", "/dev/x", "c", "1", "3")
    assert r.returncode != 0
    ok(alpine.docker("run", "--rm", "--cap-add", "MKNOD", "alpine", "mknod", "/x", "c", "1", "3"))


def test_auto_remove_and_prune(alpine):
    ok(alpine.docker("run", "--rm", "--name", "gone", "alpine", "true"))
    assert alpine.docker("inspect", "gone").returncode != 0
    # a container that ends at once: its output and exit status reach the
    # client, and by the time `docker run` returns nothing of it is left
    r = alpine.docker("run", "--rm", "--name", "quick", "alpine", "sh", "-c", "echo bye; exit 7")
    assert r.returncode == 7 and r.stdout == "bye\n"
    assert alpine.docker("ps", "-aq", "--filter", "name=quick").stdout.strip() == ""
    for d in ("lib/containers", "lib/storage/overlay/containers", "run/shims"):
        assert list((alpine.tmp / d).iterdir()) == [], d
    import glob
    assert glob.glob(f"/sys/fs/cgroup/*/{alpine.cgroup_parent.strip('/')}/*") == []
    ok(alpine.docker("create", "--name", "stale", "alpine"))
    out = ok(alpine.docker("container", "prune", "-f"))
    assert "Total reclaimed space" in out
    assert alpine.docker("inspect", "stale").returncode != 0


def test_log_rotation_per_container(alpine):
    ok(alpine.docker("run", "--name", "chatty", "--log-opt", "max-size=2k", "--log-opt",
                     "max-file=2", "alpine", "sh", "-c",
                     "for i in $(seq 400); do echo line-$i; done"))
    info = json.loads(ok(alpine.docker("inspect", "chatty")))[0]
    import os
    log = info["LogPath"]
    assert os.path.getsize(log) <= 2048 + 200 and os.path.exists(log + ".1")
    assert not os.path.exists(log + ".2")
    out = ok(alpine.docker("logs", "chatty")).split()
    assert out[-1] == "line-400" and "line-1" not in out
    r = alpine.docker("run", "--rm", "--log-driver", "syslog", "alpine", "true")
    assert r.returncode != 0 and "syslog" in r.stderr
