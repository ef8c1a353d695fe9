"""Hostile layers, built here, unpacked as root: each is refused with the
member named, and nothing outside dest changes."""
import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest

from berth.engine.storage.unpack import extract
from berth.errors import BerthError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

HOST_FILES = ("/etc/passwd", "/etc/hostname", "/etc/shadow")
MB = 1 << 20


def ti(name, kind=tarfile.REGTYPE, size=0, linkname="", mode=0o644, major=0, minor=0):
    t = tarfile.TarInfo(name)
    t.type, t.size, t.linkname, t.mode = kind, size, linkname, mode
    t.devmajor, t.devminor = major, minor
    t.mtime = 1_600_000_000
    return t


def tar_bytes(*members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for t in members:
            data = t.size and io.BytesIO(b"P" * t.size) or None
            tf.addfile(t, data)
    return buf.getvalue()


def _host_state():
    out = {}
    for p in HOST_FILES:
        if os.path.exists(p):
            st = os.stat(p)
            with open(p, "rb") as f:
                out[p] = (st.st_mtime_ns, st.st_ino, hashlib.sha256(f.read()).hexdigest())
    out["/etc entries"] = tuple(sorted(os.listdir("/etc")))
    out["/ entries"] = tuple(sorted(os.listdir("/")))
    return out


def _tree(top):
    found = set()
    for dirpath, dirs, files in os.walk(top):
        for n in dirs + files:
            found.add(os.path.relpath(os.path.join(dirpath, n), top))
    return found


@pytest.fixture
def box(tmp_path):
    """dest sits three levels down, so ../../x lands in tmp_path where we look."""
    dest = tmp_path / "a" / "b" / "dest"
    dest.mkdir(parents=True)
    before_host = _host_state()
    before_tree = _tree(tmp_path)
    yield dest
    assert _host_state() == before_host
    outside = {p for p in _tree(tmp_path) - before_tree if not p.startswith("a/b/dest/")}
    assert outside == set(), f"created outside dest: {outside}"


def refuse(dest, raw, match, **kw):
    with pytest.raises(BerthError, match=match):
        extract(io.BytesIO(raw), str(dest), **kw)


def test_tar_slip(box):
    refuse(box, tar_bytes(ti("../../etc/passwd", size=10)), r"'\.\./\.\./etc/passwd'.*'\.\.' component refused")


def test_dotdot_in_the_middle(box):
    refuse(box, tar_bytes(ti("x/../../../etc/passwd", size=10)), r"x/\.\./\.\./\.\./etc/passwd")


def test_absolute_path(box):
    refuse(box, tar_bytes(ti("/etc/passwd", size=10)), r"'/etc/passwd'.*absolute")


def test_file_through_symlink_to_etc(box):
    raw = tar_bytes(ti("etc", tarfile.SYMTYPE, linkname="/etc"), ti("etc/passwd", size=10))
    refuse(box, raw, r"'etc/passwd'.*parent 'etc' is a symlink")
    assert os.readlink(box / "etc") == "/etc"   # the link itself is allowed


def test_file_through_relative_symlink_out(box):
    raw = tar_bytes(ti("up", tarfile.SYMTYPE, linkname="../../.."), ti("up/escaped", size=3))
    refuse(box, raw, r"'up/escaped'.*symlink")


def test_directory_through_symlink(box):
    raw = tar_bytes(ti("s", tarfile.SYMTYPE, linkname="/tmp"),
                    ti("s/newdir/", tarfile.DIRTYPE, mode=0o755))
    refuse(box, raw, r"'s/newdir/?'.*symlink")


def test_hardlink_to_host_file_absolute(box):
    refuse(box, tar_bytes(ti("h", tarfile.LNKTYPE, linkname="/etc/hostname")),
           r"'h': hardlink target '/etc/hostname': absolute path refused")


def test_hardlink_to_host_file_relative(box):
    refuse(box, tar_bytes(ti("h", tarfile.LNKTYPE, linkname="../../../../../../etc/hostname")),
           r"'h': hardlink target .*'\.\.' component refused")


def test_hardlink_to_file_not_yet_extracted(box):
    refuse(box, tar_bytes(ti("h", tarfile.LNKTYPE, linkname="later"), ti("later", size=1)),
           r"'h'.*'later'.*not a file unpacked earlier")


def test_hardlink_through_symlink_to_host(box):
    raw = tar_bytes(ti("etc", tarfile.SYMTYPE, linkname="/etc"),
                    ti("h", tarfile.LNKTYPE, linkname="etc/hostname"))
    refuse(box, raw, r"'h'.*not a file unpacked earlier")


def test_block_device_refused(box):
    refuse(box, tar_bytes(ti("dev/sda", tarfile.BLKTYPE, mode=0o660, major=8, minor=0)),
           r"'dev/sda'.*block device")
    assert not (box / "dev/sda").exists()


def test_block_device_allowed_on_request(box):
    extract(io.BytesIO(tar_bytes(ti("sda", tarfile.BLKTYPE, mode=0o600, major=8, minor=0))),
            str(box), allow_devices=True)
    assert stat.S_ISBLK(os.lstat(box / "sda").st_mode)
    os.unlink(box / "sda")


def test_char_device_refused_rootless(box):
    refuse(box, tar_bytes(ti("dev/null", tarfile.CHRTYPE, mode=0o666, major=1, minor=3)),
           r"'dev/null'.*rootless", rootless=True)


def test_char_device_allowed_rootful(box):
    extract(io.BytesIO(tar_bytes(ti("null", tarfile.CHRTYPE, mode=0o666, major=1, minor=3))),
            str(box))
    st = os.lstat(box / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


@pytest.mark.parametrize("name", [".wh..", ".wh.", "./.wh..", "sub/.wh.."])
@pytest.mark.parametrize("mode", ["delete", "overlay"])
def test_whiteout_of_root(box, name, mode):
    (box / "keep").write_bytes(b"k")
    refuse(box, tar_bytes(ti(name)), r"whiteout of the layer root", whiteout=mode)
    assert (box / "keep").read_bytes() == b"k"


def test_sparse_10gb_header_costs_nothing(box):
    big = ti("huge", size=0)
    big.size = 10 << 30
    buf = io.BytesIO()
    buf.write(big.tobuf(tarfile.PAX_FORMAT))   # header only: no 10 GB of data
    refuse(box, buf.getvalue(), r"'huge'.*declares 10737418240 bytes", max_bytes=100 * MB)
    assert not (box / "huge").exists()


def _gzip_zeros(total, chunk=16 * MB):
    """gzip members concatenate into one stream: compress one chunk of zeros
    and repeat it, instead of compressing a gigabyte."""
    one = gzip.compress(bytes(chunk), compresslevel=9)
    return one * (total // chunk)


def test_gzip_bomb_declared_size(box):
    head = ti("zeros", size=0)
    head.size = 1 << 30
    raw = gzip.compress(head.tobuf(tarfile.PAX_FORMAT)) + _gzip_zeros(1 << 30)
    assert len(raw) < 2 * MB
    refuse(box, raw, r"'zeros'.*limit", max_bytes=100 * MB)


def test_gzip_bomb_in_a_pax_header(box):
    # tarfile would read a 1 GB pax record into memory; the stream bound stops it
    head = ti("pax", tarfile.XHDTYPE, size=0)
    head.size = 1 << 30
    raw = gzip.compress(head.tobuf(tarfile.USTAR_FORMAT)) + _gzip_zeros(1 << 30)
    refuse(box, raw, r"limit.*decompressed stream too large", max_bytes=100 * MB)


def test_many_small_files_over_max_bytes(box):
    raw = tar_bytes(*(ti(f"f{i}", size=4096) for i in range(40)))
    refuse(box, raw, r"'f24'.*limit", max_bytes=100_000)


def test_truncated_tar(box):
    raw = tar_bytes(ti("ok", size=100), ti("cut", size=100_000))
    refuse(box, raw[:len(raw) // 2], r"truncated layer at member 'cut'")


def test_truncated_gzip(box):
    raw = gzip.compress(tar_bytes(ti("a", size=100_000)))
    refuse(box, raw[:len(raw) - 20], r"truncated layer")


def test_too_many_entries(box):
    refuse(box, tar_bytes(*(ti(f"e{i}") for i in range(10))), r"'e5'.*more than 5 entries",
           max_entries=5)
