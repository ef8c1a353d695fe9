"""--ipc none|private|shareable|container:X|host and the namespaces a
container joins, as on a dockerd of the test's own: the same docker
commands on both daemons, the same answers."""
import os
import re
import time

import pytest


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")


def _last(r):
    """The daemon's error as the CLI prints it, with the ids taken out."""
    text = [ln for ln in (r.stdout + r.stderr).splitlines() if "Error response" in ln]
    return (r.returncode, re.sub(r"[0-9a-f]{64}", "ID", text[-1] if text else ""))


def scenario(docker):
    seen = {}
    run = ("run", "--rm")
    seen["none"] = docker(*run, "--ipc", "none", "alpine", "sh", "-c",
                          "test -e /dev/shm && echo shm; test -d /dev/mqueue && echo mq").stdout
    docker("create", "--name", "priv", "alpine", "sleep", "600", check=True)
    docker("run", "-d", "--name", "donor", "--ipc", "shareable", "alpine", "sh", "-c",
           "echo from-donor > /dev/shm/x; sleep 600", check=True)
    try:
        seen["stopped donor"] = _last(docker(*run, "--ipc", "container:priv", "alpine", "true"))
        docker("start", "priv", check=True)
        seen["private donor"] = _last(docker(*run, "--ipc", "container:priv", "alpine", "true"))
        donor_ns = docker("exec", "donor", "readlink", "/proc/self/ns/ipc").stdout
        r = docker(*run, "--ipc", "container:donor", "alpine", "sh", "-c",
                   "cat /dev/shm/x; readlink /proc/self/ns/ipc")
        seen["joined"] = (r.returncode, r.stdout == "from-donor\n" + donor_ns, r.stderr)
        seen["mode"] = docker("inspect", "-f", "{{.HostConfig.IpcMode}}", "priv", "donor").stdout
        # a joiner created now and started after the donor's restart joins
        # the donor as it is then, not the process it was at create
        docker("create", "--name", "late", "--ipc", "container:donor", "alpine", "sh", "-c",
               "ls /dev/shm; readlink /proc/self/ns/ipc", check=True)
        docker("restart", "-t", "0", "donor", check=True)
        donor_ns = docker("exec", "donor", "readlink", "/proc/self/ns/ipc").stdout
        r = docker("start", "-a", "late")
        seen["after restart"] = (r.returncode, r.stdout == "x\n" + donor_ns, r.stderr)
    finally:
        docker("rm", "-f", "priv", "donor", "late")
    return seen


def test_ipc_modes_as_dockerd(berthd, dockerd):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    ours, theirs = scenario(berthd.docker), scenario(dockerd.docker)
    assert ours == theirs
    assert ours["none"] == "mq\n" and ours["joined"][:2] == (0, True)
    assert ours["after restart"][:2] == (0, True)
    assert "non-shareable IPC" in ours["private donor"][1]


def test_shareable_shm_is_unmounted_when_the_donor_stops(berthd):
    berthd.load("alpine-3.20")
    berthd.docker("run", "-d", "--name", "sh1", "--ipc", "shareable", "alpine", "sleep", "600",
                  check=True)
    cid = berthd.json("GET", "/containers/sh1/json")["Id"]
    shm = str(berthd.data_root / "containers" / cid / "shm")
    try:
        assert os.path.ismount(shm)
        berthd.docker("stop", "-t", "0", "sh1", check=True)
        for _ in range(100):
            if not os.path.ismount(shm):
                break
            time.sleep(0.1)
        assert not os.path.ismount(shm)
    finally:
        berthd.docker("rm", "-f", "sh1")
