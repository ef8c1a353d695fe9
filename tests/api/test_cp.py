"""docker cp into and out of volumes, binds and tmpfs, of running and of
stopped containers, with the real docker CLI; the same steps run against a
dockerd of the test's own and what the user sees must be the same, except
where dockerd loses data silently: a copy into the tmpfs of a stopped
container (berth refuses it by name) and into the tmpfs of a running one
(dockerd writes under the mount, where nobody sees it)."""
import os
import subprocess

import pytest


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")


def _err(r):
    return (r.returncode, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "")


def scenario(docker, work):
    """The same docker commands on either daemon -> what the user saw."""
    seen = {}
    src = work / "f.txt"
    src.write_text("hello\n")
    bind = work / "bind"
    bind.mkdir()
    docker("volume", "create", "cpvol", check=True)
    docker("volume", "create", "rovol", check=True)
    try:
        docker("run", "-d", "--name", "cp1", "-v", "cpvol:/vol", "-v", f"{bind}:/bnd",
               "-v", "rovol:/ro:ro", "--tmpfs", "/tmpf", "alpine", "sleep", "600", check=True)
        for p in ("/vol", "/bnd", "/tmpf"):
            seen[f"run cp {p}"] = docker("cp", src, f"cp1:{p}/run.txt").returncode
            seen[f"run cat {p}"] = docker("exec", "cp1", "cat", f"{p}/run.txt").stdout
        seen["run cp ro"] = _err(docker("cp", src, "cp1:/ro/"))
        seen["run cp missing"] = _err(docker("cp", "cp1:/vol/nosuch", str(work / "out")))
        seen["run list /"] = sorted(n for n in docker("exec", "cp1", "find", "/vol", "/bnd")
                                    .stdout.split())
        docker("stop", "-t", "0", "cp1", check=True)
        for p in ("/vol", "/bnd"):
            seen[f"stopped cp {p}"] = docker("cp", src, f"cp1:{p}/stopped.txt").returncode
            r = docker("cp", f"cp1:{p}/run.txt", "-")
            seen[f"stopped cp out {p}"] = (r.returncode, "hello" in r.stdout)
        seen["stopped cp ro"] = _err(docker("cp", src, "cp1:/ro/"))
        out = work / "out"
        docker("cp", "cp1:/vol", str(out), check=True)
        seen["stopped cp dir out"] = sorted(os.listdir(out))
        seen["stopped tmpfs"] = _err(docker("cp", src, "cp1:/tmpf/"))
        docker("start", "cp1", check=True)
        seen["after start"] = docker("exec", "cp1", "sh", "-c",
                                     "cat /vol/stopped.txt /bnd/stopped.txt; ls /tmpf").stdout
        seen["on host"] = sorted(os.listdir(bind))
    finally:
        docker("rm", "-f", "-v", "cp1")
        docker("volume", "rm", "cpvol", "rovol")
    return seen


def test_cp_through_volumes_binds_and_tmpfs_as_dockerd(berthd, dockerd, tmp_path):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    (tmp_path / "b").mkdir()
    (tmp_path / "d").mkdir()
    ours = scenario(berthd.docker, tmp_path / "b")
    theirs = scenario(dockerd.docker, tmp_path / "d")
    # dockerd writes the running tmpfs copy under the mount: lost
    assert theirs.pop("run cat /tmpf") == "" and ours.pop("run cat /tmpf") == "hello\n"
    # and a copy into a stopped container's tmpfs is lost at start; berth refuses it
    assert theirs.pop("stopped tmpfs") == (0, "")
    code, msg = ours.pop("stopped tmpfs")
    assert code == 1 and "/tmpf is a tmpfs mount of container cp1, which is not running" in msg
    assert ours == theirs
    assert ours["run cat /vol"] == "hello\n" and ours["after start"] == "hello\nhello\n"
    assert ours["stopped cp ro"] == (1, "Error response from daemon: mounted volume is "
                                        "marked read-only")
    assert ours["run cp missing"][1].endswith("Could not find the file /vol/nosuch in "
                                              "container cp1")


def test_cp_of_a_created_container_makes_its_mountpoints(berthd, tmp_path):
    """A container never started has no mountpoints in its rootfs yet: the
    copy makes them, and the file is in the volume when it starts."""
    berthd.load("alpine-3.20")
    (tmp_path / "f.txt").write_text("early\n")
    berthd.docker("create", "--name", "c0", "-v", "newvol:/deep/inside/vol", "alpine",
                  "cat", "/deep/inside/vol/f.txt", check=True)
    try:
        berthd.docker("cp", tmp_path / "f.txt", "c0:/deep/inside/vol/", check=True)
        r = berthd.docker("start", "-a", "c0")
        assert (r.returncode, r.stdout) == (0, "early\n"), r.stderr
        mp = berthd.json("GET", "/volumes/newvol")["Mountpoint"]
        assert os.listdir(mp) == ["f.txt"]
    finally:
        berthd.docker("rm", "-f", "-v", "c0")
        berthd.docker("volume", "rm", "newvol")
    # the copy's detached mounts are gone with it: nothing under the daemon's dir
    with open("/proc/self/mountinfo") as f:
        assert str(berthd.tmp) + "/lib/volumes" not in f.read()


def test_cp_of_the_root_skips_proc_and_names_members_as_dockerd(berthd, dockerd):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    names = {}
    for who, docker in (("berth", berthd.docker), ("docker", dockerd.docker)):
        docker("run", "-d", "--name", "root1", "alpine", "sleep", "600", check=True)
        try:
            tars = {}
            for path in ("/", "/etc/.", "/etc/hostname"):
                r = subprocess.run(["tar", "t"], input=docker("cp", f"root1:{path}", "-",
                                                              input=b"").stdout,
                                   capture_output=True)
                tars[path] = r.stdout.decode().split()
            names[who] = tars
        finally:
            docker("rm", "-f", "root1")
    for who in names:
        root = names[who]["/"]
        assert "/proc/" in root and not any(n.startswith("/proc/1") for n in root), who
        assert names[who]["/etc/."][0] == "./" and names[who]["/etc/hostname"] == ["hostname"]
    assert {n for n in names["berth"]["/"] if n.startswith("/etc/")} == \
        {n for n in names["docker"]["/"] if n.startswith("/etc/")}
