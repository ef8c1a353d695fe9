"""Private daemons for the API tests, outside conftest.py so that test
modules and tools (tests/conformance/dockerpy_conformance.py) import them
by a name of their own: `from conftest import` finds whichever conftest
pytest loaded last (tests/runtime has one too).

    with private_berthd() as d: ...     # a berthd on a temp dir, torn down after
    with private_dockerd() as d: ...    # the peer, behind the same client methods
"""
import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from procutil import stop
from shared_dir import FIXTURES

REPO = Path(__file__).resolve().parents[2]
BERTHD = os.environ.get("BERTHD") or str(REPO / "bin" / "berthd")
DOCKER = shutil.which("docker")
IMAGES = FIXTURES / "images"
START_TIMEOUT = 20
STOP_TIMEOUT = 10

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Daemon:
    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.sock = str(self.tmp / "berth.sock")
        self.data_root = self.tmp / "lib"
        self.exec_root = self.tmp / "run"
        self.config_dir = self.tmp / "etc"
        self.log_path = self.tmp / "berthd.log"
        self.env = dict(os.environ, DOCKER_HOST="unix://" + self.sock,
                        DOCKER_CONFIG=str(self.tmp / "docker-config"))
        self.env.pop("DOCKER_CONTEXT", None)
        self.env.pop("DOCKER_TLS_VERIFY", None)
        self.proc = None
        self._log = None
        self.extra_args = []   # set, then restart(), for daemon options
        # containers go under a cgroup of this test's own, removed in teardown
        self.cgroup_parent = "/berth-test-" + os.path.basename(self.tmp)

    # -- life -----------------------------------------------------------

    def start(self):
        for d in (self.config_dir, self.tmp / "docker-config"):
            d.mkdir(parents=True, exist_ok=True)
        argv = [BERTHD, "-H", "unix://" + self.sock, "--data-root", str(self.data_root),
                "--exec-root", str(self.exec_root), "--config-dir", str(self.config_dir),
                "--group", "root", "--cgroup-parent", self.cgroup_parent,
                "--loopback-registries-only", "--no-dns-forward", *self.extra_args]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berthd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.api("GET", "/_ping", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"berthd did not answer /_ping in {START_TIMEOUT}s:\n{self.log()}")
            time.sleep(0.05)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            stop(self.proc, STOP_TIMEOUT)

    # -- clients ----------------------------------------------------------

    def connect(self, timeout=60):
        """An http.client connection to the daemon's socket."""
        return UnixHTTPConnection(self.sock, timeout=timeout)

    def api(self, method, path, body=None, headers=None, timeout=120):
        """Raw HTTP/1.1 -> (status, headers dict, body bytes). body: bytes,
        a file object (sent chunked), or anything else as JSON."""
        conn = UnixHTTPConnection(self.sock, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, (bytes, bytearray)) \
                    and not hasattr(body, "read"):
                body = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            if hasattr(body, "read"):
                conn.request(method, path, body=body, headers=hdrs, encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, body=None, expect=None, **kw):
        status, _, data = self.api(method, path, body, **kw)
        ok = (status == expect) if expect else 200 <= status < 300
        assert ok, f"{method} {path} -> {status}: {data[:2000]!r}"
        return json.loads(data) if data.strip() else None

    def docker(self, *args, input=None, timeout=180, check=False):
        r = subprocess.run([DOCKER, *map(str, args)], env=self.env, capture_output=True,
                           text=not isinstance(input, bytes), input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(map(str, args))} -> {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}\nberthd log:\n{self.log()}")
        return r

    def load(self, name):
        """Load a fixture image (alpine-3.20, alpine-3.10, busybox-1.38) over the API."""
        with open(IMAGES / f"{name}.tar", "rb") as f:
            status, _, data = self.api("POST", "/images/load?quiet=1", f,
                                       {"Content-Type": "application/x-tar"})
        assert status == 200 and b'"error"' not in data, data
        return data

    def events(self, since=0):
        """Every event berthd recorded since `since` (unix seconds), up to now."""
        now = time.time() + 0.5
        status, _, data = self.api("GET", f"/events?since={since}&until={now:.3f}", timeout=30)
        assert status == 200, data
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def restart(self):
        self.stop()
        if self._log:
            self._log.close()
        return self.start()

    # -- teardown ---------------------------------------------------------

    def remove_containers(self):
        try:
            status, _, data = self.api("GET", "/containers/json?all=1", timeout=30)
            items = json.loads(data) if status == 200 else []
        except (OSError, ValueError):
            return
        for c in items if isinstance(items, list) else []:
            try:
                self.api("DELETE", f"/containers/{c['Id']}?force=1&v=1", timeout=60)
            except (OSError, KeyError, TypeError):
                pass


def _mounts_under(root):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ").replace("\\011", "\t") \
                .replace("\\012", "\n").replace("\\134", "\\")
            if mp == root or mp.startswith(root + "/"):
                out.append(mp)
    return out


def unmount_all(root):
    for _ in range(3):
        mps = _mounts_under(root)
        if not mps:
            return
        for mp in sorted(set(mps), key=len, reverse=True):
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)


def remove_cgroup_parent(parent):
    from runtime.cgroup_cleanup import remove_cgroups
    dirs = [os.path.join(CGROUP_ROOT, h, parent.lstrip("/")) for h in os.listdir(CGROUP_ROOT)]
    remove_cgroups([d for d in dirs if os.path.isdir(d)])


CGROUP_ROOT = "/sys/fs/cgroup"


@contextlib.contextmanager
def private_berthd(before_start=None):
    """A started berthd on a temp dir; on exit its containers, daemon,
    mounts, cgroup parent and dir are gone, also after a failure.
    before_start(daemon) may prepare the dir (e.g. mount a small tmpfs)."""
    if not os.access(BERTHD, os.X_OK):
        pytest.skip(f"{BERTHD} is missing: run make build")
    tmp = os.path.realpath(tempfile.mkdtemp(prefix="berthd-test-"))
    d = Daemon(tmp)

    def stop():
        d.stop()
        if d._log:
            d._log.close()
    try:
        if before_start:
            before_start(d)
        d.start()
        yield d
    finally:
        _end(d, d.proc, stop, tmp)


def _end(client, proc, stop, tmp):
    """After a private daemon: its containers, the daemon, mounts left under
    tmp, its cgroup parent and tmp go, also after a failure."""
    try:
        if proc is not None and proc.poll() is None:
            client.remove_containers()
    finally:
        stop()
        unmount_all(tmp)
        remove_cgroup_parent(client.cgroup_parent)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def private_dockerd():
    """The peer: Debian's dockerd on a temp dir, in a network namespace of its
    own with only loopback (no pull leaves the machine, its bridge collides
    with nothing), behind the same client methods as berthd's Daemon. Skips
    when dockerd is not installed; on exit its containers, daemon, mounts,
    cgroup parent and dir are gone."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed (docker.io comes with make deps)")
    sys.path.insert(0, str(REPO / "bench"))
    from image_load import Dockerd
    tmp = os.path.realpath(tempfile.mkdtemp(prefix="dockerd-peer-"))
    peer = Daemon(tmp)
    d = Dockerd(Path(tmp) / "dockerd", netns=True, extra_args=["--cgroup-parent", peer.cgroup_parent])
    peer.sock = str(d.sock)
    peer.env["DOCKER_HOST"] = "unix://" + peer.sock
    peer.log = lambda: d.log_tail(20)
    try:
        d.start(timeout=120)
        yield peer
    finally:
        _end(peer, d.proc, d.stop, tmp)
