import hashlib
import io
import os
import subprocess
import sys
import tarfile

import pytest

from berth.engine.images.store import Store
from berth.errors import BerthError, Conflict, NotFound
from berth.oci import jsonio


def layer_tar(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image(store, seed, created="2024-01-02T03:04:05.123456789Z"):
    """Store one layer and a config; returns (image id, layer digest, layer bytes)."""
    layer = layer_tar({f"file-{seed}": f"content {seed}\n".encode()})
    lid = store.put_bytes(layer)
    cfg = {"architecture": "amd64", "os": "linux", "created": created,
           "config": {"Cmd": ["/bin/sh"], "Labels": {"seed": seed}},
           "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
           "history": [{"created": created, "created_by": f"ADD {seed}"},
                       {"created": created, "created_by": "CMD", "empty_layer": True}]}
    cid = store.put_bytes(jsonio.dumps(cfg).encode())
    store.add_image(cid, [lid], {"schemaVersion": 2})
    return cid, lid, layer


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "images"))


def test_put_blob_is_content_addressed(store):
    d = store.put_bytes(b"hello")
    assert d == sha(b"hello")
    assert store.has_blob(d)
    with store.open_blob(d) as f:
        assert f.read() == b"hello"
    assert os.listdir(os.path.join(store.root, "tmp")) == []


def test_put_blob_mismatch_leaves_nothing(store):
    with pytest.raises(BerthError, match="digest mismatch"):
        store.put_bytes(b"hello", sha(b"other"))
    assert not store.has_blob(sha(b"hello"))
    assert os.listdir(os.path.join(store.root, "blobs", "sha256")) == []
    assert os.listdir(os.path.join(store.root, "tmp")) == []


def test_put_blob_limit(store):
    with pytest.raises(BerthError, match="limit of 3 bytes"):
        store.put_blob(io.BytesIO(b"hello"), max_bytes=3)
    assert os.listdir(os.path.join(store.root, "blobs", "sha256")) == []


def test_bad_digest_refused(store):
    with pytest.raises(BerthError, match="not sha256"):
        store.has_blob("sha256:../../etc/passwd")
    with pytest.raises(NotFound):
        store.open_blob("sha256:" + "0" * 64)


def test_add_image_needs_blobs_and_matching_diff_ids(store):
    layer = layer_tar({"a": b"a"})
    lid = store.put_bytes(layer)
    cfg = store.put_bytes(jsonio.dumps({"rootfs": {"type": "layers", "diff_ids": []}}).encode())
    with pytest.raises(BerthError, match="diff_ids has 0 entries for 1 layers"):
        store.add_image(cfg, [lid], {})
    with pytest.raises(NotFound, match="not found"):
        store.add_image("sha256:" + "1" * 64, [lid], {})
    assert store.images() == []


def test_inspect(store):
    cid, lid, layer = make_image(store, "x")
    store.tag(cid, "example/x:1")
    info = store.inspect("example/x:1")
    assert info["Id"] == cid
    assert info["RepoTags"] == ["example/x:1"]
    assert info["RootFS"] == {"Type": "layers", "Layers": [sha(layer)]}
    assert info["Config"]["Cmd"] == ["/bin/sh"]
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Created"] == "2024-01-02T03:04:05.123456789Z"
    assert info["Size"] == len(layer)
    summary = store.images()
    assert [i["Id"] for i in summary] == [cid]
    assert summary[0]["Created"] == 1704164645
    assert summary[0]["Labels"] == {"seed": "x"}


def test_history_newest_first(store):
    cid, _, layer = make_image(store, "h")
    store.tag(cid, "h")
    h = store.history("h")
    assert [s["CreatedBy"] for s in h] == ["CMD", "ADD h"]
    assert h[0]["Id"] == cid and h[0]["Tags"] == ["h:latest"]
    assert h[1]["Id"] == "<missing>"
    assert [s["Size"] for s in h] == [0, len(layer)]


def test_tag_resolve_untag(store):
    cid, _, _ = make_image(store, "a")
    store.tag(cid, "alpine")
    assert store.resolve("alpine") == cid
    assert store.resolve("alpine:latest") == cid
    assert store.resolve("docker.io/library/alpine:latest") == cid
    assert store.resolve(cid) == cid
    assert store.resolve(cid[7:19]) == cid
    assert store.resolve("sha256:" + cid[7:12]) == cid
    with pytest.raises(NotFound, match="no such image: alpine:3"):
        store.resolve("alpine:3")
    with pytest.raises(BerthError, match="digest"):
        store.tag(cid, "alpine@sha256:" + "a" * 64)
    store.untag("alpine")
    with pytest.raises(NotFound):
        store.resolve("alpine")
    with pytest.raises(NotFound):
        store.untag("alpine")
    assert store.resolve(cid) == cid


def test_tag_moves_between_images(store):
    a, _, _ = make_image(store, "a")
    b, _, _ = make_image(store, "b")
    store.tag(a, "app")
    store.tag(b, "app")
    assert store.resolve("app") == b
    assert store.inspect(a)["RepoTags"] == []


def test_ambiguous_prefix(store):
    ids = [make_image(store, str(i))[0] for i in range(40)]
    # 40 random ids over 16 first digits: some first digit is shared
    firsts = [i[7] for i in ids]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(Conflict, match="ambiguous"):
        store.resolve(shared)
    unique = ids[0][7:71]
    assert store.resolve(unique) == ids[0]
    with pytest.raises(NotFound):
        store.resolve("zz-not-hex")


def test_remove_by_tag_untags_until_last(store):
    cid, lid, _ = make_image(store, "r")
    store.tag(cid, "one")
    store.tag(cid, "two")
    assert store.remove("one") == [{"Untagged": "one:latest"}]
    assert store.resolve(cid) == cid
    events = store.remove("two")
    assert events == [{"Untagged": "two:latest"}, {"Deleted": cid}]
    with pytest.raises(NotFound):
        store.resolve(cid)
    assert not store.has_blob(lid) and not store.has_blob(cid)


def test_remove_by_id_refused_with_several_tags_unless_forced(store):
    cid, lid, _ = make_image(store, "f")
    store.tag(cid, "one")
    store.tag(cid, "two")
    with pytest.raises(Conflict, match="must be forced"):
        store.remove(cid[7:19])
    assert store.inspect(cid)["RepoTags"] == ["one:latest", "two:latest"]
    events = store.remove(cid[7:19], force=True)
    assert {"Deleted": cid} in events
    assert store.images() == []
    assert os.listdir(os.path.join(store.root, "blobs", "sha256")) == []


def test_remove_keeps_shared_blobs(store):
    a, la, _ = make_image(store, "same")
    # a second image sharing the layer, different config
    layer = store.read_blob(la)
    cfg = {"rootfs": {"type": "layers", "diff_ids": [sha(layer)]}, "os": "linux"}
    b = store.put_bytes(jsonio.dumps(cfg).encode())
    store.add_image(b, [la], {})
    store.remove(a)
    assert store.has_blob(la)
    store.remove(b)
    assert not store.has_blob(la)


def test_prune_removes_dangling_and_orphans(store):
    kept, _, _ = make_image(store, "kept")
    store.tag(kept, "kept")
    dangling, dl, _ = make_image(store, "dangling")
    in_use, _, _ = make_image(store, "in-use")
    orphan = store.put_bytes(b"orphan blob")
    stale = os.path.join(store.root, "tmp", "blob.999999999.1.x")
    open(stale, "wb").close()
    out = store.prune(keep={in_use})
    assert out["ImagesDeleted"] == [{"Deleted": dangling}]
    assert out["SpaceReclaimed"] > 0
    assert {i["Id"] for i in store.images()} == {kept, in_use}
    assert not store.has_blob(orphan) and not store.has_blob(dl)
    assert not os.path.exists(stale)
    out = store.prune(all=True)
    assert {e["Deleted"] for e in out["ImagesDeleted"] if "Deleted" in e} == {kept, in_use}
    assert store.images() == []


def test_tags_json_is_written_atomically_and_reloads(store, tmp_path):
    cid, _, _ = make_image(store, "t")
    store.tag(cid, "localhost:5000/t:v1")
    with open(os.path.join(store.root, "tags.json")) as f:
        assert jsonio.loads(f.read()) == {"localhost:5000/t:v1": cid}
    again = Store(store.root)
    assert again.resolve("localhost:5000/t:v1") == cid
    assert [n for n in os.listdir(store.root) if ".tmp" in n] == []


def test_lock_serialises_processes(store):
    """While this process holds the store lock another process cannot take it."""
    code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR);"
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)")
    lock = os.path.join(store.root, "lock")
    with store:
        with store:  # re-entrant inside the process
            r = subprocess.run([sys.executable, "-c", code, lock], capture_output=True)
        assert r.returncode != 0 and b"BlockingIOError" in r.stderr
    r = subprocess.run([sys.executable, "-c", code, lock], capture_output=True)
    assert r.returncode == 0, r.stderr


def test_forced_remove_by_name_only_untags_that_name(store):
    cid, _, _ = make_image(store, "n")
    store.tag(cid, "one")
    store.tag(cid, "two")
    assert store.remove("one", force=True) == [{"Untagged": "one:latest"}]
    assert store.inspect(cid)["RepoTags"] == ["two:latest"]
