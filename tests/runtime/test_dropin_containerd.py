"""berth-runtime under containerd, the way a Kubernetes RuntimeClass uses
it: the runc shim with BinaryName pointing at berth-runtime (`ctr run
--runc-binary`). containerd is the test's own: root, state and socket in a
temp dir, the CRI plugin off, host networking untouched (no CNI)."""
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from procutil import stop
from shared_dir import FIXTURES

REPO = Path(__file__).resolve().parents[2]
BERTH = str(REPO / "bin" / "berth-runtime")
IMAGE = "docker.io/library/busybox:latest"
STATUS = "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; id"

pytestmark = pytest.mark.skipif(shutil.which("containerd") is None or shutil.which("ctr") is None,
                                reason="containerd comes with make deps (docker.io)")


@pytest.fixture(scope="module")
def ctr(tmp_path_factory):
    work = tmp_path_factory.mktemp("containerd")
    sock = work / "containerd.sock"
    (work / "config.toml").write_text(
        f'version = 2\nroot = "{work}/root"\nstate = "{work}/state"\n'
        f'[grpc]\n  address = "{sock}"\n'
        '[plugins."io.containerd.grpc.v1.cri"]\n  disable = true\n')
    # containerd keeps fifos, shim sockets and runc state under /run/containerd
    # whatever its config says; remove it afterwards if it is ours
    had_run_dir = Path("/run/containerd").exists()
    log = open(work / "log", "wb")
    proc = subprocess.Popen(["containerd", "--config", str(work / "config.toml")],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)

    def run(*args, check=False):
        return subprocess.run(["ctr", "-a", str(sock), *args], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, check=check)

    try:
        deadline = time.monotonic() + 20
        while run("version").returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"containerd did not start: {(work / 'log').read_text()[-500:]}")
            time.sleep(0.1)
        run("images", "import", str(FIXTURES / "images" / "busybox-1.38.tar"), check=True)
        yield run
    finally:
        for task in ("bg",):
            run("task", "kill", "-s", "KILL", task)
            time.sleep(0.2)
            run("task", "delete", task)
            run("container", "delete", task)
        stop(proc, 20)
        log.close()
        with open("/proc/self/mountinfo") as f:
            stale = [line.split()[4] for line in f if str(work) in line.split()[4]]
        for mp in sorted(stale, key=len, reverse=True):
            subprocess.run(["umount", "-l", mp])
        if not had_run_dir:
            shutil.rmtree("/run/containerd", ignore_errors=True)


def test_ctr_run_gives_what_runc_gives(ctr):
    ours = ctr("run", "--rm", "--runc-binary", BERTH, IMAGE, "c-berth", "sh", "-c", STATUS)
    theirs = ctr("run", "--rm", IMAGE, "c-runc", "sh", "-c", STATUS)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout


def test_detached_task_exec_and_kill(ctr):
    assert ctr("run", "-d", "--runc-binary", BERTH, IMAGE, "bg", "sleep", "60").returncode == 0
    r = ctr("task", "exec", "--exec-id", "e1", "bg", "sh", "-c", "echo in; cat /proc/1/cmdline")
    assert (r.returncode, r.stdout) == (0, "in\nsleep\x0060\x00"), r.stderr
    assert ctr("task", "kill", "-s", "KILL", "bg").returncode == 0
    deadline = time.monotonic() + 10
    while "STOPPED" not in ctr("task", "ls").stdout:
        assert time.monotonic() < deadline, "task did not stop"
        time.sleep(0.1)
    assert ctr("task", "delete", "bg").returncode == 0
    assert ctr("container", "delete", "bg").returncode == 0
