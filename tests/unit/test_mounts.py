import os

import pytest

from berth.errors import SysError
from berth.runtime import mounts as M
from berth.sys import libc as L


def test_parse_options_splits_flags_propagation_and_data():
    flags, prop, rattr, data = M.parse_options(["rbind", "ro", "nosuid", "rslave", "mode=755", "size=1k", "rro"])
    assert flags == L.MS_BIND | L.MS_REC | L.MS_RDONLY | L.MS_NOSUID
    assert prop == L.MS_SLAVE | L.MS_REC
    assert data == "mode=755,size=1k"
    assert rattr == L.MOUNT_ATTR_RDONLY
    assert M.parse_options(["ro", "rw"])[0] == 0  # later options win


def test_open_in_root_keeps_symlinks_inside(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/", root / "escape")          # absolute link: resolves to the rootfs
    os.symlink("../../..", root / "etc" / "up")  # dot-dot link: clamped at the rootfs
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for path in ("/escape/newdir", "/etc/up/other"):
            fd = M.open_in_root(rootfd, path, create="dir")
            os.close(fd)
        assert (root / "newdir").is_dir() and (root / "other").is_dir()
        assert not os.path.exists(tmp_path / "other")
        fd = M.open_in_root(rootfd, "/a/b/file", create="file")
        os.close(fd)
        assert (root / "a" / "b" / "file").is_file()
        with pytest.raises(SysError):
            M.open_in_root(rootfd, "/missing")
    finally:
        os.close(rootfd)


def test_unsupported_options_are_refused_not_ignored():
    from berth.errors import ConfigError
    with pytest.raises(ConfigError, match=r'mounts\[2\].options: "idmap"'):
        M.parse_options(["ro", "idmap"], "mounts[2]")
