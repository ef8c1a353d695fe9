"""`export`: a container's filesystem as a tar stream.

The container may still run and may swap any file for a symlink while we
read. So nothing is opened by path: directories are walked through their
fds and every entry is opened relative to its directory with O_NOFOLLOW;
a symlink is written as a symlink, never followed to the host."""
import os
import stat
import tarfile

from berth.errors import BerthError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def export_rootfs(rootfs, fileobj):
    """Writes a tar of rootfs to fileobj (which need not seek)."""
    try:
        top = os.open(rootfs, _DIR_FLAGS)
    except OSError as e:
        raise BerthError(f"export: cannot open {rootfs}", errno=e.errno) from None
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        try:
            _walk(tar, top, "", {}, {os.fstat(top).st_dev})
        finally:
            os.close(top)


def _info(name, st):
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    return ti


def _walk(tar, dfd, prefix, links, devs):
    """devs: the st_dev of the filesystems to descend into (the rootfs;
    for docker cp also the container's volumes and binds)."""
    for name in sorted(os.listdir(dfd)):
        path = f"{prefix}{name}"
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we read: a running container may do that
        ti = _info(path, st)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
            tar.addfile(ti)
            if st.st_dev not in devs:
                continue  # another filesystem mounted here: not part of the container's
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError:
                continue  # turned into a symlink meanwhile: O_NOFOLLOW refused it
            try:
                _walk(tar, sub, path + "/", links, devs)
            finally:
                os.close(sub)
        elif stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(name, dir_fd=dfd)
            tar.addfile(ti)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                ti.type = tarfile.LNKTYPE
                ti.linkname = links[key]
                tar.addfile(ti)
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                ti.size = size
                tar.addfile(ti, _Exactly(f, size))
            if st.st_nlink > 1:
                links[key] = path
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            tar.addfile(ti)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
            tar.addfile(ti)
        # sockets have no tar form; Docker leaves them out too


class _Exactly:
    """Reads exactly `size` bytes: a file growing or shrinking while it is
    exported must not break the tar's framing."""

    def __init__(self, f, size):
        self.f, self.left = f, size

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data
