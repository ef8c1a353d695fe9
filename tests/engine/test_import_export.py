"""`import` of a rootfs tarball and `export` of a container's filesystem."""
import io
import os
import tarfile

import pytest

from berth.engine.images import archive
from berth.engine.images.importer import import_rootfs
from berth.engine.images.store import Store
from berth.engine.storage import layers as L
from berth.engine.storage.export import export_rootfs
from berth.engine.storage.snapshots import pick_driver
from berth.errors import BerthError
from shared_dir import FIXTURES


def tar_of(entries):
    """entries: [(name, bytes | ('link', target) | 'dir')] -> tar bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, what in entries:
            ti = tarfile.TarInfo(name)
            if what == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif isinstance(what, tuple):
                ti.type, ti.linkname = tarfile.SYMTYPE, what[1]
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(what), 0o644
                t.addfile(ti, io.BytesIO(what))
    return buf.getvalue()


@pytest.fixture
def env(tmp_path):
    store = Store(str(tmp_path / "images"))
    driver = pick_driver(str(tmp_path / "storage"))
    mounted = []

    def rootfs(image_id, cid):
        mounted.append(cid)
        return L.container_rootfs(store, driver, image_id, cid)

    yield store, driver, rootfs
    for cid in mounted:
        driver.unmount(cid)
        driver.remove_container(cid)


def test_import_makes_a_one_layer_image(env):
    store, driver, rootfs = env
    data = tar_of([("etc", "dir"), ("etc/hello", b"hi\n"), ("bin", "dir")])
    image_id = import_rootfs(store, io.BytesIO(data), "local/thing:1",
                             config={"Cmd": ["/bin/sh"]}, message="from a tarball")
    info = store.inspect("local/thing:1")
    assert info["Id"] == image_id
    assert info["RepoTags"] == ["local/thing:1"]
    assert len(info["RootFS"]["Layers"]) == 1
    assert info["Config"]["Cmd"] == ["/bin/sh"] and any(e.startswith("PATH=") for e in info["Config"]["Env"])
    root = rootfs(image_id, "c1")
    assert open(os.path.join(root, "etc", "hello")).read() == "hi\n"


def test_import_refuses_a_bad_name_before_storing_anything(env):
    store, _, _ = env
    with pytest.raises(BerthError, match="invalid reference"):
        import_rootfs(store, io.BytesIO(tar_of([("a", b"x")])), "Bad Name")
    assert store.images() == []


def test_a_hostile_imported_tarball_is_stopped_at_unpack(env, tmp_path):
    store, driver, rootfs = env
    image_id = import_rootfs(store, io.BytesIO(tar_of([("../../escaped", b"x")])), "local/evil:1")
    with pytest.raises(BerthError, match="escaped"):
        rootfs(image_id, "c2")
    assert not (tmp_path / "escaped").exists() and not os.path.exists("/escaped")


def test_export_writes_links_as_links_and_round_trips(env, tmp_path):
    store, driver, rootfs = env
    with open(FIXTURES / "images" / "busybox-1.38.tar", "rb") as f:
        (image_id,) = archive.load(store, f)
    root = rootfs(image_id, "c3")
    # what a container could leave behind: its own file, and a link to a host secret
    with open(os.path.join(root, "written"), "w") as f:
        f.write("by the container\n")
    os.symlink("/etc/shadow", os.path.join(root, "evil"))
    out = io.BytesIO()
    export_rootfs(root, out)
    out.seek(0)
    with tarfile.open(fileobj=out) as t:
        members = {m.name: m for m in t.getmembers()}
        assert t.extractfile("written").read() == b"by the container\n"
        assert members["evil"].issym() and members["evil"].linkname == "/etc/shadow"
        # busybox's applets are hardlinks of one file: kept as one file plus links
        bb = members["bin/busybox"]
        target = members[bb.linkname] if bb.islnk() else bb
        assert target.isfile() and target.size > 100_000
    out.seek(0)
    again = import_rootfs(store, out, "local/exported:1")
    listing = {m for m in tarfile.open(fileobj=store.open_blob(store.record(again)["layers"][0])).getnames()}
    assert {"written", "evil", "bin/busybox"} <= listing
