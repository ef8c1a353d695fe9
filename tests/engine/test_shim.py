"""berth-shim driving bin/berth-runtime on real busybox containers: the
ready report, the json-file log, attach (framed, stdin, several clients),
a terminal through the console socket with resize, wait's exit codes,
survival of its parent's SIGKILL, a failing create and log rotation.

Every test runs twice: with berth-monitor (the C program the shim execs
once the container is created) and with the Python shim staying the
monitor, berthd's fallback; both must behave alike.

Every test's teardown kills and deletes its container, ends its shim and
removes its directories, pass or fail."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procutil import alive as _alive, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
import bundle as bundles  # noqa: E402  (tests/runtime/bundle.py)
from cgroup_cleanup import remove_cgroups  # noqa: E402
from cgroup_walk import walk_cgroups  # noqa: E402

ID_PREFIX = "berth-test-"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "bin" / "berth-shim"
RUNTIME = REPO / "bin" / "berth-runtime"
MONITOR = REPO / "bin" / "berth-monitor"
TIMEOUT = 30



def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Shim:
    """One container under berth-shim, in its own directory."""
    _n = 0

    def __init__(self, tmp_path, token, monitor, args, changes=None, flags=(),
                 rootfs_applets=()):
        Shim._n += 1
        self.monitor = monitor
        self.id = f"{ID_PREFIX}{token}-shim-{Shim._n}"
        self.dir = tmp_path / "shim-test"
        self.bundle = self.dir / "bundle"
        self.root = self.dir / "rt"
        self.state = self.dir / "state"
        self.log = self.state / "ctr.log"
        self.flags = list(flags)
        changes = dict(changes or {})
        changes["linux.cgroupsPath"] = "/" + self.id
        bundles.make_busybox_bundle(self.bundle, args=args, changes=changes)
        for applet in rootfs_applets:
            link = self.bundle / "rootfs" / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
        self.report = None
        self.shim_pid = None

    def argv(self):
        return [str(SHIM), "--id", self.id, "--bundle", str(self.bundle),
                "--runtime", str(RUNTIME), "--runtime-root", str(self.root),
                "--state-dir", str(self.state), "--log-path", str(self.log), *self.flags,
                *(["--monitor", str(MONITOR)] if self.monitor else [])]

    def start(self, expect_ok=True):
        res = subprocess.run(self.argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, timeout=TIMEOUT)
        lines = res.stdout.decode().splitlines()
        assert len(lines) == 1, f"ready report is not one line: {res.stdout!r} {res.stderr!r}"
        self.report = json.loads(lines[0])
        self.shim_pid = self.report.get("shim_pid")
        if expect_ok:
            assert res.returncode == 0 and "pid" in self.report, \
                f"{self.report} {res.stderr!r} {self.shim_log()}"
        return self.report, res.returncode

    def shim_log(self):
        try:
            return (self.state / "shim.log").read_text()
        except OSError:
            return ""

    def connect(self, name):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(str(self.state / name))
        return s

    def control(self, req):
        with self.connect("control.sock") as s:
            s.sendall((json.dumps(req) + "\n").encode())
            return json.loads(_read_line(s))

    def wait(self):
        """The exit status as berthd gets it: from the control socket, or
        from exit.json once the shim has finished and removed the socket."""
        try:
            return self.control({"op": "wait"})
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError,
                json.JSONDecodeError):
            assert self.wait_shim_gone()
            return json.loads((self.state / "exit.json").read_text())

    def attach(self, stdin=True, stdout=True, stderr=True):
        s = self.connect("attach.sock")
        s.sendall((json.dumps({"stdin": stdin, "stdout": stdout, "stderr": stderr})
                   + "\n").encode())
        return s

    def runtime(self, *args):
        return subprocess.run([str(RUNTIME), "--root", str(self.root), *args],
                              capture_output=True, text=True, timeout=TIMEOUT)

    def wait_shim_gone(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.shim_pid or not _alive(self.shim_pid):
                return True
            time.sleep(0.02)
        return False

    def cleanup(self):
        self.runtime("kill", self.id, "KILL")
        self.runtime("delete", "-f", self.id)
        pid = self.shim_pid
        if pid is None:
            try:
                pid = int((self.state / "shim.pid").read_text())
            except (OSError, ValueError):
                pid = None
        if pid and self.id in _cmdline(pid):
            if not self.wait_shim_gone(5):
                os.kill(pid, signal.SIGKILL)
                self.wait_shim_gone(5)
        left = walk_cgroups(lambda n: n == self.id)
        if left:
            remove_cgroups(left)
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.dir)], check=False)


def _read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def _read_all(s):
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def _frames(data):
    """Docker's multiplexed stream -> {1: stdout bytes, 2: stderr bytes}."""
    out = {1: b"", 2: b""}
    while data:
        assert len(data) >= 8 and data[1:4] == b"\0\0\0", f"bad frame header {data[:8]!r}"
        n = int.from_bytes(data[4:8], "big")
        out[data[0]] += data[8:8 + n]
        data = data[8 + n:]
    return out


def _log_entries(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(params=["monitor", "python"])
def make(request, tmp_path, session_token):
    monitor = request.param == "monitor"
    if monitor and not os.access(MONITOR, os.X_OK):
        pytest.fail(f"{MONITOR} is not built (make build)")
    made = []

    def _make(*args, **kw):
        s = Shim(tmp_path, session_token, monitor, *args, **kw)
        made.append(s)
        return s
    yield _make
    for s in made:
        s.cleanup()


def _assert_finished(s):
    assert s.wait_shim_gone(), f"shim {s.shim_pid} still running"
    left = sorted(p.name for p in s.state.iterdir())
    for name in ("attach.sock", "control.sock", "console.sock", "shim.pid"):
        assert name not in left, f"{name} left in {left}"
    assert (s.state / "exit.json").exists() and s.log.exists()
    assert "does not exist" in s.runtime("state", s.id).stderr or \
        s.runtime("state", s.id).returncode != 0


def test_log_streams_and_exit_code(make):
    s = make(["sh", "-c", "echo hello; echo oops >&2; sleep 0.3; printf tail; exit 3"])
    s.start()
    w = s.wait()
    assert w["exit_code"] == 3 and w["oom_killed"] is False
    assert w["finished_at"].endswith("Z") and len(w["finished_at"]) == 30
    _assert_finished(s)
    entries = _log_entries(s.log)
    got = [(e["stream"], e["log"]) for e in entries]
    assert ("stdout", "hello\n") in got and ("stderr", "oops\n") in got
    assert ("stdout", "tail") in got, got   # the partial line is flushed at exit
    assert all(len(e["time"]) == 30 and e["time"].endswith("Z") for e in entries)
    assert json.loads((s.state / "exit.json").read_text())["exit_code"] == 3
    # wait after the end still answers from exit.json's peer: the file
    assert s.log.read_text().startswith('{"log":"')


def test_ready_report_ping_signals_and_kill9(make):
    s = make(["sleep", "60"])
    report, rc = s.start()
    assert rc == 0 and set(report) == {"pid", "shim_pid"}
    pid = report["pid"]
    assert _alive(pid) and _alive(s.shim_pid)
    assert int((s.state / "shim.pid").read_text()) == s.shim_pid
    # the init was reparented to the shim (subreaper)
    ppid = int(Path(f"/proc/{pid}/status").read_text().split("PPid:")[1].split()[0])
    assert ppid == s.shim_pid
    # the shim left its own session and berthd's fds
    assert os.getsid(s.shim_pid) == s.shim_pid
    fds = {os.readlink(f"/proc/{s.shim_pid}/fd/{n}") for n in os.listdir(f"/proc/{s.shim_pid}/fd")}
    assert not any("pipe" in f and f == os.readlink("/proc/self/fd/1") for f in fds)
    for name in ("attach.sock", "control.sock"):
        assert (s.state / name).stat().st_mode & 0o777 == 0o600
    assert s.control({"op": "ping"}) == {"ok": True, "pid": pid}
    os.kill(s.shim_pid, signal.SIGTERM)
    os.kill(s.shim_pid, signal.SIGINT)
    time.sleep(0.2)
    assert _alive(s.shim_pid) and s.control({"op": "ping"})["ok"] is True
    waiter = s.connect("control.sock")
    waiter.sendall(b'{"op":"wait"}\n')
    assert s.runtime("kill", s.id, "KILL").returncode == 0
    assert json.loads(_read_line(waiter))["exit_code"] == 137
    waiter.close()
    _assert_finished(s)


def test_attach_framed_output_and_stdin(make):
    s = make(["sh", "-c", "read line; echo got:$line; cat; echo bye >&2"],
             flags=["--open-stdin", "--stdin-once"])
    s.start()
    a = s.attach()
    time.sleep(0.1)
    a.sendall(b"hello\n")
    a.sendall(b"through cat\n")
    a.shutdown(socket.SHUT_WR)   # stdin-once: cat sees EOF
    frames = _frames(_read_all(a))
    a.close()
    assert frames[1] == b"got:hello\nthrough cat\n"
    assert frames[2] == b"bye\n"
    assert s.wait()["exit_code"] == 0
    _assert_finished(s)


def test_several_attach_clients_get_their_streams(make):
    s = make(["sh", "-c", "read x; echo out-$x; echo err-$x >&2"], flags=["--open-stdin"])
    s.start()
    a = s.attach(stdin=True, stdout=True, stderr=False)
    b = s.attach(stdin=False, stdout=False, stderr=True)
    c = s.attach(stdin=False, stdout=True, stderr=True)
    time.sleep(0.2)
    a.sendall(b"1\n")
    fa, fb, fc = (_frames(_read_all(x)) for x in (a, b, c))
    for x in (a, b, c):
        x.close()
    assert fa == {1: b"out-1\n", 2: b""}
    assert fb == {1: b"", 2: b"err-1\n"}
    assert fc == {1: b"out-1\n", 2: b"err-1\n"}
    assert s.wait()["exit_code"] == 0


def test_tty_console_socket_and_resize(make):
    s = make(["sh", "-c", "read x; stty size; echo end-$x"],
             changes={"process.terminal": True},
             flags=["--tty", "--open-stdin"], rootfs_applets=("stty",))
    s.start()
    assert not (s.state / "console.sock").exists()
    assert s.control({"op": "resize", "height": 33, "width": 111}) == {"ok": True}
    a = s.attach()
    time.sleep(0.1)
    a.sendall(b"go\n")
    out = _read_all(a)
    a.close()
    assert b"33 111" in out and b"end-go" in out, out   # raw, not framed
    assert s.wait()["exit_code"] == 0
    entries = _log_entries(s.log)
    assert {e["stream"] for e in entries} == {"stdout"}
    assert any("33 111" in e["log"] for e in entries)
    _assert_finished(s)


def test_shim_survives_its_parent_sigkill(make):
    s = make(["sleep", "60"])
    # the shim's parent is a shell that lingers like berthd, and is killed
    proc = subprocess.Popen(["sh", "-c", '"$@"; sleep 300', "sh", *s.argv()],
                            stdout=subprocess.PIPE, start_new_session=True)
    try:
        report = json.loads(proc.stdout.readline())
        s.shim_pid = report["shim_pid"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    time.sleep(0.2)
    assert _alive(s.shim_pid) and _alive(report["pid"])
    assert s.control({"op": "ping"}) == {"ok": True, "pid": report["pid"]}
    s.runtime("kill", s.id, "KILL")   # (sleep as pid 1 ignores TERM)
    assert s.wait()["exit_code"] == 137
    _assert_finished(s)


def test_failing_create_reports_and_leaves_nothing(make):
    s = make(["/no/such/program"])
    report, rc = s.start(expect_ok=False)
    assert rc == 1 and set(report) == {"error"}
    assert "/no/such/program" in report["error"]
    s.shim_pid = int(s.shim_log().split("[")[1].split("]")[0]) if s.shim_log() else None
    assert s.wait_shim_gone()
    assert s.runtime("state", s.id).returncode != 0
    assert not walk_cgroups(lambda n: n == s.id)
    left = sorted(p.name for p in s.state.iterdir())
    assert not {"attach.sock", "control.sock", "console.sock", "shim.pid"} & set(left)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and s.id in _cmdline(p)]


def test_log_rotation(make):
    s = make(["sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"],
             flags=["--log-max-size", "2000", "--log-max-files", "3"])
    s.start()
    assert s.wait()["exit_code"] == 0
    _assert_finished(s)
    names = sorted(p.name for p in s.state.iterdir() if p.name.startswith("ctr.log"))
    assert names == ["ctr.log", "ctr.log.1", "ctr.log.2"]
    lines = []
    for name in ("ctr.log.2", "ctr.log.1", "ctr.log"):
        p = s.state / name
        assert p.stat().st_size < 2000 + 200
        lines += [e["log"] for e in _log_entries(p)]
    n = len(lines)
    assert lines == [f"line-{i}\n" for i in range(300 - n, 300)]


def test_tty_stdin_once_ends_cat(make):
    s = make(["sh", "-c", "cat; echo cat-done"], changes={"process.terminal": True},
             flags=["--tty", "--open-stdin", "--stdin-once"])
    s.start()
    a = s.attach()
    time.sleep(0.1)
    a.sendall(b"abc\n")
    a.shutdown(socket.SHUT_WR)   # the terminal gets ^D: cat ends
    out = _read_all(a)
    a.close()
    assert b"abc" in out and b"cat-done" in out, out
    assert s.wait()["exit_code"] == 0
    _assert_finished(s)


def test_control_requests_get_the_same_answers(make):
    s = make(["sleep", "60"])
    report, _ = s.start()
    with s.connect("control.sock") as c:
        # several requests on one connection, answered in order
        c.sendall(b'{"op":"ping"}\n\n  \nnot json\n[1]\n{"op":"nope"}\n{"op":"resize",'
                  b'"height":-1,"width":2}\n{"op":"resize","height":3,"width":4}\n'
                  b'{"op":"kill","signal":"TERM"}\n{"op":"start"}\n')
        f = c.makefile("rb")
        got = [json.loads(f.readline()) for _ in range(8)]
    assert got == [
        {"ok": True, "pid": report["pid"]},
        {"error": "request is not a json object"},
        {"error": "request is not a json object"},
        {"error": "unknown op 'nope'"},
        {"error": "resize: height and width must be integers 0..65535"},
        {"ok": True},   # no terminal: nothing to resize, as Docker
        {"error": "kill: signal must be an integer 1..64"},
        {"error": "already started"},   # without --no-start
    ]
    waiter = s.connect("control.sock")
    waiter.sendall(b'{"op":"wait"}\n')
    assert s.control({"op": "kill", "signal": 9}) == {"ok": True}
    assert json.loads(_read_line(waiter))["exit_code"] == 137
    waiter.close()
    _assert_finished(s)


def test_log_entries_are_the_python_shims_own(make):
    """Invalid UTF-8, control characters, quotes: each entry exactly as
    berth.shim.logs writes it; a long line in pieces of at most PARTIAL_MAX
    (where it is cut depends on the pipe's reads, as with Docker)."""
    sys.path.insert(0, str(REPO / "src"))
    from berth.shim import logs
    script = r"""printf 'bad \377\376 cut \342\202 end\n'; printf 'ctl \001\033 "q" \\ tab\t\r\n' >&2
                 sleep 0.2; head -c 40000 /dev/zero | tr '\0' 'x'; sleep 0.2; printf '\n'
                 printf 'utf8 \303\251\n'"""
    s = make(["sh", "-c", script])
    s.start()
    assert s.wait()["exit_code"] == 0
    _assert_finished(s)
    lines = s.log.read_bytes().splitlines(keepends=True)
    for stream, chunk in [("stdout", b"bad \377\376 cut \342\202 end\n"),
                          ("stderr", b'ctl \001\033 "q" \\ tab\t\r\n'),
                          ("stdout", "utf8 \u00e9\n".encode())]:
        want = logs.entry(stream, chunk, 0).rsplit(b',"time"', 1)[0]
        assert sum(line.rsplit(b',"time"', 1)[0] == want for line in lines) == 1, (want, lines)
    xs = [json.loads(line)["log"] for line in lines if line.startswith(b'{"log":"x')]
    assert "".join(xs) == "x" * 40000 + "\n"
    assert len(xs) >= 3 and all(len(x) <= logs.PARTIAL_MAX for x in xs[:-1])


def test_clients_of_before_the_start_are_served_after_it(make):
    """--no-start (berthd's way): attach and control clients connect, send
    stdin and half a request before the start; after it (when berth-monitor
    has taken over from the Python loop) each gets what it is owed."""
    s = make(["sh", "-c", "read x; echo got-$x; cat"],
             flags=["--no-start", "--open-stdin", "--stdin-once"])
    report, _ = s.start()
    a = s.attach(stdin=True, stdout=True, stderr=False)
    a.sendall(b"early\n")
    waiter = s.connect("control.sock")
    waiter.sendall(b'{"op":"wait"}\n')
    half = s.connect("control.sock")
    half.sendall(b'{"op":"pi')
    time.sleep(0.2)   # all of it read by the loop before the start
    assert s.control({"op": "start"}) == {"ok": True}
    if s.monitor:
        assert wait_until(lambda: os.path.basename(os.readlink(f"/proc/{s.shim_pid}/exe"))
                          == "berth-monitor", 10)
    half.sendall(b'ng"}\n')
    assert json.loads(_read_line(half)) == {"ok": True, "pid": report["pid"]}
    half.close()
    a.sendall(b"later\n")
    a.shutdown(socket.SHUT_WR)
    assert _frames(_read_all(a)) == {1: b"got-early\nlater\n", 2: b""}
    a.close()
    assert json.loads(_read_line(waiter))["exit_code"] == 0
    waiter.close()
    _assert_finished(s)
