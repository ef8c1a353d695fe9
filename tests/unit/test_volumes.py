"""The local volume driver as a library: layout, names, filters, removal
that respects users, prune of anonymous volumes only, crash remains."""
import json
import os

import pytest

from berth.engine.volumes import ANONYMOUS_LABEL, Volumes
from berth.errors import ConfigError, Conflict, NotFound


class Events:
    def __init__(self):
        self.seen = []

    def emit(self, type_, action, actor, attrs=None):
        self.seen.append((type_, action, actor, attrs))


@pytest.fixture
def vols(tmp_path):
    return Volumes(str(tmp_path / "volumes"), Events())


def test_create_lays_out_data_and_meta(vols):
    v = vols.create("data", labels={"a": "1"})
    root = vols.root
    assert v["Name"] == "data" and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Mountpoint"] == os.path.join(root, "data", "_data")
    assert os.path.isdir(v["Mountpoint"])
    meta = json.load(open(os.path.join(root, "data", "meta.json")))
    assert meta["Labels"] == {"a": "1"} and meta["CreatedAt"].endswith("Z")
    assert vols.get("data") == v
    assert vols.mountpoint("data") == v["Mountpoint"]
    assert vols.events.seen == [("volume", "create", "data", {"driver": "local"})]
    # no temp files left beside meta.json
    assert sorted(os.listdir(os.path.join(root, "data"))) == ["_data", "meta.json"]


def test_create_is_idempotent(vols):
    a = vols.create("same")
    with open(os.path.join(a["Mountpoint"], "f"), "w") as f:
        f.write("keep")
    b = vols.create("same", labels={"other": "x"})
    assert a == b
    assert open(os.path.join(b["Mountpoint"], "f")).read() == "keep"
    assert len(vols.events.seen) == 1


def test_anonymous_volume(vols):
    v = vols.create()
    assert len(v["Name"]) == 64 and int(v["Name"], 16) >= 0
    assert ANONYMOUS_LABEL in v["Labels"]


@pytest.mark.parametrize("bad", ["a", "-x", ".x", "a/b", "../etc", "a b", "x" * 256, "é1"])
def test_bad_names_are_refused(vols, bad):
    with pytest.raises(ConfigError):
        vols.create(bad)
    assert vols.names() == []


def test_options_and_drivers(vols):
    with pytest.raises(ConfigError, match="not supported"):
        vols.create("t", options={"type": "tmpfs", "device": "tmpfs"})
    with pytest.raises(ConfigError, match="invalid option key"):
        vols.create("t", options={"bogus": "1"})
    with pytest.raises(NotFound, match="plugin"):
        vols.create("t", driver="flocker")
    assert vols.names() == []


def test_get_and_remove_unknown(vols):
    with pytest.raises(NotFound, match="no such volume"):
        vols.get("nothere")
    with pytest.raises(NotFound):
        vols.get("../../etc")
    with pytest.raises(NotFound):
        vols.remove("nothere")
    vols.remove("nothere", force=True)


def test_remove_in_use_names_the_containers(vols):
    vols.create("busy")
    vols.in_use = lambda name: ["c1", "c2"] if name == "busy" else []
    for force in (False, True):
        with pytest.raises(Conflict, match=r"volume is in use - \[c1, c2\]"):
            vols.remove("busy", force=force)
    vols.in_use = lambda name: []
    vols.remove("busy")
    assert not os.path.exists(os.path.join(vols.root, "busy"))
    assert vols.events.seen[-1] == ("volume", "destroy", "busy", {"driver": "local"})


def test_list_filters(vols):
    vols.create("web-data", labels={"app": "web", "tier": "front"})
    vols.create("db-data", labels={"app": "db"})
    anon = vols.create()["Name"]
    vols.in_use = lambda n: ["c"] if n == "db-data" else []
    names = lambda f: sorted(v["Name"] for v in vols.list(f))  # noqa: E731
    assert names({}) == sorted(["web-data", "db-data", anon])
    assert names({"name": ["data"]}) == ["db-data", "web-data"]
    assert names({"label": ["app=web"]}) == ["web-data"]
    assert names({"label": ["app"]}) == ["db-data", "web-data"]
    assert names({"label": ["app", "tier=front"]}) == ["web-data"]
    assert names({"dangling": ["true"]}) == sorted(["web-data", anon])
    assert names({"dangling": ["false"]}) == ["db-data"]
    assert names({"driver": ["local"]}) == sorted(["web-data", "db-data", anon])
    assert names({"driver": ["nfs"]}) == []
    with pytest.raises(ConfigError):
        vols.list({"colour": ["red"]})
    with pytest.raises(ConfigError):
        vols.list({"dangling": ["maybe"]})


def test_prune_takes_only_unused_anonymous_unless_all(vols):
    named = vols.create("named")["Name"]
    a1 = vols.create()
    a2 = vols.create()
    with open(os.path.join(a1["Mountpoint"], "blob"), "wb") as f:
        f.write(b"x" * 5000)
    os.link(os.path.join(a1["Mountpoint"], "blob"), os.path.join(a1["Mountpoint"], "again"))
    assert vols.usage(a1["Name"]) == 5000
    vols.in_use = lambda n: ["c"] if n == a2["Name"] else []
    removed, freed = vols.prune({})
    assert removed == [a1["Name"]] and freed == 5000
    assert sorted(vols.names()) == sorted([named, a2["Name"]])
    removed, _ = vols.prune({"all": ["true"], "label!": ["keep"]})
    assert removed == [named]
    vols.in_use = lambda n: []
    removed, _ = vols.prune({"all": ["1"]})
    assert removed == [a2["Name"]]
    assert vols.names() == []
    with pytest.raises(ConfigError):
        vols.prune({"dangling": ["true"]})


def test_crash_remains_are_collected(tmp_path):
    root = tmp_path / "volumes"
    (root / "half" / "_data").mkdir(parents=True)
    (root / ".trash-gone-0000" / "_data").mkdir(parents=True)
    v = Volumes(str(root))
    assert v.names() == []
    assert sorted(os.listdir(root)) == []
    v.create("half")
    assert v.names() == ["half"]
