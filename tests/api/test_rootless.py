"""Rootless mode end to end (issue 7): an ordinary user, made for the test
(lines appended to /etc/passwd, /etc/group, /etc/subuid and /etc/subgid,
the files' bytes put back in teardown), starts berthd with Debian's
python3 and drives it with the real docker CLI, both as that user. (This host's
/dev/net/tun is 0600, where Debian's udev makes it 0666: the fixture gives
the daemon a 0666 node in a mount namespace of its own, the one thing an
admin would do.)

berthd re-executes itself as root of a user namespace mapped by
newuidmap/newgidmap; containers get slirp4netns networking. Checked:
run, exec, a published port reached from the host's loopback, egress to a
namespace the test made, rm, and that nothing is left running as the user."""
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from netutil import free_port
from procutil import stop
from shared_dir import FIXTURES

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
DOCKER = shutil.which("docker")
ALPINE = FIXTURES / "images" / "alpine-3.20.tar"

pytestmark = pytest.mark.skipif(
    DOCKER is None or not os.access(PYTHON, os.X_OK) or shutil.which("newuidmap") is None
    or shutil.which("slirp4netns") is None,
    reason="needs the docker CLI, Debian's python3, uidmap and slirp4netns")

ID_FILES = ("/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid")


def _free_id():
    taken = {p.pw_uid for p in pwd.getpwall()}
    with open("/etc/group") as f:
        taken |= {int(line.split(":")[2]) for line in f if line.count(":") >= 3}
    return next(i for i in range(23000, 60000) if i not in taken)


def _sub_start():
    end = 200000
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    end = max(end, int(parts[1]) + int(parts[2]))
    return end


def _user_pids(uid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    out.append(int(name))
            except OSError:
                pass
    return out


class User:
    """The test user, its home (a copy of berth's sources in it) and its
    berthd."""

    def __init__(self, name, uid, home):
        self.name, self.uid, self.home = name, uid, Path(home)
        self.run = self.home / "run"
        self.sock = self.run / "berth" / "berth.sock"
        self.env = {"HOME": str(self.home), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "XDG_RUNTIME_DIR": str(self.run), "DOCKER_HOST": f"unix://{self.sock}",
                    "LANG": "C.UTF-8"}
        self.proc = None
        self.tun = None

    def popen(self, argv, **kw):
        return subprocess.Popen(argv, user=self.uid, group=self.uid, extra_groups=[],
                                env=self.env, cwd=self.home, **kw)

    def run_as(self, argv, env=None, timeout=90):
        """argv as the user, in its home; output captured as text."""
        return subprocess.run(argv, user=self.uid, group=self.uid, extra_groups=[],
                              env=self.env if env is None else env, cwd=self.home,
                              capture_output=True, text=True, timeout=timeout)

    def docker(self, *args, timeout=90, check=True):
        p = self.run_as([DOCKER, *args], timeout=timeout)
        if check:
            assert p.returncode == 0, f"docker {' '.join(args)}: {p.returncode}\n{p.stderr}"
        return p

    def berth(self, *args):
        """berth's own CLI with no DOCKER_HOST: it finds the user's daemon."""
        code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                "from berth.cli.berth import main; sys.exit(main())")
        env = {k: v for k, v in self.env.items() if k != "DOCKER_HOST"}
        return self.run_as([PYTHON, "-I", "-c", code, str(self.home / "src"), *args], env=env,
                           timeout=60)

    def start(self, *args):
        code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                "from berth.cli.berthd import main; sys.exit(main())")
        self.log = open(self.home / "berthd.log", "ab")
        argv = [PYTHON, "-I", "-c", code, str(self.home / "src"), "--loopback-registries-only",
                *args]
        if self.tun:
            # the admin's part, done for this daemon only: a tun device the
            # user may open, over /dev/net/tun in a mount namespace of its own
            argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                    'u=$1; shift; mount --bind "$0" /dev/net/tun && '
                    'exec setpriv --reuid "$u" --regid "$u" --clear-groups -- "$@"',
                    self.tun, str(self.uid), *argv]
            self.proc = subprocess.Popen(argv, env=self.env, cwd=self.home,
                                         stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        else:
            self.proc = self.popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.sock.exists():
            assert self.proc.poll() is None, f"berthd exited:\n{self.log_text()}"
            assert time.monotonic() < deadline, f"no socket:\n{self.log_text()}"
            time.sleep(0.05)

    def log_text(self):
        return (self.home / "berthd.log").read_text(errors="replace")

    def stop(self):
        if self.proc:
            stop(self.proc, 15)
        if getattr(self, "log", None):
            self.log.close()


@pytest.fixture
def user():
    saved = {p: Path(p).read_bytes() for p in ID_FILES}
    uid = _free_id()
    name = f"berthrl{uid}"
    start = _sub_start()
    home = tempfile.mkdtemp(prefix="berth-rootless-", dir="/tmp")
    u = User(name, uid, home)
    try:
        with open("/etc/passwd", "a") as f:
            f.write(f"{name}:x:{uid}:{uid}:berth rootless test:{home}:/usr/sbin/nologin\n")
        with open("/etc/group", "a") as f:
            f.write(f"{name}:x:{uid}:\n")
        for p in ("/etc/subuid", "/etc/subgid"):
            with open(p, "a") as f:
                f.write(f"{name}:{start}:65536\n")
        shutil.copytree(REPO / "src" / "berth", u.home / "src" / "berth",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ALPINE, u.home / "alpine.tar")
        u.run.mkdir(mode=0o700)
        for d, _, files in os.walk(home):
            os.chown(d, uid, uid)
            for f in files:
                os.chown(os.path.join(d, f), uid, uid)
        os.chmod(home, 0o755)
        if os.stat("/dev/net/tun").st_mode & 0o006 != 0o006:
            # Debian's udev makes /dev/net/tun 0666; this host has 0600, and
            # slirp4netns needs it as the user
            tun_dir = tempfile.mkdtemp(prefix="berth-rootless-tun-", dir="/tmp")
            u.tun = os.path.join(tun_dir, "tun")
            os.mknod(u.tun, 0o20666, os.makedev(10, 200))
            os.chmod(u.tun, 0o666)
        yield u
    finally:
        try:
            u.stop()
        finally:
            # whatever the user's daemon left (shims, containers, slirp4netns):
            # every one of them runs as this test's user, started by this test
            for pid in _user_pids(uid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while _user_pids(uid) and time.monotonic() < deadline:
                time.sleep(0.05)
            for p, data in saved.items():
                with open(p, "wb") as f:
                    f.write(data)
            # the files under home belong to subordinate ids: root removes them
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(f"/tmp/berth-run-{uid}", ignore_errors=True)   # had run/ been missing
            if u.tun:
                shutil.rmtree(os.path.dirname(u.tun), ignore_errors=True)


@pytest.fixture
def daemon(user):
    user.start()
    user.docker("load", "-i", str(user.home / "alpine.tar"))
    return user


def _host_uid(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))


def test_run_exec_rm_as_an_ordinary_user(daemon):
    u = daemon
    info = u.docker("info", "--format", "{{json .SecurityOptions}}").stdout
    assert "name=rootless" in info
    # root inside, the user outside
    assert u.docker("run", "--rm", "alpine", "id", "-u").stdout.strip() == "0"
    cid = u.docker("run", "-d", "--name", "sleeper", "alpine", "sleep", "300").stdout.strip()
    pid = int(u.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)
    assert _host_uid(pid) == u.uid
    out = u.docker("exec", "sleeper", "sh", "-c", "echo from-exec; cat /proc/self/uid_map")
    assert out.stdout.startswith("from-exec")
    first = out.stdout.split("\n")[1].split()
    assert first[:2] == ["0", str(u.uid)], out.stdout
    audit = u.berth("audit")
    assert re.search(r"2\.8 +PASS +daemon +rootless", audit.stdout), audit.stdout + audit.stderr
    listed = u.berth("ps", "--format", "{{.Names}}")
    assert listed.returncode == 0 and listed.stdout.split() == ["sleeper"], listed
    u.docker("rm", "-f", "sleeper")
    assert not os.path.exists(f"/proc/{pid}")
    assert u.docker("ps", "-aq").stdout.strip() == ""


def test_limits_that_need_cgroups_are_refused_by_name(daemon):
    p = daemon.docker("run", "--rm", "--memory", "64m", "alpine", "true", check=False)
    assert p.returncode != 0
    assert "--memory" in p.stderr and "rootless" in p.stderr
    assert daemon.docker("ps", "-aq").stdout.strip() == ""


def _serve_once(port_in_container):
    # busybox nc answers one connection with a line, then exits
    return ["sh", "-c", f"echo hello-from-rootless | nc -l -p {port_in_container}"]




def test_published_port_reaches_the_container(daemon):
    u = daemon
    port = free_port()
    u.docker("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:8080", "alpine",
             *_serve_once(8080))
    shown = u.docker("port", "web").stdout
    assert f"127.0.0.1:{port}" in shown
    deadline = time.monotonic() + 20
    got = b""
    while time.monotonic() < deadline and b"hello" not in got:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                got = s.recv(100)
        except OSError:
            time.sleep(0.2)
    assert got.startswith(b"hello-from-rootless"), got
    u.docker("rm", "-f", "web")
    # slirp4netns went with the container
    assert not any(_comm(p) == "slirp4netns" for p in _user_pids(u.uid))


def test_low_host_port_is_refused_with_the_reason(daemon):
    p = daemon.docker("run", "-d", "--name", "low", "-p", "127.0.0.1:81:80", "alpine",
                      "sleep", "30", check=False)
    assert p.returncode != 0
    assert "81" in p.stderr and "ip_unprivileged_port_start" in p.stderr, p.stderr
    daemon.docker("rm", "-f", "low", check=False)


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_daemon_stop_leaves_nothing_of_the_user_running(daemon):
    u = daemon
    u.docker("run", "--rm", "alpine", "true")
    u.stop()
    deadline = time.monotonic() + 10
    while _user_pids(u.uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [_comm(p) for p in _user_pids(u.uid)] == []


@pytest.fixture
def outside():
    """A namespace the test makes as the "outside" host, on a veth pair:
    10.201.78.2 answers one TCP connection on port 7000."""
    ns = f"berth-rl-out-{os.getpid()}"
    veth = f"vrl{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    try:
        subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                        "netns", ns], check=True)
        subprocess.run(["ip", "addr", "add", "10.201.78.1/30", "dev", veth], check=True)
        subprocess.run(["ip", "link", "set", veth, "up"], check=True)
        for cmd in (["ip", "addr", "add", "10.201.78.2/30", "dev", "eth0"],
                    ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"]):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)
        server = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "sh", "-c",
                                   "echo hello-from-outside | busybox nc -l -p 7000"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield "10.201.78.2"
    finally:
        if server:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_egress_goes_out_through_slirp(daemon, outside):
    out = daemon.docker("run", "--rm", "alpine", "sh", "-c",
                        f"for i in 1 2 3 4 5 6 7 8 9 10; do nc {outside} 7000 </dev/null "
                        "&& break; sleep 0.3; done")
    assert "hello-from-outside" in out.stdout


def test_escape_battery_in_a_rootless_container(daemon):
    """The battery of tests/api/escape_battery.sh under rootless defaults:
    every probe blocked except the pids limit, which needs a cgroup this
    host does not delegate (README, Rootless mode)."""
    u = daemon
    script = u.home / "battery.sh"
    shutil.copy(Path(__file__).with_name("escape_battery.sh"), script)
    os.chown(script, u.uid, u.uid)
    u.docker("run", "-d", "--name", "battery", "--network", "none", "alpine", "sleep", "300")
    u.docker("cp", str(script), "battery:/battery.sh")
    out = u.docker("exec", "-e", f"BATTERY_HOST_PID={u.proc.pid}", "-e",
                   f"BATTERY_SOCKETS={u.sock}", "-e", "BATTERY_WATCH=0", "battery",
                   "sh", "/battery.sh", timeout=180).stdout
    lines = out.splitlines()
    assert lines and lines[-1] == "done", out
    results = {line.split(" ", 2)[0]: line.split(" ", 2)[1] for line in lines[:-1]}
    assert len(results) >= 25, out
    opened = sorted(k for k, v in results.items() if v != "BLOCKED")
    assert opened == ["pids_limit"], out
    u.docker("rm", "-f", "battery")


def test_containers_outlive_a_daemon_restart(daemon):
    """A keeper process holds the daemon's user and mount namespaces while
    containers run, and the next daemon joins them."""
    u = daemon
    u.docker("run", "-d", "--name", "keep", "alpine", "sleep", "300")
    pid = int(u.docker("inspect", "-f", "{{.State.Pid}}", "keep").stdout)
    u.stop()
    assert os.path.exists(f"/proc/{pid}"), "the container died with its daemon"
    u.start()
    assert u.docker("exec", "keep", "echo", "still-here").stdout.strip() == "still-here"
    u.docker("rm", "-f", "keep")
    u.stop()
    deadline = time.monotonic() + 10
    while _user_pids(u.uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [_comm(p) for p in _user_pids(u.uid)] == []


def test_volumes_binds_and_logs(daemon):
    """A named volume keeps data across containers; a bind of the user's
    own dir is writable as root inside and the file is the user's outside;
    logs and a graceful stop work."""
    u = daemon
    u.docker("volume", "create", "data")
    u.docker("run", "--rm", "-v", "data:/data", "alpine", "sh", "-c", "echo kept > /data/f")
    out = u.docker("run", "--rm", "-v", "data:/data", "alpine", "cat", "/data/f").stdout
    assert out.strip() == "kept"
    shared = u.home / "shared"
    shared.mkdir()
    os.chown(shared, u.uid, u.uid)
    u.docker("run", "--rm", "-v", f"{shared}:/mnt", "alpine", "sh", "-c", "echo hi > /mnt/made")
    assert (shared / "made").read_text() == "hi\n"
    assert (shared / "made").stat().st_uid == u.uid
    u.docker("run", "-d", "--name", "talker", "alpine", "sh", "-c",
             "echo said-this; trap 'exit 3' TERM; sleep 300 & wait")
    deadline = time.monotonic() + 10
    while "said-this" not in u.docker("logs", "talker").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    u.docker("stop", "-t", "5", "talker")
    code = u.docker("inspect", "-f", "{{.State.ExitCode}}", "talker").stdout.strip()
    assert code == "3"
    u.docker("rm", "talker")
    u.docker("volume", "rm", "data")


def test_build_and_commit_as_the_user(daemon):
    """The builder's RUN and COPY steps commit overlay upper dirs made in
    the user namespace (user.* overlay xattrs, ids in the user's range)."""
    u = daemon
    ctx = u.home / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM alpine\nCOPY note /note\n"
                                    "RUN rm /etc/motd && mkdir -p /d && echo ran > /d/f && "
                                    "chown 1000:1000 /d/f\nCMD [\"cat\", \"/note\", \"/d/f\"]\n")
    (ctx / "note").write_text("copied\n")
    for p in (ctx, ctx / "Dockerfile", ctx / "note"):
        os.chown(p, u.uid, u.uid)
    p = u.run_as([DOCKER, "build", "-t", "built:1", str(ctx)],
                 env=dict(u.env, DOCKER_BUILDKIT="0"), timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    out = u.docker("run", "--rm", "built:1").stdout
    assert out == "copied\nran\n"
    check = u.docker("run", "--rm", "built:1", "sh", "-c",
                     "test ! -e /etc/motd && stat -c %u /d/f").stdout
    assert check.strip() == "1000"
    u.docker("run", "--name", "tocommit", "alpine", "sh", "-c", "echo c > /committed")
    u.docker("commit", "tocommit", "committed:1")
    u.docker("rm", "tocommit")
    assert u.docker("run", "--rm", "committed:1", "cat", "/committed").stdout == "c\n"
