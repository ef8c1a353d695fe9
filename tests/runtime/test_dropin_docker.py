"""berth-runtime as a runtime of the real Docker engine (Debian's docker.io):
dockerd --add-runtime berth=..., then `docker run --runtime berth`. dockerd
drives it through containerd's runc shim, with Docker's own config.json,
console socket and exec process files. The daemon is the test's own: temp
dirs, no bridge, no iptables, no IP forwarding."""
import shutil
import sys
from pathlib import Path

import pytest

from shared_dir import FIXTURES

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from image_load import Dockerd  # noqa: E402  (the bench's isolated dockerd)

pytestmark = pytest.mark.skipif(shutil.which("dockerd") is None,
                                reason="dockerd comes with make deps (docker.io)")
STATUS = "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status"


@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    d = Dockerd(tmp_path_factory.mktemp("dockerd"),
                extra_args=["--add-runtime", f"berth={REPO / 'bin' / 'berth-runtime'}"])
    try:
        d.start()
    except RuntimeError as e:
        d.stop()
        pytest.fail(f"dockerd did not start: {e}")
    r = d.docker("load", "-i", str(FIXTURES / "images" / "busybox-1.38.tar"))
    assert r.returncode == 0, r.stderr
    yield d.docker
    d.docker("rm", "-f", "bg")
    d.stop()


def run(docker, runtime, *args):
    return docker("run", "--rm", "--runtime", runtime, "--network", "none", "busybox:latest", *args)


def test_docker_run_gives_what_runc_gives(docker):
    ours = run(docker, "berth", "sh", "-c", STATUS + "; id; exit 3")
    theirs = run(docker, "runc", "sh", "-c", STATUS + "; id; exit 3")
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), ours.stderr
    assert ours.returncode == 3 and "Seccomp:\t2" in ours.stdout


def test_detached_exec_stop_rm(docker):
    r = docker("run", "-d", "--runtime", "berth", "--network", "none", "--name", "bg",
               "busybox:latest", "sleep", "60")
    assert r.returncode == 0, r.stderr
    r = docker("exec", "bg", "sh", "-c", "echo in; cat /proc/1/cmdline | tr '\\0' ' '")
    assert (r.returncode, r.stdout) == (0, "in\nsleep 60 "), r.stderr
    assert docker("stop", "-t", "1", "bg").returncode == 0
    assert docker("rm", "bg").returncode == 0


def test_tty_through_the_console_socket(docker):
    # -t makes containerd's shim hand berth a console socket
    r = docker("run", "--rm", "-t", "--runtime", "berth", "--network", "none",
               "busybox:latest", "tty")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "/dev/pts/0"
