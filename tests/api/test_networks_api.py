"""/networks: the registry through the docker CLI and raw HTTP (the packet
plumbing is not there yet), plus the library's hooks for the containers
manager."""
import json
import os
import shutil
import time
from urllib.parse import quote

import pytest

from berth.engine.networks import Networks, NotSupported, PredefinedNetwork
from berth.errors import Conflict, NotFound

need_docker = pytest.mark.skipif(shutil.which("docker") is None,
                                 reason="the docker CLI is not installed")

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")


def flt(obj):
    return quote(json.dumps(obj))


def inspect(d, name):
    return json.loads(d.docker("network", "inspect", name, check=True).stdout)[0]


@root_only
@need_docker
def test_predefined_networks(berthd):
    r = berthd.docker("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}", check=True)
    assert sorted(r.stdout.split("\n")[:-1]) == ["bridge bridge local", "host host local",
                                                 "none null local"]
    bridge = inspect(berthd, "bridge")
    assert bridge["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert bridge["Options"]["com.docker.network.bridge.default_bridge"] == "true"
    for name in ("bridge", "host", "none"):
        r = berthd.docker("network", "rm", name)
        assert r.returncode != 0 and "pre-defined network" in r.stderr
        status, _, data = berthd.api("DELETE", f"/networks/{name}")
        assert status == 403, data
    r = berthd.docker("network", "create", "-d", "host", "myhost")
    assert r.returncode != 0 and "only one instance" in r.stderr


@root_only
@need_docker
def test_cli_create_inspect_rm(berthd):
    nid = berthd.docker("network", "create", "--label", "team=a", "front", check=True).stdout.strip()
    assert len(nid) == 64
    net = inspect(berthd, "front")
    assert net["Id"] == nid and net["Name"] == "front" and net["Driver"] == "bridge"
    assert net["IPAM"]["Driver"] == "default"
    assert net["IPAM"]["Config"] == [{"Subnet": "172.30.0.0/24", "Gateway": "172.30.0.1"}]
    assert net["Labels"] == {"team": "a"} and net["Containers"] == {}
    assert net["Scope"] == "local" and net["Internal"] is False
    berthd.docker("network", "create", "--internal", "--attachable", "back", check=True)
    back = inspect(berthd, "back")
    assert back["IPAM"]["Config"][0]["Subnet"] == "172.30.1.0/24"
    assert back["Internal"] is True and back["Attachable"] is True
    berthd.docker("network", "create", "--subnet", "10.99.0.0/24", "--gateway", "10.99.0.254",
                  "--ip-range", "10.99.0.128/25", "custom", check=True)
    assert inspect(berthd, "custom")["IPAM"]["Config"] == [
        {"Subnet": "10.99.0.0/24", "IPRange": "10.99.0.128/25", "Gateway": "10.99.0.254"}]

    # by id and id prefix, as the CLI and docker-py look networks up
    assert berthd.json("GET", f"/networks/{nid[:10]}")["Name"] == "front"
    assert berthd.json("GET", f"/networks/{nid}")["Name"] == "front"

    def ls(*flt):
        args = [x for f in flt for x in ("-f", f)]
        out = berthd.docker("network", "ls", "--format", "{{.Name}}", *args, check=True).stdout
        return sorted(out.split())
    assert ls("type=custom") == ["back", "custom", "front"]
    assert ls("type=builtin") == ["bridge", "host", "none"]
    assert ls("label=team=a") == ["front"]
    assert ls("driver=null") == ["none"]
    assert ls("name=ron") == ["front"]
    assert ls(f"id={nid[:12]}") == ["front"]

    r = berthd.docker("network", "create", "front")
    assert r.returncode != 0 and "already exists" in r.stderr
    status, _, data = berthd.api("POST", "/networks/create", {"Name": "front",
                                                              "CheckDuplicate": True})
    assert status == 409, data
    r = berthd.docker("network", "create", "--subnet", "10.99.0.0/16", "overlap")
    assert r.returncode != 0 and "overlaps" in r.stderr

    berthd.docker("network", "rm", "front", "back", check=True)
    berthd.docker("network", "rm", "custom", check=True)
    assert ls("type=custom") == []
    r = berthd.docker("network", "inspect", "front")
    assert r.returncode != 0 and "not found" in r.stderr
    # the freed /24 is handed out again
    berthd.docker("network", "create", "again", check=True)
    assert inspect(berthd, "again")["IPAM"]["Config"][0]["Subnet"] == "172.30.0.0/24"


@root_only
def test_networks_survive_restart_and_prune(berthd):
    t0 = int(time.time()) - 1
    created = berthd.json("POST", "/networks/create", {"Name": "keep", "Labels": {"k": "v"}},
                          expect=201)
    assert set(created) == {"Id", "Warning"}
    berthd.json("POST", "/networks/create", {"Name": "tmp1"}, expect=201)
    before = {n["Name"]: n["Id"] for n in berthd.json("GET", "/networks")}
    evs = [(e["Action"], e["Actor"]["Attributes"]["name"], e["Actor"]["ID"])
           for e in berthd.events(t0) if e["Type"] == "network"]
    assert evs == [("create", "keep", created["Id"]), ("create", "tmp1", before["tmp1"])]
    berthd.restart()
    after = {n["Name"]: n["Id"] for n in berthd.json("GET", "/networks")}
    assert before == after and len(after) == 5
    res = berthd.json("POST", "/networks/prune?filters=" + flt({"label!": ["k"]}))
    assert res == {"NetworksDeleted": ["tmp1"]}
    res = berthd.json("POST", "/networks/prune")
    assert res == {"NetworksDeleted": ["keep"]}
    assert sorted(n["Name"] for n in berthd.json("GET", "/networks")) == ["bridge", "host", "none"]
    evs = [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in berthd.events(t0)
           if e["Type"] == "network"]
    # the event history lives in memory: only what happened since the restart
    assert evs == [("destroy", "tmp1"), ("destroy", "keep")]


@root_only
@pytest.mark.parametrize("method,path,body,status", [
    ("POST", "/networks/create", b"{oops", 400),
    ("POST", "/networks/create", {}, 400),
    ("POST", "/networks/create", {"Name": "bad\nname"}, 400),
    ("POST", "/networks/create", {"Name": "x1", "Driver": "weird"}, 404),
    ("POST", "/networks/create", {"Name": "x1", "IPAM": {"Config": [{"Subnet": "nonsense"}]}}, 400),
    ("POST", "/networks/create", {"Name": "x1", "IPAM": {"Config": [
        {"Subnet": "10.5.0.0/24", "Gateway": "10.6.0.1"}]}}, 400),
    ("POST", "/networks/create", {"Name": "x1", "IPAM": "no"}, 400),
    ("GET", "/networks/nothere", None, 404),
    ("DELETE", "/networks/nothere", None, 404),
    ("POST", "/networks/nothere/connect", {"Container": "c"}, 404),
    ("POST", "/networks/bridge/connect", b"{", 400),
    ("POST", "/networks/bridge/connect", {}, 400),
    ("POST", "/networks/bridge/disconnect", {"Container": 3}, 400),
    ("GET", "/networks?filters=" + flt({"type": ["odd"]}), None, 400),
    ("GET", "/networks?filters=" + flt({"colour": ["red"]}), None, 400),
])
def test_bad_requests(berthd, method, path, body, status):
    got, _, data = berthd.api(method, path, body)
    assert got == status, data
    assert json.loads(data)["message"]
    assert len(berthd.json("GET", "/networks")) == 3


# the hooks the containers manager plugs in (library level, no daemon)

def test_registry_hooks(tmp_path):
    seen = []
    nets = Networks(str(tmp_path / "networks"))
    n = nets.create("app")
    with pytest.raises(NotSupported):
        nets.connect("app", "c1", {})
    with pytest.raises(PredefinedNetwork):
        nets.remove("bridge")
    nets.on_connect = lambda net, c, ep: seen.append(("connect", net["Name"], c, ep))
    nets.on_disconnect = lambda net, c, force: seen.append(("disconnect", net["Name"], c, force))
    nets.connect(n["Id"][:8], "c1", {"Aliases": ["web"]})
    nets.disconnect("app", "c1", force=True)
    assert seen == [("connect", "app", "c1", {"Aliases": ["web"]}),
                    ("disconnect", "app", "c1", True)]
    nets.attached = lambda nid: {"c" * 64: {"Name": "web"}} if nid == n["Id"] else {}
    assert nets.get("app")["Containers"] == {"c" * 64: {"Name": "web"}}
    with pytest.raises(Conflict, match="active endpoints"):
        nets.remove("app")
    assert nets.prune() == []
    nets.attached = lambda nid: {}
    nets.remove("app")
    with pytest.raises(NotFound):
        nets.get("app")
    # one JSON file per network, nothing else (no temp files)
    assert len(os.listdir(tmp_path / "networks")) == 3
