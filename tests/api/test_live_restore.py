"""kill -9 of berthd: containers keep running under their shims, and the
next berthd finds them, their logs and the exit codes of those that ended
while it was away; whatever a request in flight had half made is repaired."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")

N = 20


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def crash(d):
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    d._log.close()


def pids_alive(pids):
    return [p for p in pids if os.path.exists(f"/proc/{p}")]


def test_kill9_with_twenty_containers_and_requests_in_flight(berthd):
    berthd.load("alpine-3.20")
    for i in range(N):
        ok(berthd.docker("run", "-d", "--name", f"c{i:02d}", "alpine", "sh", "-c",
                         f"echo hello-{i}; exec sleep 1000"))
    ok(berthd.docker("run", "-d", "--name", "ender", "alpine", "sh", "-c",
                     "sleep 2; echo bye; exit 42"))
    infos = json.loads(ok(berthd.docker("inspect", *[f"c{i:02d}" for i in range(N)])))
    pids = [i["State"]["Pid"] for i in infos]
    # requests in flight when the daemon dies: a log stream, a stats stream,
    # and creations racing the kill
    follow = subprocess.Popen(["docker", "logs", "-f", "c00"], env=berthd.env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stats = subprocess.Popen(["docker", "stats", "c01"], env=berthd.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    racers = [subprocess.Popen(["docker", "run", "-d", "alpine", "sleep", "1000"], env=berthd.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for _ in range(3)]
    time.sleep(0.3)
    crash(berthd)
    for p in [follow, stats] + racers:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    follow.stdout.close()
    time.sleep(3)   # "ender" exits while no daemon is there
    assert pids_alive(pids) == pids, "containers died with berthd"

    berthd.start()
    listed = {c["Names"][0].lstrip("/"): c for c in
              berthd.json("GET", "/containers/json?all=1")}
    for i in range(N):
        c = listed[f"c{i:02d}"]
        assert c["State"] == "running", c
        assert ok(berthd.docker("logs", f"c{i:02d}")) == f"hello-{i}\n"
    ender = json.loads(ok(berthd.docker("inspect", "ender")))[0]
    assert ender["State"]["Status"] == "exited" and ender["State"]["ExitCode"] == 42
    assert ok(berthd.docker("logs", "ender")) == "bye\n"
    # racers: each is either fully there or not at all, never half made
    on_disk = set(os.listdir(berthd.data_root / "containers"))
    assert on_disk == {c["Id"] for c in listed.values()}
    # the restored daemon still drives the old containers
    ok(berthd.docker("exec", "c05", "true"))
    ok(berthd.docker("stop", "-t", "1", "c05"))
    assert json.loads(ok(berthd.docker("inspect", "c05")))[0]["State"]["ExitCode"] == 137
    ok(berthd.docker("rm", "-f", *listed))
    assert pids_alive(pids) == []
    assert os.listdir(berthd.exec_root / "shims") == []
    with open("/proc/self/mountinfo") as f:
        assert str(berthd.data_root) not in f.read()


def test_exit_while_daemon_is_down_is_seen_by_wait(berthd):
    berthd.load("alpine-3.20")
    ok(berthd.docker("run", "-d", "--name", "short", "alpine", "sh", "-c", "sleep 1; exit 5"))
    crash(berthd)
    time.sleep(2)
    berthd.start()
    assert ok(berthd.docker("wait", "short")).strip() == "5"


def test_waiters_and_attach_survive_nothing_but_get_an_answer(berthd):
    """A `docker wait` cut by the crash fails cleanly; a new one works."""
    berthd.load("alpine-3.20")
    ok(berthd.docker("run", "-d", "--name", "ww", "alpine", "sleep", "1000"))
    out = {}

    def waiter():
        out["r"] = berthd.docker("wait", "ww", timeout=60)
    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    crash(berthd)
    t.join(30)
    assert out["r"].returncode != 0
    berthd.start()
    out2 = {}
    t = threading.Thread(target=lambda: out2.setdefault("r", berthd.docker("wait", "ww", timeout=60)))
    t.start()
    time.sleep(0.5)
    ok(berthd.docker("kill", "ww"))
    t.join(30)
    assert out2["r"].stdout.strip() == "137"
