"""Snapshot drivers on the real kernel (root): layers unpacked into them,
containers' root filesystems made from them, and nothing left mounted."""
import io
import os
import stat
import subprocess
import tarfile

import pytest
from shared_dir import FIXTURES

from berth.engine.storage import snapshots
from berth.engine.storage.snapshots import OverlayDriver, VfsDriver, pick_driver
from berth.sys.mountinfo import unescape
from berth.engine.storage.unpack import extract
from berth.errors import Conflict, NotFound
from berth.oci import jsonio
from berth.sys import libc

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

BUSYBOX = FIXTURES / "images" / "busybox-1.38.tar"


def _mounts_under(top):
    top = os.path.realpath(top)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = unescape(line.split(" ")[4])
            if mp == top or mp.startswith(top + "/"):
                out.append(mp)
    return out


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "storage"
    yield str(r)
    # also on failure: deepest first, lazily if something is still busy
    for mp in sorted(_mounts_under(tmp_path), key=len, reverse=True):
        libc.umount2(mp, libc.MNT_DETACH)


@pytest.fixture(params=["overlay", "vfs"])
def driver(request, root):
    return snapshots.DRIVERS[request.param](root)


def ti(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, linkname=""):
    t = tarfile.TarInfo(name)
    t.type, t.mode, t.uid, t.gid, t.linkname = kind, mode, uid, gid, linkname
    t.size = len(data) if kind == tarfile.REGTYPE else 0
    t.mtime = 1_600_000_000
    return t, data


def tar(*members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for t, data in members:
            tf.addfile(t, io.BytesIO(data) if t.isreg() else None)
    buf.seek(0)
    return buf


def add_layer(drv, layer_id, parents, fileobj):
    path = drv.prepare_layer(layer_id, parents)
    extract(fileobj, path, whiteout=drv.whiteout)
    return drv.commit_layer(layer_id)


def two_layers(drv):
    add_layer(drv, "l1", [], tar(
        ti("etc/", tarfile.DIRTYPE, mode=0o755),
        ti("etc/keep", data=b"keep"), ti("etc/gone", data=b"gone"),
        ti("opq/", tarfile.DIRTYPE, mode=0o755),
        ti("opq/old1", data=b"1"), ti("opq/old2", data=b"2"),
        ti("dirgone/", tarfile.DIRTYPE, mode=0o755), ti("dirgone/x", data=b"x"),
        ti("shared", data=b"from l1")))
    add_layer(drv, "l2", ["l1"], tar(
        ti("etc/.wh.gone"), ti(".wh.dirgone"),
        ti("opq/", tarfile.DIRTYPE, mode=0o700),
        ti("opq/.wh..wh..opq"), ti("opq/new", data=b"n"),
        ti("owned", data=b"o", mode=0o4750, uid=1234, gid=5678),
        ti("link", tarfile.SYMTYPE, linkname="/etc/passwd", uid=1234, gid=5678)))
    return ["l1", "l2"]


def test_whiteouts_and_opaque_dirs_in_the_container_view(driver):
    rootfs = driver.mount("c1", two_layers(driver))
    try:
        assert sorted(os.listdir(os.path.join(rootfs, "etc"))) == ["keep"]
        assert sorted(os.listdir(os.path.join(rootfs, "opq"))) == ["new"]
        assert not os.path.lexists(os.path.join(rootfs, "dirgone"))
        assert open(os.path.join(rootfs, "shared"), "rb").read() == b"from l1"
        assert not [n for n in os.listdir(rootfs) if n.startswith(".wh.")]
        st = os.stat(os.path.join(rootfs, "opq"))
        assert stat.S_IMODE(st.st_mode) == 0o700
    finally:
        driver.remove_container("c1")


def test_ownership_modes_and_symlinks_preserved(driver):
    rootfs = driver.mount("c1", two_layers(driver))
    try:
        st = os.stat(os.path.join(rootfs, "owned"))
        assert (st.st_uid, st.st_gid) == (1234, 5678)
        assert stat.S_IMODE(st.st_mode) == 0o4750      # setuid kept when not rootless
        assert st.st_mtime == 1_600_000_000
        lst = os.lstat(os.path.join(rootfs, "link"))
        assert (lst.st_uid, lst.st_gid) == (1234, 5678)  # lchown, not the target
        assert os.readlink(os.path.join(rootfs, "link")) == "/etc/passwd"
    finally:
        driver.remove_container("c1")


def test_overlay_layer_dir_holds_whiteout_devices_and_opaque_xattr(root):
    drv = OverlayDriver(root)
    two_layers(drv)
    l2 = drv.layer_path("l2")
    st = os.lstat(os.path.join(l2, "etc", "gone"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(os.path.join(l2, "opq"), "trusted.overlay.opaque") == b"y"
    assert not os.path.exists(os.path.join(l2, "shared"))   # only l2's changes


def test_overlay_containers_share_layers_and_write_to_their_upper(root):
    drv = OverlayDriver(root)
    layers = two_layers(drv)
    a = drv.mount("ca", layers)
    b = drv.mount("cb", layers)
    try:
        for cid, merged in (("ca", a), ("cb", b)):
            info = snapshots.mounted_at(merged)
            assert info and " - overlay " in info
            assert f"lowerdir={drv.layer_path('l2')}:{drv.layer_path('l1')}" in info
            assert f"upperdir={drv.container_path(cid)}/upper" in info
        # the same lower file, not a copy: both views read the layer's bytes
        assert open(os.path.join(a, "shared"), "rb").read() == b"from l1"
        with open(os.path.join(a, "new-file"), "w") as f:
            f.write("a only")
        with open(os.path.join(a, "shared"), "w") as f:
            f.write("changed in a")
        assert not os.path.exists(os.path.join(b, "new-file"))
        assert open(os.path.join(b, "shared"), "rb").read() == b"from l1"
        assert open(os.path.join(drv.layer_path("l1"), "shared"), "rb").read() == b"from l1"
        upper = os.path.join(drv.container_path("ca"), "upper")
        assert sorted(os.listdir(upper)) == ["new-file", "shared"]
        os.unlink(os.path.join(a, "etc", "keep"))
        assert os.path.exists(os.path.join(drv.layer_path("l1"), "etc", "keep"))
        with pytest.raises(Conflict, match="l1.*in use"):
            drv.remove_layer("l1")
    finally:
        drv.remove_container("ca")
        drv.remove_container("cb")
    assert _mounts_under(root) == []
    assert os.listdir(drv.mounts) == []
    drv.remove_layer("l2")
    drv.remove_layer("l1")
    assert os.listdir(drv.layers) == []


def test_overlay_record_written_before_mount_and_unmount_is_idempotent(root):
    drv = OverlayDriver(root)
    layers = two_layers(drv)
    merged = drv.mount("c1", layers)
    try:
        rec = jsonio.load_file(os.path.join(drv.mounts, "c1.json"))
        assert rec["target"] == merged and rec["layers"] == layers
        assert drv.mount("c1", layers) == merged          # already mounted: same path
        assert len(_mounts_under(merged)) == 1
        with open(os.path.join(merged, "kept"), "w") as f:
            f.write("survives a restart")
        drv.unmount("c1")
        drv.unmount("c1")
        assert _mounts_under(root) == []
        merged = drv.mount("c1", layers)                  # restart: upper kept
        assert open(os.path.join(merged, "kept")).read() == "survives a restart"
    finally:
        drv.remove_container("c1")
    assert not os.path.exists(drv.container_path("c1"))


def test_cleanup_stale_after_a_crash(root):
    drv = OverlayDriver(root)
    layers = two_layers(drv)
    drv.mount("dead", layers)
    drv.mount("alive", layers)
    os.mkdir(os.path.join(drv.layers, "half.partial"))
    try:
        fresh = OverlayDriver(root)      # as a restarted daemon would see it
        assert fresh.cleanup_stale(live_ids=["alive"]) == ["dead"]
        assert not snapshots.mounted_at(os.path.join(fresh.container_path("dead"), "merged"))
        assert snapshots.mounted_at(os.path.join(fresh.container_path("alive"), "merged"))
        assert sorted(os.listdir(fresh.mounts)) == ["alive.json"]
        assert not os.path.exists(os.path.join(drv.layers, "half.partial"))
    finally:
        drv.remove_container("alive")
        drv.remove_container("dead")
    assert _mounts_under(root) == []


def test_vfs_copies_and_writes_stay_in_the_container(root):
    drv = VfsDriver(root)
    layers = two_layers(drv)
    a = drv.mount("ca", layers)
    b = drv.mount("cb", layers)
    try:
        assert _mounts_under(root) == []
        la = os.stat(os.path.join(a, "shared")).st_ino
        assert la != os.stat(os.path.join(drv.layer_path("l2"), "shared")).st_ino
        with open(os.path.join(a, "shared"), "w") as f:
            f.write("changed in a")
        assert open(os.path.join(b, "shared"), "rb").read() == b"from l1"
        assert open(os.path.join(drv.layer_path("l2"), "shared"), "rb").read() == b"from l1"
        drv.unmount("ca")
        assert drv.mount("ca", layers) == a               # restart keeps the copy
        assert open(os.path.join(a, "shared")).read() == "changed in a"
    finally:
        drv.remove_container("ca")
        drv.remove_container("cb")
    assert os.listdir(drv.containers) == [] and os.listdir(drv.mounts) == []


def test_vfs_cleanup_drops_a_half_made_copy(root):
    drv = VfsDriver(root)
    two_layers(drv)
    rootfs = os.path.join(drv.container_path("c1"), "rootfs")
    os.makedirs(rootfs)
    jsonio.write_atomic(os.path.join(drv.mounts, "c1.json"),
                        {"driver": "vfs", "container": "c1", "target": rootfs,
                         "layers": ["l1", "l2"], "state": "copying"})
    assert drv.cleanup_stale() == ["c1"]
    assert not os.path.exists(rootfs) and os.listdir(drv.mounts) == []


def test_layer_errors(driver):
    with pytest.raises(NotFound, match="parent layer nope"):
        driver.prepare_layer("l9", ["nope"])
    with pytest.raises(NotFound, match="layer nope"):
        driver.mount("c1", ["nope"])
    add_layer(driver, "l1", [], tar(ti("f", data=b"x")))
    with pytest.raises(Conflict, match="exists"):
        driver.prepare_layer("l1", [])
    with pytest.raises(Exception, match="invalid id"):
        driver.prepare_layer("../escape", [])


def test_pick_driver_finds_overlay_here(root):
    drv = pick_driver(root)
    assert drv.name == "overlay"
    assert _mounts_under(root) == []
    assert not [n for n in os.listdir(root) if n.startswith(".overlay-probe")]
    assert pick_driver(root, "vfs").name == "vfs"


def test_busybox_fixture_layer(driver):
    if not BUSYBOX.exists():
        pytest.skip(f"fixture missing: {BUSYBOX}")
    with tarfile.open(BUSYBOX) as archive:
        manifest = jsonio.loads(archive.extractfile("manifest.json").read())
        layer_names = manifest[0]["Layers"]
        ids = []
        for i, name in enumerate(layer_names):
            lid = f"bb{i}"
            path = driver.prepare_layer(lid, ids)
            n = extract(archive.extractfile(name), path, whiteout=driver.whiteout,
                        max_bytes=200 << 20, max_entries=100_000)
            assert n > 1_000_000
            driver.commit_layer(lid)
            ids.append(lid)
    rootfs = driver.mount("bb", ids)
    try:
        listing = subprocess.run(["chroot", rootfs, "/bin/ls", "/bin/busybox", "/"],
                                 capture_output=True, text=True, timeout=20)
        assert listing.returncode == 0, listing.stderr
        assert "/bin/busybox" in listing.stdout
        assert "etc" in listing.stdout.split()
        st = os.stat(os.path.join(rootfs, "bin", "busybox"))
        assert st.st_nlink > 100 and stat.S_IMODE(st.st_mode) & 0o111
    finally:
        driver.remove_container("bb")


def test_pick_driver_falls_back_to_vfs_when_overlay_fails(root, monkeypatch):
    import errno

    from berth.errors import SysError

    def no_overlay(source, target, fstype, flags=0, data=None):
        raise SysError(f"mount {target}", errno=errno.ENODEV)

    monkeypatch.setattr(snapshots.libc, "mount", no_overlay)
    drv = pick_driver(root)
    assert drv.name == "vfs" and drv.whiteout == "delete"
    assert not [n for n in os.listdir(root) if n.startswith(".overlay-probe")]


def test_rootless_overlay_layer_uses_user_xattr_and_drops_setuid(root):
    drv = OverlayDriver(root)
    path = drv.prepare_layer("l1", [])
    extract(tar(ti("d/", tarfile.DIRTYPE, mode=0o755), ti("d/.wh..wh..opq"),
                ti("d/.wh.old"), ti("su", data=b"x", mode=0o6755)),
            path, whiteout="overlay", rootless=True)
    assert os.getxattr(os.path.join(path, "d"), "user.overlay.opaque") == b"y"
    assert stat.S_ISCHR(os.lstat(os.path.join(path, "d", "old")).st_mode)
    assert stat.S_IMODE(os.stat(os.path.join(path, "su")).st_mode) == 0o755
    drv.abort_layer("l1")
    assert os.listdir(drv.layers) == []


def test_digest_layer_ids_and_vfs_cleanup_keeps_finished_copies(root):
    drv = VfsDriver(root)
    lid = "sha256:" + "ab" * 32
    add_layer(drv, lid, [], tar(ti("f", data=b"x")))
    assert os.path.isdir(os.path.join(drv.layers, "ab" * 32))
    rootfs = drv.mount("c1", [lid])
    try:
        assert drv.cleanup_stale() == []                  # a ready copy is not stale
        assert open(os.path.join(rootfs, "f"), "rb").read() == b"x"
        with pytest.raises(Conflict, match="in use by container c1"):
            drv.remove_layer(lid)
    finally:
        drv.remove_container("c1")
    drv.remove_layer(lid)
