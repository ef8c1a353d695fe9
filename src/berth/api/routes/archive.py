"""Files in and out of a container: archive (docker cp), export, changes.

docker cp works on the container's filesystem as its processes see it,
volumes and binds included, also when it is not running (fsview). Paths
from the client are resolved inside it with openat2(RESOLVE_IN_ROOT): `..`
and symlinks (also absolute ones planted by the image) stay inside.
Uploads go through the same hardened unpacker as image layers."""
import base64
import contextlib
import errno
import json
import os
import stat
import tarfile

from berth.api.errors import BadRequest, HTTPError
from berth.api.http import Response, empty, json_response, writer_stream
from berth.engine.containers import fsview
from berth.engine.storage import export as E
from berth.engine.storage.unpack import extract
from berth.errors import BerthError, Conflict, NotFound
from berth.sys import rootless

_MAX_UPLOAD = 8 << 30


def _root(engine, ref):
    c = engine.containers.get(ref)
    try:
        return c, engine.containers.rootfs(c)
    except BerthError as e:
        raise HTTPError(409, f"container {c.id[:12]}: its filesystem cannot be mounted: {e}") \
            from None


def _view(engine, ref):
    c = engine.containers.get(ref)
    return c, fsview.open_view(engine.containers, c)


def _open_in(view, ref, path, flags):
    if not path:
        raise BadRequest("archive: query parameter path is required")
    try:
        return view.open(path, flags)
    except BerthError as e:
        if getattr(e, "errno", None) in (errno.ENOENT, errno.ENOTDIR):
            # Docker's wording: the CLI and scripts look for it
            raise NotFound(f"Could not find the file {path} in container {ref}") from None
        raise


def _member_name(path):
    """The top member's name as dockerd names it (Go's filepath.Base of
    the path as given): "/" for the root, "." for "dir/.", else the last
    element. The docker CLI renames members by it."""
    if not path.strip("/"):
        return "/"
    if path.rstrip("/").endswith("/.") or path.rstrip("/") == ".":
        return "."
    return os.path.basename(os.path.normpath("/" + path.lstrip("/")))


def _devices(view):
    """st_dev of the rootfs and of every volume, bind and tmpfs in the
    view: a directory copy descends into these, never into /proc, /sys or
    /dev of a running container."""
    devs = {os.fstat(view.fd).st_dev}
    for dest, _kind, _rw in view.mounts:
        try:
            fd = view.open(dest, os.O_PATH | os.O_NOFOLLOW)
        except BerthError:
            continue
        try:
            devs.add(os.fstat(fd).st_dev)
        finally:
            os.close(fd)
    return devs


def _check_writable(view, c, path):
    """Docker's refusals before a single byte is written; the kernel
    catches what a symlink hides from this lexical check (EROFS)."""
    m = view.mount_at(path)
    if m is None:
        if view.readonly_root:
            raise BerthError("container rootfs is marked read-only")
        return
    if m[1] == "tmpfs" and not view.running:
        raise Conflict(f"{m[0]} is a tmpfs mount of container {c.name.lstrip('/')}, which is "
                       "not running: a tmpfs exists only while its container runs",
                       hint="start the container first, or copy into a volume")
    if not m[2]:
        raise BerthError("mounted volume is marked read-only")


def _readonly_message(view, path):
    m = view.mount_at(path)
    if m is None:
        return "container rootfs is marked read-only"
    return "mounted volume is marked read-only"


def _go_mode(st):
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        mode |= 1 << 31
    elif stat.S_ISLNK(st.st_mode):
        mode |= 1 << 27
    return mode


def _stat_header(path, st, link=""):
    doc = {"name": os.path.basename(path.rstrip("/")) or "/", "size": st.st_size,
           "mode": _go_mode(st), "mtime": _rfc(st.st_mtime), "linkTarget": link}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def _rfc(t):
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def register(router, engine):
    def head(req):
        c, view = _view(engine, req.params["id"])
        with view:
            fd = _open_in(view, req.params["id"], req.q("path"), os.O_PATH | os.O_NOFOLLOW)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
        return Response(200, b"", content_type=None,
                        headers={"X-Docker-Container-Path-Stat": _stat_header(req.q("path"), st)})

    def get(req):
        c, view = _view(engine, req.params["id"])
        path = req.q("path")
        try:
            fd = _open_in(view, req.params["id"], path, os.O_PATH | os.O_NOFOLLOW)
            devs = _devices(view)
        except BaseException:
            view.close()
            raise
        st = os.fstat(fd)
        name = _member_name(path)
        hdr = _stat_header(path, st)
        engine.events.emit("container", "archive-path", c.id, engine.containers._attrs(c))

        def write(f):
            try:
                with tarfile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    if stat.S_ISDIR(st.st_mode):
                        d = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECTORY |
                                    os.O_CLOEXEC)
                        try:
                            info = E._info(name, st)
                            info.type = tarfile.DIRTYPE
                            tar.addfile(info)
                            E._walk(tar, d, name.rstrip("/") + "/", {}, devs)
                        finally:
                            os.close(d)
                    elif stat.S_ISREG(st.st_mode):
                        with open(f"/proc/self/fd/{fd}", "rb") as src:
                            info = E._info(name, st)
                            info.size = st.st_size
                            tar.addfile(info, E._Exactly(src, st.st_size))
                    else:
                        info = E._info(name, st)
                        if stat.S_ISLNK(st.st_mode):
                            info.type = tarfile.SYMTYPE
                            info.linkname = os.readlink("", dir_fd=fd)
                        tar.addfile(info)
            finally:
                os.close(fd)
                view.close()
        return Response(200, writer_stream(write), content_type="application/x-tar",
                        headers={"X-Docker-Container-Path-Stat": hdr})

    def put(req):
        ref = req.params["id"]
        c, view = _view(engine, ref)
        path = req.q("path")
        with view:
            fd = _open_in(view, ref, path, os.O_PATH)
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    raise BadRequest("extraction point is not a directory")
                _check_writable(view, c, path)
            except BaseException:
                os.close(fd)
                raise
            try:
                extract(req.stream(), f"/proc/self/fd/{fd}", max_bytes=_MAX_UPLOAD)
            except BerthError as e:
                if isinstance(e, (HTTPError, NotFound)):
                    raise
                if getattr(e, "errno", None) == errno.EROFS:
                    raise BerthError(_readonly_message(view, path)) from None
                raise BadRequest(f"archive upload to {path}: {e}") from None
            finally:
                os.close(fd)
        engine.events.emit("container", "extract-to-dir", c.id,
                           engine.containers._attrs(c))
        return empty(200)

    def export(req):
        c, root = _root(engine, req.params["id"])
        engine.events.emit("container", "export", c.id, engine.containers._attrs(c))
        return Response(200, writer_stream(lambda f: E.export_rootfs(root, f)),
                        content_type="application/x-tar")

    def changes(req):
        c, root = _root(engine, req.params["id"])
        upper = c.data.get("GraphDriver", {}).get("Data", {}).get("UpperDir")
        if not upper:
            raise HTTPError(501, "changes: only the overlay driver tracks changes")
        rec = engine.driver._read_record(c.id) or {}
        lowers = [engine.driver.layer_path(lid) for lid in rec.get("layers", [])]
        return json_response(_changes(upper, lowers, c.data.get("Mounts") or []) or None)

    def commit(req):
        from berth.api.routes.images import _changes
        from berth.engine.images import commit as C
        c = engine.containers.get(req.q("container") or "")
        upper = c.data.get("GraphDriver", {}).get("Data", {}).get("UpperDir")
        if not upper:
            raise HTTPError(501, "commit: only the overlay driver keeps a container's changes apart")
        body = req.json(default={})
        cfg = dict(c.config)
        cfg.update({k: v for k, v in body.items() if v not in (None, "", [], {})})
        repo, tag = req.q("repo") or "", req.q("tag") or ""
        ref = (f"{repo}:{tag}" if tag else repo) if repo else None
        pause = req.qbool("pause", True) and c.running and not c.state["Paused"]
        # a container that exits meanwhile is committed as it is
        with engine.containers.paused(c.id) if pause else contextlib.nullcontext():
            image_id = C.commit(engine.store, c.image_id, upper, cfg, ref=ref,
                                comment=req.q("comment") or "", author=req.q("author") or "",
                                container_id=c.id,
                                changes=_changes(req.query.get("changes", [])))
            # dockerd's events, before the unpause
            shown = ""
            if ref:
                from berth.engine.images import names
                shown = names.parse(ref).familiar()
                engine.events.emit("image", "tag", image_id, {"name": shown})
            engine.events.emit("container", "commit", c.id,
                               dict(engine.containers._attrs(c), comment=req.q("comment") or "",
                                    imageID=image_id, imageRef=shown))
        return json_response({"Id": image_id}, 201)

    router.add("POST", "/commit", commit)
    router.add("HEAD", "/containers/{id}/archive", head)
    router.add("GET", "/containers/{id}/archive", get)
    router.add("PUT", "/containers/{id}/archive", put)
    router.add("GET", "/containers/{id}/export", export)
    router.add("GET", "/containers/{id}/changes", changes)


def _changes(upper, lowers, mounts):
    """Kind 0 modified, 1 added, 2 deleted; an overlay whiteout (0:0 char
    device) is a deletion, a directory that exists below is a change."""
    # what the engine and the runtime make (dockerd keeps them in its -init
    # layer, so they never show) and mount points
    skip = set(ENGINE_MADE) | {m.get("Destination") for m in mounts}
    out = []
    for top, dirs, files in os.walk(upper):
        rel_top = "/" + os.path.relpath(top, upper).lstrip(".")
        rel_top = "" if rel_top == "/" else rel_top.rstrip("/")
        for name in sorted(dirs) + sorted(files):
            full = os.path.join(top, name)
            path = f"{rel_top}/{name}"
            if path in skip:
                continue
            st = os.lstat(full)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append({"Path": path, "Kind": 2})
                continue
            try:
                opaque = os.getxattr(full, rootless.opaque_xattr(), follow_symlinks=False)
            except OSError:
                opaque = b""
            below = any(os.path.lexists(os.path.join(lo, path.lstrip("/"))) for lo in lowers)
            kind = 0 if below and opaque != b"y" else 1
            out.append({"Path": path, "Kind": kind})
    # a directory that only changed because the engine made something in it
    made = set()
    for p in filter(None, skip):
        while p not in ("/", ""):
            p = os.path.dirname(p)
            made.add(p)
    shown = {e["Path"] for e in out}
    out = [e for e in out if not (e["Kind"] == 0 and e["Path"] in made
                                  and not any(p.startswith(e["Path"] + "/") for p in shown))]
    out.sort(key=lambda e: e["Path"])
    return out


ENGINE_MADE = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/mtab", "/proc", "/sys",
               "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console", "/.dockerenv")
