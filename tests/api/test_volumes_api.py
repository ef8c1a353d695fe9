"""/volumes through the real docker CLI and raw HTTP: create, ls with
filters, inspect, rm, prune (anonymous only unless --all), events, state
that survives a daemon restart, and bad input."""
import json
import os
import shutil
import time

import pytest

need_docker = pytest.mark.skipif(shutil.which("docker") is None,
                                 reason="the docker CLI is not installed")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")


def names_of(out):
    return sorted(line.strip() for line in out.splitlines() if line.strip())


@need_docker
def test_cli_create_ls_inspect_rm(berthd):
    r = berthd.docker("volume", "create", "--label", "app=web", "data", check=True)
    assert r.stdout.strip() == "data"
    berthd.docker("volume", "create", "other", check=True)
    assert names_of(berthd.docker("volume", "ls", "-q", check=True).stdout) == ["data", "other"]
    assert names_of(berthd.docker("volume", "ls", "-q", "-f", "label=app=web",
                                  check=True).stdout) == ["data"]
    assert names_of(berthd.docker("volume", "ls", "-q", "-f", "name=oth",
                                  check=True).stdout) == ["other"]
    assert names_of(berthd.docker("volume", "ls", "-q", "-f", "dangling=true",
                                  check=True).stdout) == ["data", "other"]
    info = json.loads(berthd.docker("volume", "inspect", "data", check=True).stdout)[0]
    assert info["Name"] == "data" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"app": "web"}
    assert info["Mountpoint"] == str(berthd.data_root / "volumes" / "data" / "_data")
    assert os.path.isdir(info["Mountpoint"])
    assert info["CreatedAt"]
    # create of an existing name hands back the same volume
    with open(os.path.join(info["Mountpoint"], "keep"), "w") as f:
        f.write("x")
    berthd.docker("volume", "create", "data", check=True)
    assert os.path.exists(os.path.join(info["Mountpoint"], "keep"))

    r = berthd.docker("volume", "rm", "data", "other", check=True)
    assert names_of(r.stdout) == ["data", "other"]
    assert berthd.docker("volume", "ls", "-q", check=True).stdout.strip() == ""
    assert not os.path.exists(info["Mountpoint"])
    r = berthd.docker("volume", "rm", "data")
    assert r.returncode != 0 and "no such volume" in r.stderr
    assert berthd.docker("volume", "rm", "-f", "data").returncode == 0


@need_docker
def test_cli_prune_takes_anonymous_unless_all(berthd):
    berthd.docker("volume", "create", "named", check=True)
    anon = berthd.json("POST", "/volumes/create", {}, expect=201)
    assert len(anon["Name"]) == 64
    assert "com.docker.volume.anonymous" in anon["Labels"]
    with open(os.path.join(anon["Mountpoint"], "f"), "wb") as f:
        f.write(b"z" * 4096)
    res = berthd.json("POST", "/volumes/prune")
    assert res == {"VolumesDeleted": [anon["Name"]], "SpaceReclaimed": 4096}
    assert names_of(berthd.docker("volume", "ls", "-q").stdout) == ["named"]
    r = berthd.docker("volume", "prune", "-f", check=True)
    assert "named" not in r.stdout
    r = berthd.docker("volume", "prune", "-a", "-f", check=True)
    assert "named" in r.stdout
    assert berthd.docker("volume", "ls", "-q").stdout.strip() == ""


def test_api_shapes_and_events(berthd):
    t0 = int(time.time()) - 1
    v = berthd.json("POST", "/volumes/create",
                    {"Name": "ev1", "Driver": "local", "Labels": {"a": "b"}}, expect=201)
    assert set(v) >= {"Name", "Driver", "Mountpoint", "CreatedAt", "Labels", "Options", "Scope"}
    listed = berthd.json("GET", "/volumes")
    assert listed["Warnings"] is None and [x["Name"] for x in listed["Volumes"]] == ["ev1"]
    assert berthd.json("GET", "/v1.43/volumes/ev1") == v
    status, _, _ = berthd.api("DELETE", "/volumes/ev1")
    assert status == 204
    evs = [(e["Type"], e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"])
           for e in berthd.events(t0) if e["Type"] == "volume"]
    assert evs == [("volume", "create", "ev1", {"driver": "local"}),
                   ("volume", "destroy", "ev1", {"driver": "local"})]


def test_volumes_survive_a_restart(berthd):
    berthd.json("POST", "/volumes/create", {"Name": "lasting"}, expect=201)
    before = berthd.json("GET", "/volumes/lasting")
    berthd.restart()
    assert berthd.json("GET", "/volumes/lasting") == before


@pytest.mark.parametrize("body,status,text", [
    (b"{not json", 400, "malformed JSON"),
    (b"[1, 2]", 400, "expected a JSON dict"),
    ({"Name": "x"}, 400, "too short"),
    ({"Name": "../etc"}, 400, "invalid characters"),
    ({"Name": "a b"}, 400, "invalid characters"),
    ({"Name": 5}, 400, "Name"),
    ({"Name": "ok1", "Labels": ["a"]}, 400, "Labels"),
    ({"Name": "ok1", "Driver": "nfs-plugin"}, 404, "plugin"),
    ({"Name": "ok1", "DriverOpts": {"type": "tmpfs", "device": "tmpfs"}}, 400, "not supported"),
    ({"Name": "ok1", "DriverOpts": {"colour": "red"}}, 400, "invalid option key"),
])
def test_bad_create_requests(berthd, body, status, text):
    got, _, data = berthd.api("POST", "/volumes/create", body,
                              {"Content-Type": "application/json"})
    assert got == status, data
    assert text in json.loads(data)["message"]
    assert berthd.json("GET", "/volumes")["Volumes"] == []


def test_unknown_volumes_and_filters(berthd):
    for method, path in (("GET", "/volumes/nothere"), ("DELETE", "/volumes/nothere"),
                         ("GET", "/volumes/.hidden"), ("GET", "/volumes/a%20b")):
        status, _, data = berthd.api(method, path)
        assert status == 404, (path, data)
        assert "no such volume" in json.loads(data)["message"]
    status, _, data = berthd.api("GET", "/volumes?filters=" + '{"colour":["red"]}')
    assert status == 400 and "invalid filter" in json.loads(data)["message"]
    status, _, data = berthd.api("GET", "/volumes?filters={bad")
    assert status == 400
    status, _, data = berthd.api("POST", "/volumes/prune?filters=" + '{"dangling":["true"]}')
    assert status == 400
