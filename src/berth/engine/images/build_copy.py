"""COPY and ADD of the legacy builder (build.py): sources from the
context (never out of it) or from an earlier stage or an image (resolved
inside its rootfs), a tar of them through the hardened unpacker into the
destination, itself resolved inside the image being built."""
import glob
import hashlib
import os
import posixpath
import stat
import tarfile
import time

from berth.engine.images import dockerfile as D
from berth.engine.storage.unpack import extract
from berth.errors import BerthError, ConfigError, SysError
from berth.sys import libc

_MAX_COPY = 8 << 30


class CopySteps:
    """Mixed into Build: uses its engine (e), context, store, config and
    containers, and its _env, _stage_image and _remove."""

    def _copy_digest(self, ins):
        """What a COPY or ADD copies, as a hash for its history entry and the
        cache: file:<sha256> for one file, dir: for one directory, multi:
        for several; names, modes, link targets and contents of the
        context's files, or the image a --from names."""
        h = hashlib.sha256(repr(sorted(ins.flags.items())).encode())
        env = self._env()
        sources, _ = D.source_paths(ins, env)
        if "from" in ins.flags:
            ref = D.expand(ins.flags["from"], env, ins)
            image = self._stage_image(ref) if ref else None
            if image is None:
                try:
                    image = self.store.resolve(ref)
                except BerthError:
                    image = ref  # refused by the copy itself
            h.update(f"{image} {sources}".encode())
            return "from:" + h.hexdigest()
        found = []
        for src in sources:
            if "://" in src or src.startswith("git@"):
                h.update(src.encode())
                continue
            found += self._sources(ins, src)
        for rel, real in found:
            for path in _walk(real):
                st = os.lstat(path)
                h.update(f"{rel}/{os.path.relpath(path, real)} {st.st_mode:o} "
                         f"{st.st_size}\0".encode())
                if stat.S_ISLNK(st.st_mode):
                    h.update(os.readlink(path).encode())
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        for chunk in iter(lambda: f.read(1 << 20), b""):
                            h.update(chunk)
        kind = "multi" if len(found) != 1 else ("dir" if os.path.isdir(found[0][1]) else "file")
        return f"{kind}:{h.hexdigest()}"

    def _copy_files(self, ins, root):
        if "from" not in ins.flags:
            return self._copy_found(ins, root, self._sources)
        ref = D.expand(ins.flags["from"], self._env(), ins)
        if not ref:
            raise ins.error("--from names no stage or image")
        image_id = self._stage_image(ref)
        if image_id is None:
            try:
                image_id = self.store.resolve(ref)
            except BerthError:
                raise ins.error(f"invalid from flag value {ref}: no build stage of that name "
                                "(an earlier stage's name or index) and no such image in the "
                                "store (berth's builder never pulls)") from None
        c = self.e.containers.create({
            "Image": image_id, "Cmd": ["true"], "Entrypoint": [""],
            "Labels": {"berth.build": "intermediate"}, "HostConfig": {"NetworkMode": "none"}})
        self.containers.append(c.id)
        try:
            src_root = os.path.realpath(self.e.containers.rootfs(c))
            return self._copy_found(ins, root,
                                    lambda i, src: self._image_sources(i, src, src_root))
        finally:
            self._remove(c.id)
            self.containers.remove(c.id)

    def _copy_found(self, ins, root, sources_of):
        env = self._env()
        sources, dest = D.source_paths(ins, env)
        found = []
        for src in sources:
            if "://" in src or src.startswith("git@"):
                if ins.cmd == "ADD":
                    raise ins.error(f"ADD of a URL ({src}) is refused: berth's builder never "
                                    "downloads; fetch the file into the context and COPY it")
                raise ins.error(f"source can't be a URL for COPY: {src}")
            found += sources_of(ins, src)
        if not dest:
            raise ins.error("the destination is empty")
        many = len(found) > 1 or any(any(ch in s for ch in "*?[") for s in sources)
        if not dest.startswith("/"):
            dest = posixpath.join(self.config.get("WorkingDir") or "/", dest)
        as_dir = dest.endswith("/") or dest.endswith("/.") or many
        if many and not (dest.endswith("/") or _is_dir_in(root, dest)):
            raise ins.error(f"When using {ins.cmd} with more than one source file, the "
                            "destination must be a directory and end with a /")
        dest = posixpath.normpath(dest)
        uid, gid = self._chown(ins, root)
        mode = None
        if "chmod" in ins.flags:
            try:
                mode = int(ins.flags["chmod"], 8)
            except ValueError:
                raise ins.error(f"--chmod: {ins.flags['chmod']!r} is not an octal mode") from None

        def own(ti):
            ti.uid, ti.gid, ti.uname, ti.gname = uid, gid, "", ""
            if mode is not None and not ti.issym():
                ti.mode = mode
            return ti

        if len(found) == 1 and not os.path.isdir(found[0][1]) and not as_dir \
                and not _is_dir_in(root, dest):
            dest_dir, single = posixpath.dirname(dest) or "/", posixpath.basename(dest)
        else:
            dest_dir, single = dest, None
        tmp = os.path.join(os.path.dirname(self.context), f"copy-{time.time_ns()}.tar")
        try:
            with open(tmp, "w+b") as f:
                with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for rel, real in found:
                        if os.path.isdir(real):
                            for child in sorted(os.listdir(real)):
                                tar.add(os.path.join(real, child), arcname=child, filter=own)
                        else:
                            tar.add(real, arcname=single or posixpath.basename(rel),
                                    filter=own, recursive=False)
                f.seek(0)
                fd = _mkdirs(root, dest_dir, uid, gid)
                try:
                    target = os.readlink(f"/proc/self/fd/{fd}")
                    if not (target == root or target.startswith(root.rstrip("/") + "/")):
                        raise ins.error(f"{dest_dir} resolves outside the image")
                    extract(f, target, rootless=self.e.config.rootless, max_bytes=_MAX_COPY)
                finally:
                    os.close(fd)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def _sources(self, ins, src):
        """A source -> [(its path in the context, its real path)]."""
        if src.startswith("/"):
            raise ins.error(f"forbidden path outside the build context: {src} (a source is "
                            "a path inside the context, not an absolute path)")
        rel = posixpath.normpath(src)
        if rel == ".." or rel.startswith("../"):
            raise ins.error(f"forbidden path outside the build context: {src}")
        if any(ch in rel for ch in "*?["):
            rels = sorted(glob.glob(rel, root_dir=self.context, include_hidden=True))
            if not rels:
                raise ins.error(f"no source files were specified: {src} matches nothing")
        else:
            rels = [rel]
        out = []
        for r in rels:
            path = os.path.join(self.context, r)
            if not os.path.lexists(path):
                raise ins.error(f"file not found in build context or excluded by "
                                f".dockerignore: stat {src}: file does not exist")
            real = os.path.realpath(path)
            if real != self.context and not real.startswith(self.context + "/"):
                raise ins.error(f"forbidden path outside the build context: {src} "
                                "(a symlink leads out of it)")
            out.append((r if r != "." else "", real))
        return out

    def _image_sources(self, ins, src, src_root):
        """A COPY --from source -> [(its path in the image, its real path)],
        each resolved inside the image's rootfs (symlinks and .. stay in it)."""
        rel = posixpath.normpath("/" + src).lstrip("/")
        if any(ch in rel for ch in "*?["):
            rels = sorted(glob.glob(rel, root_dir=src_root, include_hidden=True))
            if not rels:
                raise ins.error(f"no source files were specified: {src} matches nothing")
        else:
            rels = [rel]
        out = []
        top = os.open(src_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for r in rels:
                try:
                    fd = libc.openat2(top, r or ".", os.O_PATH | os.O_CLOEXEC,
                                      libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS)
                except BerthError:
                    raise ins.error(f"file not found in the --from image: stat {src}: file "
                                    "does not exist") from None
                try:
                    real = os.readlink(f"/proc/self/fd/{fd}")
                finally:
                    os.close(fd)
                if real != src_root and not real.startswith(src_root.rstrip("/") + "/"):
                    raise ins.error(f"{src} resolves outside the --from image")
                out.append((r, real))
        finally:
            os.close(top)
        return out

    def _chown(self, ins, root):
        spec = ins.flags.get("chown")
        if not spec:
            return 0, 0
        from berth.engine.specgen import process
        spec = D.expand(spec, self._env(), ins)
        group = spec.partition(":")[2]
        try:
            ids, _ = process.user(spec, root)
        except BerthError as e:
            raise ins.error(f"--chown: {e}") from None
        uid = ids["uid"]
        gid = ids["gid"] if group else uid
        return uid, gid


def _walk(top):
    """top, then everything below it (not following symlinks), sorted."""
    yield top
    if os.path.isdir(top) and not os.path.islink(top):
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(dirs + files):
                yield os.path.join(dirpath, name)


def _is_dir_in(root, path):
    top = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = libc.openat2(top, path.lstrip("/") or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                          libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS)
    except BerthError:
        return False
    finally:
        os.close(top)
    os.close(fd)
    return True


def _mkdirs(root, path, uid=0, gid=0):
    """mkdir -p of path inside root, every component resolved inside it
    (symlinks of the image stay in the image). -> an O_PATH fd of the dir."""
    import errno
    path = posixpath.normpath("/" + path).lstrip("/")
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    how = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
    top = os.open(root, flags)
    try:
        cur = ""
        for part in [p for p in path.split("/") if p]:
            nxt = f"{cur}/{part}" if cur else part
            try:
                os.close(libc.openat2(top, nxt, flags, how))
            except SysError as e:
                if e.errno != errno.ENOENT:
                    raise ConfigError(f"build: {nxt} in the image is not a directory",
                                      errno=e.errno) from None
                pfd = libc.openat2(top, cur or ".", flags, how)
                try:
                    os.mkdir(part, 0o755, dir_fd=pfd)
                    if uid or gid:
                        os.chown(part, uid, gid, dir_fd=pfd, follow_symlinks=False)
                except FileExistsError:
                    pass
                finally:
                    os.close(pfd)
            cur = nxt
        return libc.openat2(top, cur or ".", flags, how)
    finally:
        os.close(top)
