"""A dockerd of the test's own, the oracle berthd is compared with.

It runs in a network namespace of its own that has only loopback, so its
default bridge, the bridges of compose projects and its iptables rules
exist there and nowhere else, and nothing it does can reach another
address. Data root, exec root, pid file, key and CLI config live in a temp
dir; containers' cgroups go under a parent named for the test. stop()
stops dockerd by its PID (it stops its containers and its containerd),
then removes what is left: mounts under the temp dir, the cgroup parent,
the directories dockerd always makes under /run when they were not there
before, and the temp dir. The namespace ends with its last process.

    with dockerd_oracle.running() as d:
        d.docker("load", "-i", path)     # CompletedProcess (text), as berthd.docker

or, as a module's fixture: `from dockerd_oracle import oracle`.
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

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from image_load import _kill_pid, _unmount_under  # noqa: E402  (the bench's dockerd helpers)

DOCKERD = shutil.which("dockerd")
DOCKER = shutil.which("docker")
START_TIMEOUT = 90
# made by dockerd and its containerd whatever --exec-root says
RUN_DIRS = ("/run/docker", "/run/containerd")


class Oracle:
    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.sock = str(self.tmp / "docker.sock")
        self.cgroup_parent = "/berth-test-oracle-" + self.tmp.name[-8:]
        self.env = dict(os.environ, DOCKER_HOST="unix://" + self.sock,
                        DOCKER_CONFIG=str(self.tmp / "cli"))
        for k in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            self.env.pop(k, None)
        self.proc = None
        self.made_run_dirs = [d for d in RUN_DIRS if not os.path.exists(d)]

    def start(self):
        for d in ("data", "exec", "cli"):
            (self.tmp / d).mkdir(parents=True, exist_ok=True)
        conf = self.tmp / "daemon.json"
        conf.write_text(json.dumps({"deprecated-key-path": str(self.tmp / "key.json"),
                                    "cgroup-parent": self.cgroup_parent}))
        dockerd = " ".join([DOCKERD, "--config-file", str(conf), "--data-root",
                            str(self.tmp / "data"), "--exec-root", str(self.tmp / "exec"),
                            "--pidfile", str(self.tmp / "docker.pid"), "-H", "unix://" + self.sock])
        argv = ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {dockerd}"]
        with open(self.tmp / "dockerd.log", "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while self.proc.poll() is None and time.monotonic() < deadline:
            if os.path.exists(self.sock) and self.docker("version").returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not answer in {START_TIMEOUT}s: {self.log()}")

    def log(self):
        try:
            return (self.tmp / "dockerd.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def docker(self, *args, input=None, timeout=180, check=False):
        r = subprocess.run([DOCKER, *map(str, args)], env=self.env, capture_output=True,
                           text=not isinstance(input, bytes), input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"dockerd: docker {' '.join(map(str, args))} -> "
                                 f"{r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def api(self, method, path, body=None, timeout=60):
        """-> (status, parsed JSON or raw bytes), as berthd.api over the socket."""
        conn = http.client.HTTPConnection("localhost", timeout=timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.sock)
        conn.sock = sock
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw) if raw.strip() else None
            except ValueError:
                return resp.status, raw
        finally:
            conn.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", timeout=60).stdout.split()
            if ids:
                self.docker("rm", "-f", "-v", *ids, timeout=120)
            ctr = None
            try:
                ctr = int((self.tmp / "exec" / "containerd" / "containerd.pid").read_text())
            except (OSError, ValueError):
                pass
            stop(self.proc, 30)
            if ctr:
                _kill_pid(ctr, "containerd")
        _unmount_under(self.tmp)
        from runtime.cgroup_cleanup import remove_cgroups
        root = "/sys/fs/cgroup"
        remove_cgroups([d for d in (os.path.join(root, h, self.cgroup_parent.lstrip("/"))
                                    for h in os.listdir(root)) if os.path.isdir(d)])
        for top in self.made_run_dirs:
            # empty directories only, deepest first: another dockerd may have
            # started meanwhile and have its files there
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def running(images=("alpine-3.20",)):
    """A started dockerd with the fixture images loaded; skips when dockerd
    or the docker CLI is not installed."""
    if DOCKERD is None or DOCKER is None:
        pytest.skip("dockerd and the docker CLI come with make deps (docker.io)")
    from shared_dir import FIXTURES
    d = Oracle(tempfile.mkdtemp(prefix="berth-oracle-"))
    try:
        try:
            d.start()
        except RuntimeError as e:
            pytest.fail(str(e))
        for name in images:
            d.docker("load", "-q", "-i", str(FIXTURES / "images" / f"{name}.tar"), check=True)
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def oracle():
    """A dockerd for a test module; `from dockerd_oracle import oracle`."""
    with running() as d:
        yield d
