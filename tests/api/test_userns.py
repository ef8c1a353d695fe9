"""User namespaces: --userns-remap auto gives every container a uid/gid
range of its own (image layers shared through idmapped mounts, nothing
copied or chowned); --userns host opts out; the per-container API mode
"auto" works on a daemon without remapping."""
import json
import os
import shutil

import pytest

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def uid_map(d, name):
    return ok(d.docker("exec", name, "cat", "/proc/self/uid_map")).split()


def test_each_container_gets_its_own_range(berthd):
    # a remapped root must walk to the data root; berthd changes nothing above it
    os.chmod(berthd.tmp, 0o711)
    berthd.extra_args = ["--userns-remap", "auto"]
    berthd.restart()
    berthd.load("alpine-3.20")
    for n in ("u1", "u2"):
        ok(berthd.docker("run", "-d", "--network", "none", "--name", n, "alpine", "sleep", "100"))
    m1, m2 = uid_map(berthd, "u1"), uid_map(berthd, "u2")
    assert m1[0] == "0" and m2[0] == "0" and m1[2] == m2[2] == "65536"
    assert m1[1] != m2[1] and int(m1[1]) > 0 and int(m2[1]) > 0
    # root inside is an ordinary uid outside; the image looks root-owned inside
    pid = json.loads(ok(berthd.docker("inspect", "u1")))[0]["State"]["Pid"]
    assert os.stat(f"/proc/{pid}").st_uid == int(m1[1])
    assert ok(berthd.docker("exec", "u1", "stat", "-c", "%u", "/etc/passwd")).strip() == "0"
    ok(berthd.docker("exec", "u1", "touch", "/etc/written"))
    # a volume made for the container belongs to its root
    ok(berthd.docker("run", "--rm", "--network", "none", "-v", "vol:/data", "alpine",
                     "touch", "/data/f"))
    # opting out gives the host's ids back
    out = ok(berthd.docker("run", "--rm", "--network", "none", "--userns", "host", "alpine",
                           "cat", "/proc/self/uid_map")).split()
    assert out == ["0", "0", "4294967295"]
    ok(berthd.docker("rm", "-f", "u1", "u2"))
    with open("/proc/self/mountinfo") as f:
        assert "idmapped" not in "".join(l for l in f if str(berthd.data_root) in l)


def test_auto_mode_per_container_over_the_api(berthd):
    os.chmod(berthd.tmp, 0o711)
    berthd.load("alpine-3.20")
    c = berthd.json("POST", "/containers/create",
                    {"Image": "alpine", "Cmd": ["cat", "/proc/self/uid_map"],
                     "HostConfig": {"UsernsMode": "auto", "NetworkMode": "none"}})
    berthd.json("POST", f"/containers/{c['Id']}/start")
    berthd.json("POST", f"/containers/{c['Id']}/wait")
    out = ok(berthd.docker("logs", c["Id"])).split()
    assert out[0] == "0" and out[1] != "0" and out[2] == "65536"
    status, _, body = berthd.api("POST", "/containers/create",
                                 {"Image": "alpine", "HostConfig": {"UsernsMode": "weird"}})
    assert status == 400 and b"UsernsMode" in body


def test_data_root_out_of_reach_is_a_clear_error(berthd):
    os.chmod(berthd.tmp, 0o700)
    berthd.load("alpine-3.20")
    status, _, body = berthd.api("POST", "/containers/create",
                                 {"Image": "alpine", "HostConfig": {"UsernsMode": "auto"}})
    assert status == 400 and b"o+x" in body and str(berthd.tmp).encode() in body
    assert berthd.json("GET", "/containers/json?all=1") == []
