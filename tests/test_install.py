"""`make install` into a temporary prefix, as a user or a package build
does: the installed berth and berthd run on Debian's python3 and its
packages; the systemd units pass `systemd-analyze verify`; berthd started
the way systemd starts it (the socket in LISTEN_FDS, readiness on
NOTIFY_SOCKET) answers the installed CLI, leaves systemd's socket in place
when it stops; `make uninstall` removes what install put there."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from procutil import stop
from runtime.cgroup_cleanup import remove_cgroups

REPO = Path(__file__).resolve().parents[1]
CGROUP_ROOT = "/sys/fs/cgroup"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("make") is None,
                                reason="needs root and make")


def _make(*args):
    r = subprocess.run(["make", "-C", str(REPO), *args], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


@pytest.fixture
def installed(session_token):
    tmp = Path(os.path.realpath(tempfile.mkdtemp(prefix="berth-install-")))
    prefix, units = tmp / "usr", tmp / "units"
    args = [f"PREFIX={prefix}", f"UNITDIR={units}", "BERTH_GROUP="]
    try:
        _make("install", *args)
        yield tmp, prefix, units, args
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_make_install_runs_under_systemds_protocol_and_uninstalls(installed, session_token):
    tmp, prefix, units, args = installed
    berth, berthd = prefix / "bin" / "berth", prefix / "bin" / "berthd"
    assert os.readlink(berthd) == "../lib/berth/bin/berthd"
    assert "--log-level" in subprocess.run([berthd, "--help"], capture_output=True,
                                           text=True).stdout
    service = (units / "berth.service").read_text()
    assert f"ExecStart={prefix}/bin/berthd -H fd://" in service and "KillMode=process" in service
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", str(units / "berth.socket"),
                            str(units / "berth.service")], capture_output=True, text=True)
        assert r.returncode == 0 and "berth" not in r.stderr, r.stderr

    # berthd as systemd starts it: the listening socket is fd 3
    sock_path, notify_path = str(tmp / "berth.sock"), str(tmp / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(16)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(120)
    parent = f"/berth-test-{session_token}-install"
    fd = listener.fileno()
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, LISTEN_FDS="1")
    # fd 3 and LISTEN_PID (the pid that execs berthd), as systemd sets them
    as_systemd = ("import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); fd != 3 and os.close(fd); "
                  "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[2], sys.argv[2:])")
    with open(tmp / "log", "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", as_systemd, str(fd), str(berthd), "-H", "fd://",
             "--data-root", str(tmp / "lib"), "--exec-root", str(tmp / "run"),
             "--config-dir", str(tmp / "etc"), "--cgroup-parent", parent, "--log-level", "debug"],
            env=env, pass_fds=(fd,), stdout=subprocess.DEVNULL, stderr=log_file,
            start_new_session=True)
    try:
        assert notify.recv(4096) == b"READY=1", (tmp / "log").read_text()
        client_env = dict(os.environ, DOCKER_HOST=f"unix://{sock_path}",
                          DOCKER_CONFIG=str(tmp / "cli"))
        client_env.pop("BERTH_HOST", None)
        r = subprocess.run([berth, "version", "--format", "{{.Client.Version}} {{.Server.Version}}"],
                           env=client_env, capture_output=True, text=True, timeout=60)
        client, server = r.stdout.split()
        assert client == server, r.stderr   # one version for both
        proc.send_signal(signal.SIGTERM)
        assert notify.recv(4096) == b"STOPPING=1"
        assert proc.wait(timeout=60) == 0
        assert os.path.exists(sock_path), "the socket is systemd's, not berthd's to remove"
        log = (tmp / "log").read_text()
        assert 'level=info msg="berthd ' in log and 'time="' in log, log
        assert "level=info" in log and "GET /_ping" not in log   # successes are not errors
    finally:
        if proc.poll() is None:
            stop(proc, 10)
        listener.close()
        notify.close()
        remove_cgroups([d for d in (os.path.join(CGROUP_ROOT, h, parent.lstrip("/"))
                                    for h in os.listdir(CGROUP_ROOT)) if os.path.isdir(d)])

    _make("uninstall", *args)
    left = [str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file() or p.is_symlink()]
    assert all(not x.startswith(("usr/", "units/")) for x in left), left
