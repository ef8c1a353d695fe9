"""The berth CLI as a newcomer meets it: every mistake is one line and
docker's exit code (125), never a traceback; templates; an older daemon
(a dockerd 20.10 of the test's own, API 1.41) is spoken to at its version;
a socket it may not open says why; detach keys leave the container running."""
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared_dir import FIXTURES

REPO = Path(__file__).resolve().parents[2]
BERTH = str(REPO / "bin" / "berth")
sys.path.append(str(REPO / "bench"))
from image_load import Dockerd  # noqa: E402  (the bench's isolated dockerd)


def _run(env, *args, timeout=120, **kw):
    return subprocess.run([BERTH, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def _env(daemon):
    env = dict(daemon.env)
    env.pop("BERTH_HOST", None)
    return env


def _one_line_error(r, code=125):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("berth: "), r.stderr
    assert "Traceback" not in r.stderr and len(lines) <= 2, r.stderr   # + "See 'berth X --help'."
    return lines[0]


def test_mistakes_are_one_line_with_exit_125(berthd):
    env = _env(berthd)
    berthd.load("busybox-1.38")
    assert _run(env, "run", "-d", "--network", "none", "--name", "c1", "-l", "tier=web",
                "busybox", "sleep", "60").returncode == 0
    for argv, says in (
            (["run", "--cpus", "abc", "busybox"], '"abc" for "--cpus"'),
            (["run", "--pids-limit", "abc", "busybox"], '"abc" for "--pids-limit"'),
            (["update", "--memory", "lots", "c1"], '"lots" for "--memory"'),
            (["run", "--detach-keys", "ctrl-1", "busybox"], "invalid detach keys"),
            (["run", "--env-file", "/nonexistent/env", "busybox"], "/nonexistent/env"),
            (["ps", "--format", "{{.ID"], "unclosed action"),
            (["ps", "--format", "{{.Nope}}"], "can't evaluate field Nope"),
            (["images", "--format", "{{nofunc .ID}}"], 'function "nofunc" not defined'),
            (["ps", "--bogus"], "unknown flag: --bogus")):
        assert says in _one_line_error(_run(env, *argv)), argv
    # nothing was created by the refused runs
    names = _run(env, "ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert names == ["c1"]
    r = _run(env, "ps", "--format", '{{.Names}} {{.Label "tier"}} {{upper .Image}} {{json .State}}')
    assert r.stdout == 'c1 web BUSYBOX "running"\n', r.stderr
    r = _run(env, "stop", "--help")
    assert r.returncode == 0 and "  -t, --time int " in r.stdout and "Stop one or more" in r.stdout
    _run(env, "rm", "-f", "c1")


def test_an_older_dockerd_is_spoken_to_at_its_api_version(tmp_path_factory):
    d = Dockerd(tmp_path_factory.mktemp("dockerd"))
    try:
        d.start(timeout=120)
    except RuntimeError as e:
        pytest.fail(f"dockerd did not start: {e}")
    try:
        server = d.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip()
        env = dict(os.environ, DOCKER_HOST=f"unix://{d.sock}", DOCKER_CONFIG=str(d.work / "cli"))
        env.pop("BERTH_HOST", None)
        r = _run(env, "version", "--format", "{{.Client.ApiVersion}} {{.Server.ApiVersion}}")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [server, server]  # 1.41 for Debian's 20.10
        assert _run(env, "load", "-i", FIXTURES / "images" / "busybox-1.38.tar").returncode == 0
        r = _run(env, "run", "--rm", "--network", "none", "busybox", "echo", "hi")
        assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
        # what the peer's own CLI lists, berth lists too
        ours = _run(env, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        theirs = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        assert ours == theirs == "busybox:latest\n"
    finally:
        d.stop()


def test_a_socket_it_may_not_open_names_the_berth_group(berthd):
    from berth.client.api import Client, ConnectError
    os.chmod(berthd.sock, 0o660)   # root:root here; berthd's default group is berth
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:   # a user outside the group (this tree may not be theirs to read)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            Client("unix://" + berthd.sock).get("/containers/json")
            os.write(wfd, b"connected")
        except ConnectError as e:
            os.write(wfd, str(e).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        said = f.read().decode()
    os.waitpid(pid, 0)
    assert "permission denied" in said and "'berth' group" in said, said
    assert "is berthd running" not in said


def _pty_session(env, argv, typed, keys, timeout=60):
    """Runs berth in a pty, types `typed` (again every 2 s: going raw
    flushes what was typed before), waits for the shell's answer, then
    the detach keys; -> (exit status, what was seen)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(BERTH, [BERTH, *argv], env)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        sent, typed_at = False, 0
        while time.monotonic() < deadline:
            if not sent and time.monotonic() - typed_at > 2:
                os.write(fd, typed)
                typed_at = time.monotonic()
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status), seen
            if not sent and b"mark2" in seen:
                os.write(fd, keys)
                sent = True
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    pass
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None, seen
    finally:
        os.close(fd)


def test_detach_keys_leave_the_container_running(berthd):
    env = _env(berthd)
    berthd.load("busybox-1.38")
    assert _run(env, "run", "-dit", "--network", "none", "--name", "dt", "busybox", "sh").returncode == 0
    code, seen = _pty_session(env, ["attach", "dt"], b"echo mark$((1+1))\r", b"\x10\x11")
    assert code == 0 and b"mark2" in seen, seen[-500:]
    code, seen = _pty_session(env, ["exec", "-it", "--detach-keys", "ctrl-x,y", "dt", "sh"],
                              b"echo mark$((1+1))\r", b"\x18y")
    assert code == 0 and b"mark2" in seen, seen[-500:]
    r = _run(env, "inspect", "--format", "{{.State.Status}}", "dt")
    assert r.stdout.strip() == "running", r.stderr
    _run(env, "rm", "-f", "dt")
