"""The API surface as Docker's clients meet it, berthd beside a dockerd of
the test's own: a node not in a swarm, plugins, the router's own answers
(unknown paths and methods, trailing slashes), JSON as Go clients send it
(null for an absent value), query parameters as Go reads them."""
import json
import re

import pytest

pytestmark = pytest.mark.skipif(__import__("os").geteuid() != 0, reason="the daemons run as root")

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or '
               '"docker swarm join" to connect this node to swarm and try again.')

# answered by dockerd with a status and message the test compares exactly
SAME = [
    ("GET", "/swarm", None),
    ("POST", "/swarm/leave?force=1", None),
    ("GET", "/swarm/unlockkey", None),
    ("POST", "/swarm/unlock", {}),
    ("POST", "/swarm/init", {}),
    ("GET", "/nodes", None),
    ("GET", "/nodes/x", None),
    ("DELETE", "/nodes/x", None),
    ("GET", "/services", None),
    ("POST", "/services/create", {}),
    ("GET", "/services/x", None),
    ("GET", "/services/x/logs", None),
    ("GET", "/tasks", None),
    ("GET", "/tasks/x", None),
    ("GET", "/secrets", None),
    ("POST", "/secrets/create", {}),
    ("GET", "/configs/x", None),
    ("GET", "/plugins", None),
    ("GET", "/plugins/privileges?remote=x", None),
    ("GET", "/plugins/x/json", None),
    ("GET", "/plugins/vieux/sshfs:latest/json", None),
    ("DELETE", "/plugins/x", None),
    ("POST", "/plugins/x/enable", None),
    ("POST", "/plugins/x/disable", None),
    ("POST", "/plugins/x/push", None),
    ("POST", "/session", None),
    ("GET", "/nope", None),
    ("GET", "/containers/json/", None),
    ("PUT", "/containers/json", None),
    ("DELETE", "/_ping", None),
    ("GET", "/v1.41/swarm", None),
]


def _answer(d, method, path, body):
    status, headers, data = d.api(method, path, body)
    assert headers.get("content-type", "").startswith("application/json"), (path, headers, data)
    return status, json.loads(data)


def test_answers_as_dockerd_not_in_a_swarm(berthd, dockerd):
    """Every request in SAME gets dockerd's status and JSON body from berthd."""
    differ = []
    for method, path, body in SAME:
        ours, theirs = _answer(berthd, method, path, body), _answer(dockerd, method, path, body)
        if ours != theirs:
            differ.append(f"{method} {path}: berthd {ours}, dockerd {theirs}")
    assert not differ, "\n".join(differ)
    assert _answer(berthd, "GET", "/nodes", None) == (503, {"message": NOT_MANAGER})


def test_swarm_in_info_and_init_refused_by_name(berthd, dockerd):
    ours, theirs = berthd.json("GET", "/info")["Swarm"], dockerd.json("GET", "/info")["Swarm"]
    assert ours == theirs
    status, body = _answer(berthd, "POST", "/swarm/init", {"ListenAddr": "127.0.0.1:2377"})
    assert status == 503 and "no swarm mode" in body["message"]


def test_trailing_slash_lists_as_dockerd(berthd, dockerd):
    names = sorted(n["Name"] for n in berthd.json("GET", "/networks/"))
    assert names == sorted(n["Name"] for n in dockerd.json("GET", "/networks/"))
    assert _answer(berthd, "GET", "/volumes/", None)[0] == _answer(dockerd, "GET", "/volumes/", None)[0] == 404


def test_head_ping(berthd, dockerd):
    for d in (berthd, dockerd):
        status, headers, data = d.api("HEAD", "/_ping")
        assert (status, data) == (200, b"")
        assert "api-version" in headers


def test_null_as_an_absent_value(berthd, dockerd):
    """Go clients marshal a nil map or pointer as null: dockerd takes it as
    absent, in bodies and in JSON query parameters."""
    for d in (berthd, dockerd):
        assert d.json("GET", "/images/json?filters=null") == []
        assert d.json("GET", '/networks?filters={"name":null}')
        vol = d.json("POST", "/volumes/create", {"Name": "nullvol", "Labels": None,
                                                   "DriverOpts": None}, expect=201)
        assert vol["Name"] == "nullvol"
        d.json("DELETE", "/volumes/nullvol", expect=204)
        net = d.json("POST", "/networks/create", {"Name": "nullnet", "Labels": None,
                                                    "Options": None, "IPAM": None}, expect=201)
        d.json("DELETE", f"/networks/{net['Id']}", expect=204)
        status, _, data = d.api("POST", "/volumes/create", b"null",
                                {"Content-Type": "application/json"})
        assert status == 201, data
        d.json("DELETE", f"/volumes/{json.loads(data)['Name']}", expect=204)


def test_repeated_query_parameter_is_read_as_go_reads_it(berthd, dockerd):
    """Go's Form.Get takes the first of repeated values."""
    q = "/networks?filters=" + '{"name":["none"]}' + "&filters=" + '{"name":["host"]}'
    for d in (berthd, dockerd):
        assert [n["Name"] for n in d.json("GET", q)] == ["none"]


def test_info_system_time_has_nanoseconds(berthd):
    t = berthd.json("GET", "/info")["SystemTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}Z", t), t


def test_network_named_with_a_space_or_a_slash_and_ipam_options_null(berthd, dockerd):
    seen = []
    for d in (berthd, dockerd):
        net = d.json("POST", "/networks/create", {"Name": "with space"}, expect=201)
        got = d.json("GET", "/networks/with%20space")
        assert got["Id"] == net["Id"] and got["Name"] == "with space"
        seen.append(got["IPAM"]["Options"])
        d.json("DELETE", "/networks/with%20space", expect=204)
        d.json("POST", "/networks/create", {"Name": "a/b"}, expect=201)
        assert d.json("GET", "/networks/a/b")["Name"] == "a/b"
        d.json("DELETE", "/networks/a/b", expect=204)
    assert seen == [None, None]


def test_volume_prune_of_api_1_41_removes_named_volumes(berthd, dockerd):
    """Before API 1.42 prune took every unused volume; from 1.42 on only
    anonymous ones unless all=true. dockerd 20.10 speaks 1.41."""
    for d in (berthd, dockerd):
        d.json("POST", "/volumes/create", {"Name": "named-old"}, expect=201)
        assert "named-old" in d.json("POST", "/v1.41/volumes/prune")["VolumesDeleted"]
    berthd.json("POST", "/volumes/create", {"Name": "named-new"}, expect=201)
    assert "named-new" not in (berthd.json("POST", "/v1.43/volumes/prune")["VolumesDeleted"] or [])
    assert "named-new" in berthd.json("POST", '/v1.43/volumes/prune?filters={"all":["true"]}')["VolumesDeleted"]


def test_distribution_describes_a_name_without_pulling(berthd, dockerd, registry):
    berthd.load("busybox-1.38")
    ref = f"{registry.host}/test/busybox:1.38"
    berthd.json("POST", f"/images/busybox:latest/tag?repo={registry.host}/test/busybox&tag=1.38",
                expect=201)
    r = berthd.docker("push", ref, check=True)
    digest = next(w for w in r.stdout.split() if w.startswith("sha256:"))
    got = berthd.json("GET", f"/distribution/{ref}/json")
    assert got["Descriptor"]["digest"] == digest and got["Descriptor"]["size"] > 0
    assert got["Descriptor"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert got["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
    # a name the registry does not have, and a registry that is not there
    assert berthd.api("GET", f"/distribution/{registry.host}/test/nothere:1/json")[0] == 404
    ours = _answer(berthd, "GET", "/distribution/127.0.0.1:1/x/json", None)
    theirs = _answer(dockerd, "GET", "/distribution/127.0.0.1:1/x/json", None)
    assert ours[0] == theirs[0] == 500 and "127.0.0.1:1" in ours[1]["message"]


def test_unknown_top_level_create_fields_are_ignored(berthd, dockerd):
    """Go's decoder drops fields a struct does not have: docker-py 5 sends
    Runtime at the top level of the create body."""
    for d in (berthd, dockerd):
        d.load("busybox-1.38")
        c = d.json("POST", "/containers/create", {"Image": "busybox:latest", "Runtime": "runc",
                                                  "NoSuchField": {"x": 1}}, expect=201)
        got = d.json("GET", f"/containers/{c['Id']}/json")
        assert "NoSuchField" not in got["Config"] and "Runtime" not in got["Config"]
        d.json("DELETE", f"/containers/{c['Id']}", expect=204)


def _shape(o, p=""):
    """{path: JSON type} of every field, lists by their first item."""
    out = {}
    if isinstance(o, dict):
        for k, v in o.items():
            out[f"{p}.{k}"] = type(v).__name__
            out.update(_shape(v, f"{p}.{k}"))
    elif isinstance(o, list) and o:
        out.update(_shape(o[0], p + "[]"))
    return out


# what differs on purpose or by host: the runtimes each daemon has, the
# dockerd-only GraphDriver paths, /info's Warnings (a list when the host
# gives dockerd something to warn about)
SHAPE_DIFFERENT = (".Runtimes.", ".GraphDriver.Data", ".Containers[].SizeRw", "/info .Warnings")


def test_response_shapes_as_dockerd(berthd, dockerd):
    """Fields and their JSON types (null where dockerd has null) of the
    system, image, volume and network answers."""
    paths = ["/info", "/version", "/system/df", "/images/json", "/images/busybox:latest/json",
             "/volumes", "/volumes/shape"]
    differ = []
    for d in (berthd, dockerd):
        d.load("busybox-1.38")
        d.json("POST", "/volumes/create", {"Name": "shape"}, expect=201)
    for p in paths:
        ours, theirs = _shape(berthd.json("GET", p)), _shape(dockerd.json("GET", p))
        for k in sorted(set(ours) | set(theirs)):
            if any(x in f"{p} {k}" for x in SHAPE_DIFFERENT) or ours.get(k) == theirs.get(k):
                continue
            differ.append(f"{p} {k}: berthd {ours.get(k)}, dockerd {theirs.get(k)}")
    ours = berthd.json("POST", "/networks/prune")
    assert ours == dockerd.json("POST", "/networks/prune") == {"NetworksDeleted": None}
    assert not differ, "\n".join(differ)


@pytest.mark.skipif(__import__("shutil").which("docker") is None, reason="no docker CLI")
def test_docker_cli_sees_a_node_not_in_a_swarm(berthd, dockerd):
    for args in (["node", "ls"], ["service", "ls"], ["secret", "ls"], ["config", "ls"],
                 ["plugin", "ls"], ["swarm", "leave"], ["plugin", "inspect", "x"]):
        ours, theirs = berthd.docker(*args), dockerd.docker(*args)
        assert (ours.returncode, ours.stdout, ours.stderr) == \
            (theirs.returncode, theirs.stdout, theirs.stderr), args


def test_prunes_of_nothing_answer_null(berthd, dockerd):
    for path, key in (("/containers/prune", "ContainersDeleted"), ("/build/prune", "CachesDeleted"),
                      ("/images/prune", "ImagesDeleted"), ("/networks/prune", "NetworksDeleted")):
        assert berthd.json("POST", path)[key] is dockerd.json("POST", path)[key] is None, path
