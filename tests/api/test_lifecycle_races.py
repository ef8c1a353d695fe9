"""Windows between lifecycle paths, each driven where it opens: SIGKILL
and an inspect right after it, restart policies between two runs (never
"exited", no plain rm, kill and stop end the policy, RestartCount), a
removal while a restart timer is pending, commit with pause of a
container that is ending, an attach whose client leaves at once."""
import json
import os
import socket
import time

import pytest



@pytest.fixture(scope="module")
def daemon(alpine_berthd):
    return alpine_berthd


def state(d, name):
    status, _, body = d.api("GET", f"/containers/{name}/json")
    assert status == 200, body
    return json.loads(body)


def run(d, *args):
    r = d.docker("run", "-d", *args)
    assert r.returncode == 0, r.stderr + d.log()
    return r.stdout.strip()


def rm(d, name):
    d.api("DELETE", f"/containers/{name}?force=1")


def test_sigkill_returns_once_stopped(daemon):
    for i in range(3):
        cid = run(daemon, "alpine", "sleep", "1000")
        try:
            r = daemon.docker("kill", cid)
            assert r.returncode == 0, r.stderr
            st = state(daemon, cid)["State"]
            assert not st["Running"] and st["Status"] == "exited", st
            assert st["ExitCode"] == 137
        finally:
            rm(daemon, cid)


def test_sigkill_of_a_paused_container(daemon):
    cid = run(daemon, "alpine", "sleep", "1000")
    try:
        assert daemon.docker("pause", cid).returncode == 0
        r = daemon.docker("kill", cid)
        assert r.returncode == 0, r.stderr
        st = state(daemon, cid)["State"]
        assert st["Status"] == "exited" and st["ExitCode"] == 137, st
    finally:
        rm(daemon, cid)


def test_restart_always_never_shows_exited(daemon):
    cid = run(daemon, "--restart", "always", "alpine", "sh", "-c", "sleep 0.2; exit 3")
    try:
        seen, deadline = set(), time.monotonic() + 6
        while time.monotonic() < deadline:
            st = state(daemon, cid)
            seen.add(st["State"]["Status"])
            if st["State"]["Status"] == "restarting":
                assert st["State"]["ExitCode"] == 3
            r = daemon.api("DELETE", f"/containers/{cid}")
            assert r[0] == 409, r
            time.sleep(0.02)
        assert "exited" not in seen and "restarting" in seen, seen
        assert state(daemon, cid)["RestartCount"] >= 2
        # stop ends the policy: no run after it
        r = daemon.docker("stop", "-t", "1", cid)
        assert r.returncode == 0, r.stderr
        count = state(daemon, cid)["RestartCount"]
        time.sleep(2)
        st = state(daemon, cid)
        assert st["State"]["Status"] == "exited" and st["RestartCount"] == count
        # a start by hand begins the count anew (dockerd's way)
        assert daemon.docker("start", cid).returncode == 0
        assert state(daemon, cid)["RestartCount"] == 0
    finally:
        rm(daemon, cid)


def test_kill_with_the_stop_signal_ends_the_policy(daemon):
    script = 'trap "exit 7" TERM HUP; while :; do sleep 0.1; done'
    cid = run(daemon, "--restart", "always", "--stop-signal", "HUP", "alpine", "sh", "-c", script)
    try:
        time.sleep(0.5)
        # not the stop signal: the policy restarts it
        assert daemon.docker("kill", "-s", "TERM", cid).returncode == 0
        deadline = time.monotonic() + 15
        while state(daemon, cid)["RestartCount"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state(daemon, cid)["RestartCount"] == 1
        while not state(daemon, cid)["State"]["Running"] or \
                state(daemon, cid)["State"]["Status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.3)
        assert daemon.docker("kill", "-s", "HUP", cid).returncode == 0
        time.sleep(2)
        st = state(daemon, cid)
        assert st["State"]["Status"] == "exited" and st["RestartCount"] == 1, st["State"]
    finally:
        rm(daemon, cid)


def test_remove_while_a_restart_is_pending(daemon):
    for _ in range(3):
        cid = run(daemon, "--restart", "always", "alpine", "false")
        deadline = time.monotonic() + 15
        while state(daemon, cid)["State"]["Status"] != "restarting":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        r = daemon.api("DELETE", f"/containers/{cid}?force=1")
        assert r[0] == 204, r
        time.sleep(0.5)   # the timer fires into the removed record
        assert daemon.api("GET", f"/containers/{cid}/json")[0] == 404
        assert not os.path.exists(daemon.data_root / "containers" / cid)
    assert "Traceback" not in daemon.log()


def test_commit_with_pause_of_a_container_ending(daemon):
    codes = []
    for _ in range(8):
        cid = run(daemon, "alpine", "sh", "-c", "sleep 0.1")
        time.sleep(0.08)
        status, _, body = daemon.api("POST", f"/commit?container={cid}&pause=1")
        codes.append(status)
        assert status == 201, body
        image = json.loads(body)["Id"]
        rm(daemon, cid)
        daemon.api("DELETE", f"/images/{image}?force=1")
    assert "Traceback" not in daemon.log()


def test_attach_client_leaving_early_is_quiet(daemon):
    cid = run(daemon, "alpine", "sh", "-c", "head -c 4000000 /dev/zero | tr '\\0' x; sleep 1000")
    try:
        deadline = time.monotonic() + 20
        while os.path.getsize(state(daemon, cid)["LogPath"]) < 4000000:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for _ in range(3):
            s = socket.socket(socket.AF_UNIX)
            s.connect(daemon.sock)
            s.sendall(f"POST /containers/{cid}/attach?logs=1&stream=1&stdout=1 HTTP/1.1\r\n"
                      "Host: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
            s.recv(100)
            s.close()
        time.sleep(1)
        assert daemon.api("GET", "/_ping")[0] == 200
        assert "Traceback" not in daemon.log()
    finally:
        rm(daemon, cid)
