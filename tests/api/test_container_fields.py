"""Fields of a create that must work as on dockerd, or be refused by name,
never ignored: driven with the real docker CLI against berthd."""
import os
import time

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")


def wait_health(d, name, want, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = d.json("GET", f"/containers/{name}/json")["State"].get("Health") or {}
        if h.get("Status") == want:
            return h
        time.sleep(0.3)
    raise AssertionError(f"{name} never became {want}: {h}")


def test_the_images_healthcheck_runs_and_the_request_can_tune_it(berthd, tmp_path):
    berthd.load("alpine-3.20")
    (tmp_path / "Dockerfile").write_text(
        "FROM alpine\nHEALTHCHECK --interval=300ms --retries=1 CMD test -e /tmp/ok\n")
    berthd.docker("build", "-q", "-t", "hc:1", str(tmp_path), check=True)
    berthd.docker("run", "-d", "--name", "hc1", "hc:1", "sh", "-c",
                  "touch /tmp/ok; sleep 600", check=True)
    # only the timeout given: the test and interval still come from the image
    berthd.docker("run", "-d", "--name", "hc2", "--health-timeout", "50ms", "hc:1",
                  "sleep", "600", check=True)
    try:
        wait_health(berthd, "hc1", "healthy")
        h = wait_health(berthd, "hc2", "unhealthy")
        cfg = berthd.json("GET", "/containers/hc2/json")["Config"]["Healthcheck"]
        assert cfg["Test"] == ["CMD-SHELL", "test -e /tmp/ok"] and cfg["Timeout"] == 50_000_000
        assert h["Log"][-1]["ExitCode"] == 1, h
    finally:
        berthd.docker("rm", "-f", "hc1", "hc2")


def test_health_timeout_is_reported_as_go_prints_it(berthd):
    berthd.load("alpine-3.20")
    berthd.docker("run", "-d", "--name", "hct", "--health-cmd", "sleep 5",
                  "--health-interval", "300ms", "--health-timeout", "50ms",
                  "--health-retries", "1", "alpine", "sleep", "600", check=True)
    try:
        h = wait_health(berthd, "hct", "unhealthy")
        assert h["Log"][-1]["Output"] == "Health check exceeded timeout (50ms)", h
        assert h["Log"][-1]["ExitCode"] == -1
    finally:
        berthd.docker("rm", "-f", "hct")
