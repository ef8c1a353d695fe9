"""docker-archive and OCI-layout import/export against the shared fixtures
and hand-made hostile archives. No root needed."""
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile

import pytest

from berth.engine.images import archive, oci_layout
from berth.engine.images.store import Store
from berth.errors import BerthError, NotFound
from berth.oci import jsonio
from shared_dir import FIXTURES

IMAGES = FIXTURES / "images"
ALPINE_320 = "sha256:d8a8a713bd790215faf84cfce48e0a8b0bdf1ee5fac3af2f3e2b4bb61d35463c"
ALPINE_310 = "sha256:7efacd2989a9b317c88d11892f4c971aabb4b9e93fe938a14be12e874ad4a8da"
BUSYBOX = "sha256:c6348fa86ba0fb2108c9334f5fe913ddc6d853313e655891f133a0127c30099f"

pytestmark = pytest.mark.skipif(not (IMAGES / "alpine-3.20.tar").exists(),
                                reason="image fixtures missing")


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def empty(store):
    """Nothing at all in the store: no image, tag, blob or tmp file."""
    return (store.images() == [] and store._load_tags() == {}
            and os.listdir(os.path.join(store.root, "blobs", "sha256")) == []
            and os.listdir(os.path.join(store.root, "tmp")) == [])


def tar_bytes(entries, compress=False):
    """entries: (name, data) for files, (name, None, linkname) for symlinks,
    or a TarInfo-maker callable."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if compress else "w",
                      format=tarfile.GNU_FORMAT) as t:
        for e in entries:
            name, data = e[0], e[1]
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type = tarfile.SYMTYPE
                ti.linkname = e[2]
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def small_image(layer_gzip=False, tags=("example/small:1",), files=None):
    """A one-layer image archive made here; returns (archive bytes, image id)."""
    layer = tar_bytes([("hello.txt", b"hello from a layer\n")] + list(files or []))
    diff_id = sha(layer)
    stored = gzip.compress(layer, mtime=0) if layer_gzip else layer
    cfg = jsonio.dumps({"architecture": "amd64", "os": "linux",
                        "created": "2024-05-06T07:08:09Z",
                        "config": {"Cmd": ["/hello"]},
                        "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    cid = sha(cfg)
    manifest = [{"Config": f"{cid[7:]}.json", "RepoTags": list(tags) or None,
                 "Layers": ["layer0/layer.tar"]}]
    data = tar_bytes([(f"{cid[7:]}.json", cfg), ("layer0/layer.tar", stored),
                      ("manifest.json", jsonio.dumps(manifest).encode())])
    return data, cid


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "images"))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    s = Store(str(tmp_path_factory.mktemp("fixtures") / "images"))
    for name in ("alpine-3.10", "alpine-3.20", "busybox-1.38"):
        with open(IMAGES / f"{name}.tar", "rb") as f:
            archive.load(s, f)
    return s


def test_fixtures_load(loaded):
    assert loaded.resolve("alpine") == ALPINE_320
    assert loaded.resolve("alpine:latest") == ALPINE_320
    assert loaded.resolve("alpine:3.10") == ALPINE_310
    assert loaded.resolve("docker.io/library/busybox:latest") == BUSYBOX
    info = loaded.inspect("alpine")
    assert info["RepoTags"] == ["alpine:latest"]
    assert info["RootFS"]["Layers"] == [
        "sha256:1bccf10afce5c1ffe31381419930ad565c1436eaeb1ca680494b0663e0028419"]
    assert info["Os"] == "linux" and info["Config"]["Cmd"] == ["/bin/sh"]
    assert {i["Id"] for i in loaded.images()} == {ALPINE_320, ALPINE_310, BUSYBOX}
    # layers are kept as blobs, never unpacked by the store
    for rec_id in (ALPINE_320, ALPINE_310, BUSYBOX):
        for blob in loaded.record(rec_id)["layers"]:
            assert loaded.has_blob(blob)
    assert sorted(os.listdir(loaded.root)) == ["blobs", "images", "lock", "tags.json", "tmp"]


def test_load_returns_ids_and_is_idempotent(loaded):
    with open(IMAGES / "busybox-1.38.tar", "rb") as f:
        assert archive.load(loaded, f) == [BUSYBOX]
    assert loaded.inspect(BUSYBOX)["RepoTags"] == ["busybox:latest"]


def test_round_trip_keeps_ids(loaded, tmp_path):
    out = io.BytesIO()
    archive.save(loaded, ["alpine", "alpine:3.10", "busybox"], out)
    again = io.BytesIO()
    archive.save(loaded, ["alpine", "alpine:3.10", "busybox"], again)
    assert out.getvalue() == again.getvalue(), "save must be deterministic"
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        members = t.getmembers()
    assert all(m.mtime == 0 and m.uid == 0 for m in members)
    assert all(not m.name.startswith("/") and ".." not in m.name.split("/") for m in members)
    names_ = [m.name for m in members]
    assert "manifest.json" in names_ and "repositories" in names_
    assert f"{ALPINE_320[7:]}.json" in names_

    fresh = Store(str(tmp_path / "fresh"))
    out.seek(0)
    assert archive.load(fresh, out) == [ALPINE_320, ALPINE_310, BUSYBOX]
    for ref in ("alpine:latest", "alpine:3.10", "busybox:latest"):
        assert fresh.resolve(ref) == loaded.resolve(ref)
        assert fresh.inspect(ref)["RootFS"] == loaded.inspect(ref)["RootFS"]


def test_save_by_id_has_no_tags(loaded):
    out = io.BytesIO()
    archive.save(loaded, [BUSYBOX[7:19]], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        manifest = jsonio.loads(t.extractfile("manifest.json").read())
    assert manifest == [{"Config": f"{BUSYBOX[7:]}.json", "RepoTags": None,
                         "Layers": [m for m in manifest[0]["Layers"]]}]
    assert len(manifest[0]["Layers"]) == 1


def test_save_unknown_image(loaded):
    with pytest.raises(NotFound, match="no such image: nothere:latest"):
        archive.save(loaded, ["nothere"], io.BytesIO())


def flip_layer_byte(data):
    """The same archive with one byte of the first large member changed."""
    buf = bytearray(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            if m.isreg() and m.size > 4096:
                buf[m.offset_data + m.size // 2] ^= 0x01
                return bytes(buf)
    raise AssertionError("no layer found")


def test_corrupted_layer_refused_with_nothing_left(store):
    data = (IMAGES / "alpine-3.20.tar").read_bytes()
    with pytest.raises(BerthError, match="hashes to .*the config says"):
        archive.load(store, io.BytesIO(flip_layer_byte(data)))
    assert empty(store)


def test_failed_load_keeps_existing_images(store):
    with open(IMAGES / "busybox-1.38.tar", "rb") as f:
        archive.load(store, f)
    before = sorted(os.listdir(os.path.join(store.root, "blobs", "sha256")))
    data = (IMAGES / "alpine-3.20.tar").read_bytes()
    with pytest.raises(BerthError):
        archive.load(store, io.BytesIO(flip_layer_byte(data)))
    assert [i["Id"] for i in store.images()] == [BUSYBOX]
    assert sorted(os.listdir(os.path.join(store.root, "blobs", "sha256"))) == before


def test_config_name_must_match_its_digest(store):
    data, cid = small_image()
    wrong = "0" * 64
    cfg = None
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        cfg = t.extractfile(f"{cid[7:]}.json").read()
        layer = t.extractfile("layer0/layer.tar").read()
    manifest = [{"Config": f"{wrong}.json", "RepoTags": ["x"], "Layers": ["layer0/layer.tar"]}]
    bad = tar_bytes([(f"{wrong}.json", cfg), ("layer0/layer.tar", layer),
                     ("manifest.json", jsonio.dumps(manifest).encode())])
    with pytest.raises(BerthError, match="digest mismatch"):
        archive.load(store, io.BytesIO(bad))
    assert empty(store)


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape", "a/../../b", "./x/../../y"])
def test_hostile_member_names_refused(store, name):
    data, _ = small_image()
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        entries = [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
    bad = tar_bytes([(name, b"owned")] + entries)
    with pytest.raises(BerthError, match="refused"):
        archive.load(store, io.BytesIO(bad))
    assert empty(store)


def test_symlink_leaving_archive_refused(store):
    data, cid = small_image()
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        entries = [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
    bad = tar_bytes([("evil/layer.tar", None, "../../etc/shadow")] + entries)
    with pytest.raises(BerthError, match="leaves the archive"):
        archive.load(store, io.BytesIO(bad))
    assert empty(store)


def test_device_member_refused(store):
    data, _ = small_image()
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
        dev = tarfile.TarInfo("null")
        dev.type = tarfile.CHRTYPE
        dev.devmajor, dev.devminor = 1, 3
        dst.addfile(dev)
    with pytest.raises(BerthError, match="unsupported type"):
        archive.load(store, io.BytesIO(buf.getvalue()))
    assert empty(store)


def test_size_limit(store):
    data, _ = small_image()
    with pytest.raises(BerthError, match="larger than the limit"):
        archive.load(store, io.BytesIO(data), max_bytes=100)
    assert empty(store)


def test_missing_manifest_and_garbage(store):
    with pytest.raises(BerthError, match="no manifest.json"):
        archive.load(store, io.BytesIO(tar_bytes([("repositories", b"{}")])))
    with pytest.raises(BerthError, match="not a tar stream|corrupt"):
        archive.load(store, io.BytesIO(b"this is not a tar file at all" * 40))
    assert empty(store)


class Stream:
    """A pipe-like reader: no seek, no tell."""

    def __init__(self, data):
        self._b = io.BytesIO(data)

    def read(self, n=-1):
        return self._b.read(n)


def test_gzip_layer_and_gzip_archive_from_a_stream(store, tmp_path):
    data, cid = small_image(layer_gzip=True)
    assert archive.load(store, Stream(gzip.compress(data))) == [cid]
    assert store.resolve("example/small:1") == cid
    rec = store.record(cid)
    assert rec["manifest"]["layers"][0]["mediaType"].endswith("tar.gzip")
    # docker save writes plain tars: the layer comes out inflated, same id
    out = io.BytesIO()
    archive.save(store, ["example/small:1"], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        manifest = jsonio.loads(t.extractfile("manifest.json").read())
        layer = t.extractfile(manifest[0]["Layers"][0]).read()
    assert sha(layer) == store.inspect(cid)["RootFS"]["Layers"][0]
    fresh = Store(str(tmp_path / "fresh"))
    out.seek(0)
    assert archive.load(fresh, out) == [cid]


def test_truncated_gzip_layer_refused(store):
    layer = gzip.compress(tar_bytes([("a", b"x" * 5000)]))[:-20]
    cfg = jsonio.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    manifest = [{"Config": "c.json", "RepoTags": None, "Layers": ["l.tar"]}]
    bad = tar_bytes([("c.json", cfg), ("l.tar", layer),
                     ("manifest.json", jsonio.dumps(manifest).encode())])
    with pytest.raises(BerthError, match="truncated|corrupt gzip"):
        archive.load(store, io.BytesIO(bad))
    assert empty(store)


def test_legacy_repositories_file_names_untagged_images(store):
    data, cid = small_image(tags=())
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        entries = [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
    repos = jsonio.dumps({"old/name": {"v0": "layer0"}}).encode()
    archive.load(store, io.BytesIO(tar_bytes(entries + [("repositories", repos)])))
    assert store.resolve("old/name:v0") == cid


def test_bad_repo_tag_refused(store):
    data, _ = small_image(tags=("Bad/Name",))
    with pytest.raises(BerthError, match="lowercase"):
        archive.load(store, io.BytesIO(data))
    assert empty(store)


# OCI image layout

def test_oci_export_import_round_trip(loaded, tmp_path):
    dest = tmp_path / "layout"
    mdigest = oci_layout.export(loaded, "alpine", str(dest))
    oci_layout.export(loaded, "busybox", str(dest))
    assert jsonio.load_file(str(dest / "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    index = jsonio.load_file(str(dest / "index.json"))
    assert index["schemaVersion"] == 2
    anns = [m["annotations"] for m in index["manifests"]]
    assert anns[0] == {"io.containerd.image.name": "docker.io/library/alpine:latest",
                       "org.opencontainers.image.ref.name": "latest"}
    assert index["manifests"][0]["digest"] == mdigest
    for blob in os.listdir(dest / "blobs" / "sha256"):
        assert sha((dest / "blobs" / "sha256" / blob).read_bytes()) == "sha256:" + blob
    manifest = jsonio.load_file(str(dest / "blobs" / "sha256" / mdigest[7:]))
    assert manifest["mediaType"] == oci_layout.MT_OCI_MANIFEST
    assert manifest["config"]["digest"] == ALPINE_320
    # exporting the same name again replaces the entry
    oci_layout.export(loaded, "alpine", str(dest))
    assert len(jsonio.load_file(str(dest / "index.json"))["manifests"]) == 2

    fresh = Store(str(tmp_path / "fresh"))
    assert sorted(oci_layout.import_(fresh, str(dest))) == sorted([ALPINE_320, BUSYBOX])
    assert fresh.resolve("alpine:latest") == ALPINE_320
    assert fresh.resolve("busybox") == BUSYBOX
    other = Store(str(tmp_path / "other"))
    assert oci_layout.import_(other, str(dest), "busybox") == [BUSYBOX]
    assert [i["Id"] for i in other.images()] == [BUSYBOX]


def test_oci_import_with_new_name_and_bare_tag(loaded, tmp_path):
    dest = tmp_path / "layout"
    oci_layout.export(loaded, "busybox", str(dest))
    index = jsonio.load_file(str(dest / "index.json"))
    index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "1.38"}
    jsonio.write_atomic(str(dest / "index.json"), index)
    s = Store(str(tmp_path / "s"))
    assert oci_layout.import_(s, str(dest)) == [BUSYBOX]
    assert s.images()[0]["RepoTags"] == []  # a bare tag names no repository
    assert oci_layout.import_(s, str(dest), "mine/busybox:1.38") == [BUSYBOX]
    assert s.resolve("mine/busybox:1.38") == BUSYBOX


def test_oci_import_corrupt_layer_refused(loaded, tmp_path):
    dest = tmp_path / "layout"
    oci_layout.export(loaded, "alpine", str(dest))
    layer = dest / "blobs" / "sha256" / loaded.record(ALPINE_320)["layers"][0][7:]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.chmod(0o644)
    layer.write_bytes(bytes(data))
    s = Store(str(tmp_path / "s"))
    with pytest.raises(BerthError, match="digest mismatch"):
        oci_layout.import_(s, str(dest))
    assert empty(s)


def test_oci_import_docker_media_types_and_index(store, tmp_path):
    """A layout holding a Docker schema2 manifest behind a nested index."""
    data, cid = small_image(layer_gzip=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        cfg = t.extractfile(f"{cid[7:]}.json").read()
        layer = t.extractfile("layer0/layer.tar").read()
    root = tmp_path / "layout"
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(b):
        (blobs / sha(b)[7:]).write_bytes(b)
        return {"digest": sha(b), "size": len(b)}

    manifest = {"schemaVersion": 2, "mediaType": oci_layout.MT_DOCKER_MANIFEST,
                "config": dict(mediaType="application/vnd.docker.container.image.v1+json", **put(cfg)),
                "layers": [dict(mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip",
                                **put(layer))]}
    mdesc = dict(mediaType=oci_layout.MT_DOCKER_MANIFEST,
                 platform={"architecture": oci_layout._host_arch(), "os": "linux"},
                 **put(jsonio.dumps(manifest).encode()))
    other = dict(mediaType=oci_layout.MT_DOCKER_MANIFEST,
                 platform={"architecture": "mips", "os": "linux"},
                 digest="sha256:" + "0" * 64, size=1)
    inner = {"schemaVersion": 2, "mediaType": oci_layout.MT_DOCKER_LIST, "manifests": [other, mdesc]}
    idesc = dict(mediaType=oci_layout.MT_DOCKER_LIST,
                 annotations={"org.opencontainers.image.ref.name": "example/multi:2"},
                 **put(jsonio.dumps(inner).encode()))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(jsonio.dumps({"schemaVersion": 2, "manifests": [idesc]}))
    assert oci_layout.import_(store, str(root)) == [cid]
    assert store.resolve("example/multi:2") == cid


def test_oci_import_not_a_layout(store, tmp_path):
    with pytest.raises(BerthError, match="not an OCI image layout"):
        oci_layout.import_(store, str(tmp_path))


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
def test_skopeo_reads_our_layout(loaded, tmp_path):
    dest = tmp_path / "layout"
    oci_layout.export(loaded, "busybox", str(dest))
    r = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{dest}:latest"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert jsonio.loads(r.stdout)["config"]["digest"] == BUSYBOX


def test_diff_tap_handles_multi_member_gzip_in_tiny_chunks():
    a = tar_bytes([("a", b"a" * 3000)])
    b = b"tail bytes after the first member"
    stored = gzip.compress(a) + gzip.compress(b) + b"\0" * 7
    tap = archive.DiffTap("layer")
    for i in range(0, len(stored), 3):
        tap(stored[i:i + 3])
    assert tap.finish() == (sha(a + b), len(a + b))
    plain = archive.DiffTap("layer")
    plain(a[:2])
    plain(a[2:])
    assert plain.finish() == (sha(a), len(a)) and plain.kind == "tar"
    tiny = archive.DiffTap("layer")
    tiny(b"ab")
    assert tiny.finish() == (sha(b"ab"), 2)


def test_oci_export_by_id_twice_adds_one_entry(loaded, tmp_path):
    dest = tmp_path / "layout"
    oci_layout.export(loaded, BUSYBOX, str(dest))
    oci_layout.export(loaded, BUSYBOX[7:19], str(dest))
    index = jsonio.load_file(str(dest / "index.json"))
    assert len(index["manifests"]) == 1 and "annotations" not in index["manifests"][0]


def test_failed_save_does_not_end_the_archive(store):
    data, cid = small_image()
    archive.load(store, io.BytesIO(data))
    os.unlink(store.blob_path(cid))  # the config goes out after the layers
    out = io.BytesIO()
    with pytest.raises(NotFound, match="not found"):
        archive.save(store, ["example/small:1"], out)
    written = out.getvalue()
    assert len(written) > 1024
    # no end-of-archive blocks: a half-written save must not look complete
    assert written[-1024:] != b"\0" * 1024
