"""Layer unpacking without root: formats, whiteouts in delete mode, links,
limits. Every member belongs to the running user so no chown needs root."""
import gzip
import io
import os
import stat
import tarfile

import pytest

from berth.engine.storage.unpack import extract
from berth.errors import BerthError

UID, GID = os.getuid(), os.getgid()


def member(name, kind="file", data=b"", mode=None, linkname="", mtime=1_600_000_000):
    ti = tarfile.TarInfo(name)
    ti.uid, ti.gid, ti.mtime = UID, GID, mtime
    if kind == "file":
        ti.type, ti.size, ti.mode = tarfile.REGTYPE, len(data), 0o644 if mode is None else mode
    elif kind == "dir":
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755 if mode is None else mode
    elif kind == "sym":
        ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, linkname, 0o777
    elif kind == "hard":
        ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, linkname, 0o644
    elif kind == "fifo":
        ti.type, ti.mode = tarfile.FIFOTYPE, 0o600 if mode is None else mode
    return ti, data


def layer(*members, gz=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    raw = buf.getvalue()
    return io.BytesIO(gzip.compress(raw) if gz else raw)


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "dest"
    d.mkdir()
    return d


@pytest.mark.parametrize("gz", [False, True])
def test_plain_and_gzip_layers_unpack_the_same(dest, gz):
    n = extract(layer(member("etc/", "dir"), member("etc/motd", data=b"hello\n"),
                      member("bin/sh", data=b"#!x", mode=0o755), gz=gz), str(dest))
    assert n == len(b"hello\n") + 3
    assert (dest / "etc/motd").read_bytes() == b"hello\n"
    st = os.stat(dest / "bin/sh")
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert st.st_mtime == 1_600_000_000


def test_directory_mode_and_mtime_survive_children_written_after(dest):
    extract(layer(member("ro/", "dir", mode=0o555, mtime=1_500_000_000),
                  member("ro/f", data=b"x")), str(dest))
    st = os.stat(dest / "ro")
    assert stat.S_IMODE(st.st_mode) == 0o555
    assert st.st_mtime == 1_500_000_000
    assert (dest / "ro/f").read_bytes() == b"x"
    os.chmod(dest / "ro", 0o755)


def test_whiteout_deletes_lower_content(dest):
    extract(layer(member("a/", "dir"), member("a/keep", data=b"1"), member("a/gone", data=b"2"),
                  member("a/sub/", "dir"), member("a/sub/x", data=b"3")), str(dest))
    extract(layer(member("a/.wh.gone"), member("a/.wh.sub")), str(dest))
    assert sorted(os.listdir(dest / "a")) == ["keep"]


def test_opaque_dir_keeps_only_what_this_layer_adds(dest):
    extract(layer(member("d/", "dir"), member("d/old1", data=b"1"), member("d/old2", data=b"2")),
            str(dest))
    # the new file comes before the marker: the same layer's entries stay
    extract(layer(member("d/", "dir"), member("d/new", data=b"n"), member("d/.wh..wh..opq")),
            str(dest))
    assert os.listdir(dest / "d") == ["new"]
    assert not any(n.startswith(".wh.") for n in os.listdir(dest))


def test_whiteout_does_not_remove_the_same_layers_file(dest):
    extract(layer(member("f", data=b"new"), member(".wh.f")), str(dest))
    assert (dest / "f").read_bytes() == b"new"


def test_file_replaces_directory_and_directory_replaces_file(dest):
    extract(layer(member("x/", "dir"), member("x/inner", data=b"i"), member("y", data=b"f")),
            str(dest))
    extract(layer(member("x", data=b"now a file"), member("y/", "dir")), str(dest))
    assert (dest / "x").read_bytes() == b"now a file"
    assert (dest / "y").is_dir()


def test_symlink_is_created_not_followed_and_hardlink_shares_inode(dest):
    extract(layer(member("f", data=b"data"), member("abs", "sym", linkname="/etc/passwd"),
                  member("h", "hard", linkname="f")), str(dest))
    assert os.readlink(dest / "abs") == "/etc/passwd"
    assert os.stat(dest / "h").st_ino == os.stat(dest / "f").st_ino


def test_existing_symlink_is_replaced_not_written_through(dest, tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"host")
    os.symlink(str(outside), dest / "link")
    extract(layer(member("link", data=b"layer")), str(dest))
    assert outside.read_bytes() == b"host"
    assert not (dest / "link").is_symlink()
    assert (dest / "link").read_bytes() == b"layer"


def test_fifo_is_created(dest):
    extract(layer(member("p", "fifo")), str(dest))
    assert stat.S_ISFIFO(os.lstat(dest / "p").st_mode)


def test_setuid_is_dropped_when_rootless(dest):
    extract(layer(member("su", data=b"x", mode=0o4755)), str(dest), rootless=True)
    assert stat.S_IMODE(os.stat(dest / "su").st_mode) == 0o755


def test_zero_runs_become_holes(dest):
    size = 8 << 20
    extract(layer(member("big", data=bytes(size))), str(dest))
    st = os.stat(dest / "big")
    assert st.st_size == size
    assert st.st_blocks * 512 < size // 4


def test_too_many_entries_names_the_member(dest):
    with pytest.raises(BerthError, match=r"'f3'.*more than 2 entries"):
        extract(layer(*(member(f"f{i}", data=b"x") for i in range(1, 5))), str(dest),
                max_entries=2)


def test_declared_sizes_over_max_bytes_are_refused_before_writing(dest):
    with pytest.raises(BerthError, match=r"'b'.*limit"):
        extract(layer(member("a", data=b"x" * 600), member("b", data=b"y" * 600)), str(dest),
                max_bytes=1000)
    assert not (dest / "b").exists()


def test_truncated_data_is_named(dest):
    raw = layer(member("first", data=b"1"), member("cut", data=b"z" * 10000)).getvalue()
    with pytest.raises(BerthError, match=r"truncated layer at member 'cut'"):
        extract(io.BytesIO(raw[:1536 + 5000]), str(dest))


def test_header_cut_short_is_truncated(dest):
    raw = layer(member("first", data=b"1"), member("second", data=b"2")).getvalue()
    with pytest.raises(BerthError, match="truncated layer"):
        extract(io.BytesIO(raw[:1024 + 100]), str(dest))


def test_truncated_gzip_is_truncated(dest):
    raw = layer(member("f", data=os.urandom(50000)), gz=True).getvalue()
    with pytest.raises(BerthError, match="truncated layer"):
        extract(io.BytesIO(raw[:len(raw) // 2]), str(dest))


def test_not_a_tar_is_refused(dest):
    with pytest.raises(BerthError, match="truncated layer before the first member"):
        extract(io.BytesIO(b"this is not a tar archive" * 40), str(dest))


def test_corrupt_zstd_is_refused_clearly(dest):
    # frame header with the reserved bit set
    with pytest.raises(BerthError, match="^layer: corrupt zstd data: reserved"):
        extract(io.BytesIO(b"\x28\xb5\x2f\xfd\x08" + bytes(100)), str(dest))


def test_bad_whiteout_mode(dest):
    with pytest.raises(BerthError, match="whiteout"):
        extract(layer(), str(dest), whiteout="bogus")


def test_whiteouts_of_missing_paths_are_no_ops(dest):
    extract(layer(member("no/such/.wh.file"), member("nodir/.wh..wh..opq"), member(".wh.nope"),
                  member("f", data=b"x")), str(dest))
    assert os.listdir(dest) == ["f"]


def test_whiteout_through_a_symlink_is_refused(dest, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_bytes(b"p")
    os.symlink(str(victim), dest / "link")
    with pytest.raises(BerthError, match=r"'link/\.wh\.precious'.*symlink"):
        extract(layer(member("link/.wh.precious")), str(dest))
    with pytest.raises(BerthError, match=r"'link/\.wh\.\.wh\.\.opq'.*symlink"):
        extract(layer(member("link/.wh..wh..opq")), str(dest))
    assert (victim / "precious").read_bytes() == b"p"


def test_user_xattrs_are_applied(dest):
    ti, data = member("x", data=b"1")
    ti.pax_headers = {"SCHILY.xattr.user.berth": "yes"}
    extract(layer((ti, data)), str(dest))
    assert os.getxattr(dest / "x", "user.berth") == b"yes"


def test_ids_beyond_the_kernel_range_are_refused(dest):
    ti, data = member("f", data=b"x")
    ti.uid = 1 << 40
    with pytest.raises(BerthError, match=r"layer member 'f'"):
        extract(layer((ti, data)), str(dest))


def test_fifo_is_allowed_rootless(dest):
    extract(layer(member("p", "fifo")), str(dest), rootless=True)
    assert stat.S_ISFIFO(os.lstat(dest / "p").st_mode)


def test_overlay_private_xattrs_from_the_layer_are_ignored(dest):
    ti, data = member("x", data=b"1")
    ti.pax_headers = {"SCHILY.xattr.user.overlay.redirect": "/etc", "SCHILY.xattr.user.ok": "1"}
    extract(layer((ti, data)), str(dest))
    assert os.listxattr(dest / "x") == ["user.ok"]
