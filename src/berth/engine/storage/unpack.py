"""Apply one image layer (a tar, plain, gzip or zstd) onto a directory.

A layer comes from the network, so every member name is hostile until
proven otherwise. tarfile only parses; every entry is created here with
*at() calls relative to a directory fd inside dest, and parents are opened
with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so no member can reach
a host path: not by "..", not by an absolute name, not through a symlink
unpacked earlier (symlinks are created, never followed), not through a
hardlink.

Whiteouts (OCI image spec, "Whiteouts"):
  whiteout="delete"   dest holds the lower layers (vfs): `.wh.NAME` removes
                      NAME, `.wh..wh..opq` empties its directory.
  whiteout="overlay"  dest is one overlayfs layer dir: `.wh.NAME` becomes a
                      0:0 character device, `.wh..wh..opq` sets the
                      overlay.opaque xattr ("trusted." as root, "user."
                      when rootless, for a userxattr mount).
In both modes a whiteout only hides lower content: entries unpacked earlier
in the same layer are kept, as the spec requires.

Size limits: max_bytes caps the sum of the sizes the members declare, checked
before any data is written (so a 10 GB sparse header costs nothing), and the
decompressed stream as a whole (a gzip or zstd bomb stops after max_bytes
plus room for headers). max_entries caps the member count.
"""
import errno
import os
import shutil
import stat
import tarfile
import zlib

from berth.engine.storage import compression
from berth.errors import BerthError, SysError
from berth.sys import libc

_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)
_WH = ".wh."
_OPAQUE = ".wh..wh..opq"
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_SAFE = libc.RESOLVE_BENEATH | libc.RESOLVE_NO_SYMLINKS | libc.RESOLVE_NO_MAGICLINKS
# room for tar headers, pax records and padding on top of max_bytes
_HEADER_SLACK = 64 << 20


class _TooBig(Exception):
    pass


class _Head:
    """The first bytes were read to sniff the compression; hand them back."""

    def __init__(self, raw, head):
        self.raw = raw
        self.head = head

    def read(self, n=-1):
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.raw.read(n - len(data))
            return data
        return self.raw.read(n)


class _Bounded:
    """Counts the decompressed stream and stops it at a limit, before the
    bytes past it are produced."""

    def __init__(self, raw, limit):
        self.raw = raw
        self.limit = limit
        self.count = 0

    def read(self, n=-1):
        if self.limit is not None:
            room = self.limit - self.count
            if n is None or n < 0 or n > room:
                n = room + 1
        data = self.raw.read(n)
        self.count += len(data)
        if self.limit is not None and self.count > self.limit:
            raise _TooBig()
        return data


def _open_stream(fileobj, limit):
    head = b""
    while len(head) < 4:
        more = fileobj.read(4 - len(head))
        if not more:
            break
        head += more
    raw = _Head(fileobj, head)
    kind = compression.kind_of(head)
    if kind == "gzip":
        import gzip
        raw = gzip.GzipFile(fileobj=raw, mode="rb")
    elif kind == "zstd":
        raw = compression.ZstdReader(raw, "layer")
    return _Bounded(raw, limit)


def _split(name, what, member=None):
    """Member name (or hardlink target) -> list of components, refusing
    anything that is not a plain relative path."""
    who = f"layer member {name!r}"
    if member is not None:
        who = f"layer member {member!r}: {what} {name!r}"
    if name.startswith("/"):
        raise BerthError(f"{who}: absolute path refused")
    if "\0" in name:
        raise BerthError(f"{who}: nul byte refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BerthError(f"{who}: '..' component refused")
    return parts


class _Unpacker:
    def __init__(self, root_fd, dest, rootless, whiteout, allow_devices):
        self.root_fd = root_fd
        self.dest = dest
        self.rootless = rootless
        self.whiteout = whiteout
        self.allow_devices = allow_devices
        self.created = set()      # "a/b" paths made by this layer
        self.linkable = set()     # regular files and symlinks of this layer
        self.dirs = []            # (parts, member): mode and mtime set at the end

    # -- resolution, never leaving dest and never following a symlink

    def _dir(self, parts, name, create, missing_ok=False):
        """An O_PATH fd of directory parts inside dest (made if create), or
        None when it does not exist and missing_ok."""
        if not parts:
            return os.dup(self.root_fd)
        try:
            return libc.openat2(self.root_fd, "/".join(parts), _DIR_FLAGS, _SAFE)
        except SysError as e:
            if e.errno == errno.ENOENT and missing_ok:
                return None
            if e.errno != errno.ENOENT or not create:
                self._refuse_path(parts, name, e.errno)
        fd = os.dup(self.root_fd)
        try:
            for i, comp in enumerate(parts):
                try:
                    nfd = libc.openat2(fd, comp, _DIR_FLAGS, _SAFE)
                except SysError as e:
                    if e.errno != errno.ENOENT:
                        self._refuse_path(parts[:i + 1], name, e.errno)
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    nfd = libc.openat2(fd, comp, _DIR_FLAGS, _SAFE)
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _refuse_path(self, parts, name, err):
        where = "/".join(parts)
        if err == errno.ELOOP:
            raise BerthError(f"layer member {name!r}: parent {where!r} is a symlink; "
                             "refusing to write through it")
        if err == errno.ENOTDIR:
            raise BerthError(f"layer member {name!r}: parent {where!r} is not a directory")
        if err == errno.EXDEV:
            raise BerthError(f"layer member {name!r}: path escapes the layer root")
        raise SysError(f"layer member {name!r}: open parent {where!r}", errno=err)

    def _lstat(self, pfd, leaf):
        try:
            return os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _remove(self, pfd, leaf, st=None):
        st = st or self._lstat(pfd, leaf)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(leaf, dir_fd=pfd)
        else:
            os.unlink(leaf, dir_fd=pfd)

    # -- whiteouts

    def _whiteout(self, m, parts):
        leaf = parts[-1]
        parent = parts[:-1]
        if leaf == _OPAQUE:
            return self._opaque(m, parent)
        target = leaf[len(_WH):]
        if target in ("", ".", "..") or "/" in target:
            raise BerthError(f"layer member {m.name!r}: whiteout of the layer root "
                             "or of an invalid name refused")
        rel = "/".join(parent + [target])
        if rel in self.created:
            return
        overlay = self.whiteout == "overlay"
        pfd = self._dir(parent, m.name, create=overlay, missing_ok=not overlay)
        if pfd is None:
            return   # nothing below to hide
        try:
            if self.whiteout == "delete":
                self._remove(pfd, target)
                return
            self._remove(pfd, target)
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
            self.created.add(rel)
        finally:
            os.close(pfd)

    def _opaque(self, m, parent):
        prefix = "/".join(parent)
        if self.whiteout == "overlay":
            pfd = self._dir(parent, m.name, create=True)
            try:
                fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
            finally:
                os.close(pfd)
            try:
                ns = "user" if self.rootless else "trusted"
                os.setxattr(fd, f"{ns}.overlay.opaque", b"y")
            finally:
                os.close(fd)
            return
        pfd = self._dir(parent, m.name, create=False, missing_ok=True)
        if pfd is None:
            return
        try:
            rfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
            try:
                children = os.listdir(rfd)
            finally:
                os.close(rfd)
            for child in children:
                rel = f"{prefix}/{child}" if prefix else child
                if rel not in self.created:
                    self._remove(pfd, child)
        finally:
            os.close(pfd)

    # -- entries

    def _meta(self, m, fd=None, pfd=None, leaf=None, chmod=True):
        mode = stat.S_IMODE(m.mode)
        if self.rootless:
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        try:
            if fd is not None:
                os.fchown(fd, m.uid, m.gid)
            else:
                os.chown(leaf, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        except OSError as e:
            raise SysError(f"layer member {m.name!r}: chown {m.uid}:{m.gid}", errno=e.errno,
                           hint="the user namespace may map too few ids"
                           if self.rootless else None) from None
        # after chown, which clears setuid bits
        if chmod:
            if fd is not None:
                os.fchmod(fd, mode)
            else:
                # pfd/leaf was just created by us as a non-symlink
                os.chmod(leaf, mode, dir_fd=pfd)
        if fd is not None:
            self._xattrs(m, fd)

    def _xattrs(self, m, fd):
        for key, value in (m.pax_headers or {}).items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr."):]
            if attr.startswith(("trusted.overlay.", "user.overlay.")):
                continue  # overlayfs' own (redirect, origin...) are never a layer's to set
            try:
                os.setxattr(fd, attr,
                            value.encode("utf-8", "surrogateescape"))
            except OSError:
                pass  # best effort: xattrs the host fs or namespace refuses

    def _times(self, m, fd=None, pfd=None, leaf=None):
        try:
            ns = int(m.mtime * 1_000_000_000)
            if fd is not None:
                os.utime(fd, ns=(ns, ns))
            else:
                os.utime(leaf, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
        except (OverflowError, ValueError):
            pass  # a time the filesystem cannot hold keeps the time of unpacking

    def entry(self, tar, m, parts):
        name = m.name
        rel = "/".join(parts)
        leaf = parts[-1]
        if m.uid < 0 or m.gid < 0:
            raise BerthError(f"layer member {name!r}: negative owner {m.uid}:{m.gid} refused")
        if (m.ischr() or m.isblk()) and self.rootless:
            raise BerthError(f"layer member {name!r}: device node refused in rootless mode")
        if m.isblk() and not self.allow_devices:
            raise BerthError(f"layer member {name!r}: block device refused",
                             hint="pass allow_devices=True to unpack device nodes")
        if m.islnk():
            tparts = _split(m.linkname, "hardlink target", m.name)
            trel = "/".join(tparts)
            if not tparts or trel not in self.linkable:
                raise BerthError(f"layer member {name!r}: hardlink target {m.linkname!r} "
                                 "is not a file unpacked earlier in this layer")
        pfd = self._dir(parts[:-1], name, create=True)
        try:
            st = self._lstat(pfd, leaf)
            if st is not None:
                if m.isdir() and stat.S_ISDIR(st.st_mode):
                    st = "keep"
                else:
                    self._remove(pfd, leaf, st)
            written = 0
            if m.isdir():
                if st != "keep":
                    os.mkdir(leaf, 0o755, dir_fd=pfd)
                fd = libc.openat2(pfd, leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                                  _SAFE)
                try:
                    self._meta(m, fd=fd, chmod=False)
                finally:
                    os.close(fd)
                self.dirs.append((parts, m))
            elif m.isreg():
                written = self._file(tar, m, pfd, leaf)
                self.linkable.add(rel)
            elif m.issym():
                os.symlink(m.linkname, leaf, dir_fd=pfd)
                self._meta(m, pfd=pfd, leaf=leaf, chmod=False)
                self._times(m, pfd=pfd, leaf=leaf)
                self.linkable.add(rel)
            elif m.islnk():
                tparts = _split(m.linkname, "hardlink target", m.name)
                tfd = self._dir(tparts[:-1], name, create=False)
                try:
                    os.link(tparts[-1], leaf, src_dir_fd=tfd, dst_dir_fd=pfd,
                            follow_symlinks=False)
                finally:
                    os.close(tfd)
                self.linkable.add(rel)
            elif m.ischr() or m.isblk() or m.isfifo():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
                dev = os.makedev(m.devmajor, m.devminor) if m.isdev() and not m.isfifo() else 0
                os.mknod(leaf, kind | 0o600, dev, dir_fd=pfd)
                self._meta(m, pfd=pfd, leaf=leaf)
                self._times(m, pfd=pfd, leaf=leaf)
            else:
                raise BerthError(f"layer member {name!r}: unsupported tar entry type {m.type!r}")
            self.created.add(rel)
            return written
        finally:
            os.close(pfd)

    def _file(self, tar, m, pfd, leaf):
        fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        try:
            src = tar.extractfile(m)
            left = m.size
            while left > 0:
                chunk = src.read(min(_CHUNK, left))
                if not chunk:
                    raise tarfile.ReadError("unexpected end of data")
                left -= len(chunk)
                # runs of zeros become holes: sparse files stay sparse
                if chunk == (_ZEROS if len(chunk) == _CHUNK else _ZEROS[:len(chunk)]):
                    os.lseek(fd, len(chunk), os.SEEK_CUR)
                else:
                    os.write(fd, chunk)
            os.ftruncate(fd, m.size)
            self._meta(m, fd=fd)
            self._times(m, fd=fd)
        finally:
            os.close(fd)
        return m.size

    def finish_dirs(self):
        # deepest first, after every child is in place, so mtimes stick
        # and a read-only directory does not block its own children
        for parts, m in reversed(self.dirs):
            try:
                fd = libc.openat2(self.root_fd, "/".join(parts) or ".",
                                  os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, _SAFE)
            except SysError:
                continue  # removed by a later whiteout or replaced by a file
            try:
                mode = stat.S_IMODE(m.mode)
                if self.rootless:
                    mode &= ~(stat.S_ISUID | stat.S_ISGID)
                os.fchmod(fd, mode)
                self._times(m, fd=fd)
            finally:
                os.close(fd)


def extract(fileobj, dest, *, rootless=False, max_bytes=None, max_entries=None,
            whiteout="delete", allow_devices=False):
    """Apply the layer tar (plain, gzip or zstd) read from fileobj onto directory
    dest; returns the uncompressed bytes of file content written.

    rootless: device nodes refused, setuid/setgid dropped, opaque xattr in
    the user. namespace. whiteout: "delete" (dest holds the lower layers) or
    "overlay" (dest is one overlayfs layer dir). allow_devices: also create
    block devices (character devices need only rootless=False). Pass
    max_bytes for anything from the network: without it the stream is
    unbounded. Raises BerthError naming the member for anything unsafe or
    malformed; what was unpacked before the refusal stays in dest (the
    caller discards the layer dir)."""
    if whiteout not in ("delete", "overlay"):
        raise BerthError(f"extract: whiteout must be 'delete' or 'overlay', not {whiteout!r}")
    limit = None
    if max_bytes is not None:
        limit = max_bytes + max(_HEADER_SLACK, 4096 * (max_entries or 0))
    root_fd = os.open(dest, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    total = 0
    count = 0
    current = None
    try:
        stream = _open_stream(fileobj, limit)
        u = _Unpacker(root_fd, dest, rootless, whiteout, allow_devices)
        try:
            tar = tarfile.open(fileobj=stream, mode="r|")
            for m in tar:
                current = m.name
                count += 1
                if max_entries is not None and count > max_entries:
                    raise BerthError(f"layer member {m.name!r}: more than {max_entries} entries")
                parts = _split(m.name, "name")
                if not parts:
                    continue  # the root itself: dest keeps its own owner and mode
                if m.isreg():
                    if max_bytes is not None and total + m.size > max_bytes:
                        raise BerthError(f"layer member {m.name!r}: declares {m.size} bytes; "
                                         f"layer exceeds the {max_bytes}-byte limit")
                if parts[-1].startswith(_WH):
                    u._whiteout(m, parts)
                    continue
                total += u.entry(tar, m, parts)
            _check_end(stream, tar)
        except _TooBig:
            raise BerthError(f"layer exceeds the {max_bytes}-byte limit after member "
                             f"{current!r} (decompressed stream too large)") from None
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise BerthError(f"truncated layer {_at(current)}: {e}") from None
        except BerthError:
            raise
        except (OverflowError, ValueError) as e:
            # ids, device numbers or names the kernel interface cannot take
            raise BerthError(f"layer member {current!r}: {e}") from None
        except OSError as e:
            if type(e).__name__ == "BadGzipFile":
                raise BerthError(f"truncated layer {_at(current)}: {e}") from None
            what = f"layer member {current!r}"
            if e.errno is None:
                what = f"{what}: {e}"
            raise SysError(what, errno=e.errno) from None
        u.finish_dirs()
    finally:
        os.close(root_fd)
    return total


def _at(current):
    return f"at member {current!r}" if current is not None else "before the first member"


def _check_end(stream, tar):
    """tarfile ends quietly on a header cut short; a well-formed layer ends
    on a block boundary (with or without the zero blocks)."""
    while stream.read(_CHUNK):
        pass
    if stream.count > tar.offset and stream.count - tar.offset < tarfile.BLOCKSIZE:
        raise tarfile.ReadError("archive ends inside a header")
