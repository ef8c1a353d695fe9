"""`kill` as containerd's runc shim depends on it, berth-runtime beside
runc on the same bundle: the shim takes an error containing "container not
running" (or "does not exist") as NotFound, and sends `kill --all` when
the init of a container sharing a pid namespace has exited. Anything else
and it never handles the exit (tests/cri/test_pods.py shows the effect)."""
import subprocess
import time

import pytest

from node import BERTH
from runtime.bundle import make_busybox_bundle

RUNTIMES = {"runc": "runc", "berth": str(BERTH)}


@pytest.fixture
def bundle(tmp_path):
    return make_busybox_bundle(tmp_path / "bundle", args=["sleep", "1000"])


def outcomes(binary, root, bundle, session_token):
    cid = f"berth-test-{session_token}-kill"

    def rt(*args):
        # files, not pipes: a detached container keeps its stdio open
        with open(root.parent / "out", "w+") as out:
            r = subprocess.run([binary, "--root", str(root), *args], stdout=subprocess.DEVNULL,
                               stderr=out, timeout=60, stdin=subprocess.DEVNULL)
            out.seek(0)
            err = out.read()
        said = next((p for p in ("container not running", "does not exist") if p in err), err)
        return r.returncode, said

    def status():
        out = subprocess.run([binary, "--root", str(root), "state", cid], capture_output=True,
                             text=True, timeout=60).stdout
        return next((s for s in ("running", "paused", "stopped", "created") if f'"{s}"' in out),
                    out)

    def wait_for(want):
        deadline = time.monotonic() + 20
        while status() != want and time.monotonic() < deadline:
            time.sleep(0.05)
        return status()

    seen = {}
    try:
        assert rt("run", "-d", "--bundle", str(bundle), cid)[0] == 0
        rt("pause", cid)
        seen["paused"] = wait_for("paused")
        # a frozen init only dies once thawed: SIGKILL must do that
        seen["kill KILL paused"] = rt("kill", cid, "KILL")
        seen["after"] = wait_for("stopped")
        seen["kill stopped"] = rt("kill", cid, "KILL")
        seen["kill --all stopped"] = rt("kill", "--all", cid, "KILL")
        seen["kill -a stopped, TERM"] = rt("kill", "-a", cid)
        seen["kill missing"] = rt("kill", cid + "-missing", "KILL")
    finally:
        rt("delete", "--force", cid)
    return seen


def test_kill_of_exited_and_paused_containers(tmp_path, bundle, session_token):
    got = {name: outcomes(binary, tmp_path / f"root-{name}", bundle, session_token)
           for name, binary in RUNTIMES.items()}
    assert got["berth"] == got["runc"]
    assert got["runc"] == {
        "paused": "paused", "kill KILL paused": (0, ""), "after": "stopped",
        "kill stopped": (1, "container not running"), "kill --all stopped": (0, ""),
        "kill -a stopped, TERM": (0, ""), "kill missing": (1, "does not exist")}
