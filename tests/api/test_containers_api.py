"""Containers through berthd, driven by the real docker CLI as a user would."""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from procutil import alive, children, wait_until
from tarutil import tar_of as _tar

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")


@pytest.fixture
def alpine(berthd):
    berthd.load("alpine-3.20")
    return berthd


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def test_run_prints_and_returns_the_exit_code(alpine):
    r = alpine.docker("run", "--rm", "alpine", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "out\n" and r.stderr == "err\n"
    assert ok(alpine.docker("ps", "-aq")) == ""   # --rm removed it


def test_detached_container_logs_exec_inspect_stop_rm(alpine):
    cid = ok(alpine.docker("run", "-d", "--name", "web", "-e", "GREETING=hello", "alpine", "sh",
                           "-c", "echo $GREETING; echo oops >&2; exec sleep 1000")).strip()
    deadline = time.monotonic() + 10
    while "hello" not in alpine.docker("logs", "web").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    r = alpine.docker("logs", "web")
    assert r.stdout == "hello\n" and r.stderr == "oops\n"
    assert ok(alpine.docker("exec", "web", "cat", "/etc/alpine-release")).startswith("3.20")
    assert alpine.docker("exec", "web", "sh", "-c", "exit 7").returncode == 7
    assert ok(alpine.docker("exec", "-u", "nobody", "web", "id", "-u")).strip() == "65534"
    info = json.loads(ok(alpine.docker("inspect", "web")))[0]
    assert info["Id"] == cid and info["Name"] == "/web"
    assert info["State"]["Running"] and info["State"]["Pid"] > 0
    assert "GREETING=hello" in info["Config"]["Env"]
    with open(f"/proc/{info['State']['Pid']}/status") as f:
        status = f.read()
    assert "NoNewPrivs:\t1" in status and "Seccomp:\t2" in status
    assert cid[:12] in ok(alpine.docker("ps"))
    assert alpine.docker("rm", "web").returncode != 0        # running: refused
    ok(alpine.docker("stop", "-t", "1", "web"))
    info = json.loads(ok(alpine.docker("inspect", "web")))[0]
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 137
    ok(alpine.docker("rm", "web"))
    assert alpine.docker("inspect", "web").returncode != 0


def test_tty_through_a_pty(alpine):
    # script(1) gives the docker CLI a terminal of a known size
    cmd = "stty rows 33 cols 111; docker run -it --rm alpine sh -c 'tty; stty size; exit 4'"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=alpine.env, capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 4, r
    assert "/dev/pts/0" in r.stdout and "33 111" in r.stdout


def test_exec_tty_and_stdin(alpine):
    ok(alpine.docker("run", "-d", "--name", "box", "alpine", "sleep", "1000"))
    r = alpine.docker("exec", "-i", "box", "tr", "a-z", "A-Z", input="shout\n")
    assert r.stdout == "SHOUT\n"
    cmd = "stty rows 20 cols 70; docker exec -it box sh -c 'stty size; exit 9'"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=alpine.env, capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 9 and "20 70" in r.stdout


def test_exec_detached_failing_and_under_runc(alpine):
    ok(alpine.docker("run", "-d", "--name", "box", "alpine", "sleep", "1000"))
    ok(alpine.docker("exec", "-d", "box", "sh", "-c", "echo later > /tmp/d"))
    deadline = time.monotonic() + 10
    while alpine.docker("exec", "box", "cat", "/tmp/d").stdout != "later\n":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = alpine.docker("exec", "box", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = alpine.docker("exec", "box", "/no/such/program")
    assert r.returncode == 126 and "/no/such/program" in r.stdout + r.stderr
    assert alpine.docker("exec", "box", "false").returncode == 1
    # runc is exec'd as a binary, as before
    ok(alpine.docker("run", "-d", "--name", "other", "--runtime", "runc", "alpine", "sleep", "1000"))
    r = alpine.docker("exec", "other", "sh", "-c", "echo via-runc; exit 5")
    assert (r.returncode, r.stdout) == (5, "via-runc\n")


def test_run_and_exec_when_the_shim_zygote_is_gone(alpine):
    # berthd forks shims and runs berth-runtime verbs from its zygote; if
    # that dies, it execs berth-shim and berth-runtime instead
    zygote = [p for p in children(alpine.proc.pid)
              if b"--zygote" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(zygote) == 1
    os.kill(zygote[0], 9)
    assert wait_until(lambda: not alive(zygote[0]), 10)
    ok(alpine.docker("run", "-d", "--name", "box", "alpine", "sleep", "1000"))
    r = alpine.docker("exec", "box", "sh", "-c", "echo still; exit 4")
    assert (r.returncode, r.stdout) == (4, "still\n")
    r = alpine.docker("run", "--rm", "alpine", "sh", "-c", "echo fresh; exit 2")
    assert (r.returncode, r.stdout) == (2, "fresh\n")


def test_cp_in_and_out_stays_inside_the_container(alpine, tmp_path):
    ok(alpine.docker("run", "-d", "--name", "box", "alpine", "sh", "-c",
                     "ln -s / /escape; ln -s /etc/shadow /tmp/shadow-link; exec sleep 1000"))
    src = tmp_path / "in.txt"
    src.write_text("payload\n")
    ok(alpine.docker("cp", str(src), "box:/tmp/"))
    assert ok(alpine.docker("exec", "box", "cat", "/tmp/in.txt")) == "payload\n"
    ok(alpine.docker("cp", "box:/etc/alpine-release", str(tmp_path / "rel")))
    assert (tmp_path / "rel").read_text().startswith("3.20")
    # through the container's own absolute symlink: still the container's root
    ok(alpine.docker("cp", "box:/escape/etc/alpine-release", str(tmp_path / "rel2")))
    assert (tmp_path / "rel2").read_text().startswith("3.20")
    status, _, _ = alpine.api("GET", "/containers/box/archive?path=/../../../../etc/hostname")
    assert status == 200
    host_marker = tmp_path / "marker"
    status, _, body = alpine.api("PUT", "/containers/box/archive?path=/escape/tmp",
                                 _tar({"../../../" + str(host_marker): b"x"}))
    assert status == 400, body
    assert not host_marker.exists()



def test_events_stats_top_and_diff(alpine):
    since = int(time.time()) - 1
    ok(alpine.docker("run", "-d", "--name", "box", "alpine", "sh", "-c",
                     "touch /new; exec sleep 1000"))
    out = ok(alpine.docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "box"))
    assert out.split() == ["box", "1"]
    assert "sleep 1000" in ok(alpine.docker("top", "box"))
    time.sleep(0.3)
    assert "A /new" in ok(alpine.docker("diff", "box"))
    ok(alpine.docker("rm", "-f", "box"))
    actions = [e["Action"] for e in alpine.events(since) if e["Type"] == "container"]
    for a in ("create", "start", "kill", "die", "destroy"):
        assert a in actions, actions


def test_named_volume_outlives_its_container(alpine):
    ok(alpine.docker("run", "--rm", "-v", "data:/data", "alpine", "sh", "-c", "echo kept > /data/f"))
    assert ok(alpine.docker("run", "--rm", "-v", "data:/data:ro", "alpine", "cat", "/data/f")) == "kept\n"
    r = alpine.docker("run", "--rm", "-v", "data:/data:ro", "alpine", "touch", "/data/g")
    assert r.returncode != 0 and "Read-only" in r.stderr
    ok(alpine.docker("volume", "rm", "data"))


def test_restart_policy_and_wait(alpine):
    ok(alpine.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "alpine",
                     "sh", "-c", "exit 1"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = json.loads(ok(alpine.docker("inspect", "flaky")))[0]
        if info["RestartCount"] == 2 and info["State"]["Status"] == "exited":
            break
        time.sleep(0.2)
    assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 1
    assert ok(alpine.docker("wait", "flaky")).strip() == "1"


def test_pause_rename_update(alpine):
    ok(alpine.docker("run", "-d", "--name", "aa", "alpine", "sleep", "1000"))
    ok(alpine.docker("pause", "aa"))
    assert json.loads(ok(alpine.docker("inspect", "aa")))[0]["State"]["Status"] == "paused"
    ok(alpine.docker("unpause", "aa"))
    ok(alpine.docker("rename", "aa", "bb"))
    ok(alpine.docker("update", "--memory", "64m", "--memory-swap", "64m", "--pids-limit", "50", "bb"))
    info = json.loads(ok(alpine.docker("inspect", "bb")))[0]
    assert info["HostConfig"]["Memory"] == 64 << 20 and info["HostConfig"]["PidsLimit"] == 50
    assert ok(alpine.docker("exec", "bb", "cat", "/sys/fs/cgroup/pids/pids.max")).strip() == "50"


def test_bad_requests_get_clear_4xx(alpine):
    status, _, body = alpine.api("POST", "/containers/create", b"{not json",
                                 {"Content-Type": "application/json"})
    assert status == 400 and b"malformed JSON" in body
    status, _, body = alpine.api("POST", "/containers/create", {"Image": "nosuch:1"})
    assert status == 404 and b"No such image" in body
    status, _, body = alpine.api("POST", "/containers/create",
                                 {"Image": "alpine", "HostConfig": {"Runtime": "nosuch"}})
    assert status == 400 and b"nosuch" in body
    status, _, body = alpine.api("POST", "/containers/create",
                                 {"Image": "alpine", "HostConfig": {"Binds": ["relative"]}})
    assert status == 400 and b"Binds" in body
    ok(alpine.docker("create", "--name", "dup", "alpine"))
    r = alpine.docker("create", "--name", "dup", "alpine")
    assert r.returncode != 0 and "already in use" in r.stderr
    status, _, body = alpine.api("POST", "/containers/create", b"{" + b" " * (17 << 20) + b"}",
                                 {"Content-Type": "application/json"})
    assert status == 413
    status, _, body = alpine.api("GET", "/containers/nosuch/json")
    assert status == 404 and json.loads(body)["message"] == "No such container: nosuch"
    # nothing half-made was left by the failures
    names = [c["Names"][0] for c in alpine.json("GET", "/containers/json?all=1")]
    assert names == ["/dup"]
    assert sorted(os.listdir(alpine.data_root / "containers")) == \
        [alpine.json("GET", "/containers/dup/json")["Id"]]


def test_unknown_fields_and_conflicting_requests(alpine):
    # a field the config does not have is ignored, as dockerd's decoder ignores it
    status, _, body = alpine.api("POST", "/containers/create", {"Image": "alpine", "Imagee": "x"})
    assert status == 201, body
    alpine.json("DELETE", f"/containers/{json.loads(body)['Id']}", expect=204)
    import concurrent.futures as cf
    with cf.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: alpine.api("POST", "/containers/create?name=race",
                                                    {"Image": "alpine", "Cmd": ["sleep", "100"]})[0],
                              range(8)))
    assert sorted(codes) == [201] + [409] * 7
    with cf.ThreadPoolExecutor(4) as pool:
        starts = list(pool.map(lambda _: alpine.api("POST", "/containers/race/start")[0], range(4)))
    assert sorted(starts)[0] == 204 and set(starts) <= {204, 304}, starts
    assert len(alpine.json("GET", "/containers/json")) == 1
    with cf.ThreadPoolExecutor(4) as pool:
        removes = list(pool.map(lambda _: alpine.api("DELETE", "/containers/race?force=1")[0],
                                range(4)))
    assert 204 in removes and set(removes) <= {204, 404, 409}, removes
    assert alpine.json("GET", "/containers/json?all=1") == []


def test_hardened_defaults_show_in_docker_inspect(alpine):
    ok(alpine.docker("create", "--name", "hard", "alpine"))
    hc = json.loads(ok(alpine.docker("inspect", "hard")))[0]["HostConfig"]
    assert set(hc["CapDrop"]) == {"NET_RAW", "MKNOD"}
    assert "no-new-privileges" in hc["SecurityOpt"]
    assert hc["PidsLimit"] == 4096
    assert "/proc/kcore" in hc["MaskedPaths"] and "/proc/sys" in hc["ReadonlyPaths"]
    ok(alpine.docker("create", "--name", "soft", "--cap-add", "NET_RAW",
                     "--security-opt", "no-new-privileges=false", "--pids-limit", "-1", "alpine"))
    hc = json.loads(ok(alpine.docker("inspect", "soft")))[0]["HostConfig"]
    assert hc["CapDrop"] == ["MKNOD"] and hc["SecurityOpt"] == ["no-new-privileges=false"]
    assert hc["PidsLimit"] in (None, 0, -1)
    info = json.loads(ok(alpine.docker("info", "--format", "{{json .SecurityOptions}}")))
    assert any("seccomp" in o for o in info) and any("no-new-privileges" in o for o in info)


def test_commit_keeps_changes_and_deletions(alpine):
    ok(alpine.docker("run", "--name", "src", "alpine", "sh", "-c",
                     "echo made > /made; rm /etc/motd; mkdir -p /d; echo x > /d/f"))
    ok(alpine.docker("commit", "-c", "CMD [\"cat\", \"/made\"]", "-m", "by test", "src",
                     "mine:1"))
    assert ok(alpine.docker("run", "--rm", "mine:1")) == "made\n"
    r = alpine.docker("run", "--rm", "mine:1", "cat", "/etc/motd")
    assert r.returncode != 0            # the deletion is in the new layer
    assert ok(alpine.docker("run", "--rm", "mine:1", "cat", "/d/f")) == "x\n"
    hist = ok(alpine.docker("history", "--no-trunc", "--format", "{{.Comment}}", "mine:1"))
    assert "by test" in hist


def test_abandoned_streams_end_their_threads(alpine):
    """A `docker events` or `docker logs -f` whose client went away must
    not keep a daemon thread forever."""
    import signal as _signal
    ok(alpine.docker("run", "-d", "--name", "talk", "alpine", "sleep", "1000"))
    pid = alpine.proc.pid

    def threads():
        return len(os.listdir(f"/proc/{pid}/task"))
    # threads of the run itself (the cgroup warm-up, request handlers) end
    # on their own: the base is the count once it holds still
    base, deadline = threads(), time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = threads()
        if now == base:
            break
        base = now
    procs = [subprocess.Popen(["docker", *args], env=alpine.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for args in (["events"], ["logs", "-f", "talk"])]
    time.sleep(1.0)
    assert threads() >= base + 2
    for p in procs:
        p.send_signal(_signal.SIGKILL)
        p.wait()
    deadline = time.monotonic() + 10
    while threads() > base and time.monotonic() < deadline:
        time.sleep(0.2)
    assert threads() <= base
