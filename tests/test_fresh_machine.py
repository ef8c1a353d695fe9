"""The suite's first run on a fresh machine: the tests that make host paths
Debian's tools create on first use (an `ip netns add`, a mount(8), skopeo's
and podman's blob cache, a dockerd, a containerd) run, with the leftovers
check, in a private mount namespace where those paths do not exist yet
(tests/fresh_machine.py), so the host is not touched. The inner leftovers
check must name none of them: what the suite needs is made before its
snapshot (scripts/host-paths.sh, as `make deps` does), what a test makes is
removed by that test."""
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HIDDEN = ("/run/netns", "/run/mount", "/run/docker", "/run/containerd",
          "/var/lib/containers", "/etc/docker")
# one test per creator, to keep the run short
RELEVANT = (
    "tests/api/test_network_traffic.py::test_internal_network_has_no_egress",  # ip netns add
    "tests/runtime/test_dropin_podman.py::test_exit_code_propagates",  # podman load, mount(8)
    "tests/engine/test_oci_tools.py::test_what_skopeo_copies_imports_with_the_same_id",
    "tests/engine/test_docker_reads_our_save.py",  # dockerd and its containerd
    "tests/test_zz_leftovers.py",
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces)")


def _names_hidden_path(line):
    return any(p == w or w.startswith(p + "/") for w in line.split() for p in HIDDEN)


def test_first_run_on_a_fresh_machine_leaves_nothing_behind():
    base = tempfile.mkdtemp(prefix="fresh-run-")
    junit = os.path.join(base, "inner.xml")
    hide = [a for p in HIDDEN for a in ("--hide", p)]
    try:
        r = subprocess.run(
            [sys.executable, str(REPO / "tests" / "fresh_machine.py"), *hide, "--",
             sys.executable, "-m", "pytest", "-q", f"--basetemp={base}/t",
             f"--junitxml={junit}", *RELEVANT],
            cwd=REPO, capture_output=True, text=True, timeout=1800)
        assert os.path.exists(junit), r.stdout[-2000:] + r.stderr[-2000:]
        failed = {}
        for case in ET.parse(junit).getroot().iter("testcase"):
            for bad in list(case.findall("failure")) + list(case.findall("error")):
                failed[f"{case.get('classname')}::{case.get('name')}"] = (
                    bad.get("message", "") + "\n" + (bad.text or ""))
        leftovers = failed.pop("tests.test_zz_leftovers::test_session_left_nothing_behind", "")
        assert not failed, f"failed in the fresh namespace: {failed}"
        # other sessions on this machine may add their own entries to the
        # inner report; the paths of a fresh machine are this test's subject
        fresh = [ln.strip() for ln in leftovers.splitlines() if _names_hidden_path(ln)]
        assert not fresh, "a first run leaves: " + "; ".join(fresh)
    finally:
        shutil.rmtree(base, ignore_errors=True)
