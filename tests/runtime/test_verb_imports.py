"""The modules each exec'd berth-runtime verb loads, on a real container.

containerd, Podman and Kubernetes exec the runtime once per verb; every
module a verb imports is paid on each call (~0.1-0.4 ms here), so `state`,
`start`, `kill` and `delete` are held to exactly the modules they use: a new
import on their path fails this test until it is justified here."""
import os
import subprocess
import time
from pathlib import Path

import pytest

import bundle as bundles

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "bin" / "berth-runtime"

# every verb: the command line, the container's state record, the OCI JSON
COMMON = {"berth", "berth.cli", "berth.cli.runtime", "berth.errors", "berth.oci",
          "berth.oci.jsonio", "berth.runtime", "berth.runtime.container",
          "berth.runtime.context", "berth.runtime.verbs", "berth.sys", "berth.sys.procfs"}
# a running container's status asks its cgroup whether it is frozen; the
# controllers (limits) and the mount discovery stay out
CGROUP = {"berth.runtime.cgroups", "berth.runtime.cgroups.manager",
          "berth.runtime.cgroups.fs", "berth.runtime.cgroups.v1", "berth.runtime.cgroups.v2"}
EXPECTED = {
    "state": COMMON | CGROUP | {"berth.runtime.verbs.state"},
    "start": COMMON | {"berth.runtime.verbs.start"},
    "kill": COMMON | CGROUP | {"berth.runtime.verbs.kill"},
    "delete": COMMON | CGROUP | {"berth.runtime.verbs.delete", "berth.runtime.teardown"},
}
# beyond what the bare interpreter (-IS) has loaded: os and what it brings,
# the JSON accelerator, poll() for start's wait on the exec fifo, and errno
# (built into the interpreter: no file is read) for jsonio's ENOSPC message
STDLIB = {"os", "os.path", "posixpath", "genericpath", "stat", "_stat", "_collections_abc",
          "_json", "select", "errno"}

PROBE = """import sys
sys.path.insert(0, {src!r})
from berth.cli.runtime import _main
code = _main(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write("\\n".join(sorted(sys.modules)))
sys.exit(code)
"""


def interpreter():
    """The launcher's own python and flags, so the probe loads what it does."""
    line = LAUNCHER.read_text().splitlines()[0]
    return line[2:].split()


@pytest.fixture
def probe(tmp_path):
    if not LAUNCHER.exists():
        pytest.fail(f"{LAUNCHER} is missing: run make build")
    script = tmp_path / "probe.py"
    script.write_text(PROBE.format(src=str(REPO / "src")))
    root = tmp_path / "root"
    bare = subprocess.run([*interpreter(), "-c", "import sys; print(' '.join(sys.modules))"],
                          capture_output=True, text=True, check=True).stdout.split()
    ran = []

    def run(*args):
        out = tmp_path / f"modules-{len(ran)}"
        ran.append(args)
        r = subprocess.run([*interpreter(), str(script), str(out), "--root", str(root), *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{args}: {r.stderr}"
        return set(out.read_text().split()) - set(bare)
    run.cid = None
    yield run
    if run.cid:
        subprocess.run([str(LAUNCHER), "--root", str(root), "delete", "-f", run.cid],
                       capture_output=True, timeout=60)


def test_each_verb_loads_only_what_it_uses(probe, tmp_path, session_token):
    cid = probe.cid = f"berth-test-{session_token}-imports"
    b = bundles.make_busybox_bundle(tmp_path / "bundle", args=["sleep", "100"],
                                    changes={"linux.cgroupsPath": "/" + cid})
    subprocess.run([str(LAUNCHER), "--root", str(tmp_path / "root"), "create", "--bundle",
                    str(b), cid], check=True, timeout=60)
    got = {"start": probe("start", cid), "state": probe("state", cid),
           "kill": probe("kill", cid, "KILL")}
    deadline = time.monotonic() + 10
    while b'"stopped"' not in subprocess.run(
            [str(LAUNCHER), "--root", str(tmp_path / "root"), "state", cid],
            capture_output=True).stdout:
        assert time.monotonic() < deadline, "the container did not stop after SIGKILL"
        time.sleep(0.05)
    got["delete"] = probe("delete", cid)
    for verb, mods in got.items():
        ours = {m for m in mods if m == "berth" or m.startswith("berth.")}
        assert ours == EXPECTED[verb], (
            f"{verb}: new {sorted(ours - EXPECTED[verb])}, gone {sorted(EXPECTED[verb] - ours)}")
        assert mods - ours <= STDLIB, f"{verb}: stdlib beyond the expected: " \
                                      f"{sorted(mods - ours - STDLIB)}"
