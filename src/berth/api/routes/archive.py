"""Files in and out of a container: archive (docker cp), export, changes.

Paths from the client are resolved inside the container's root with
openat2(RESOLVE_IN_ROOT): `..` and symlinks (also absolute ones planted by
the image) stay inside the rootfs. Uploads go through the same hardened
unpacker as image layers."""
import base64
import contextlib
import json
import os
import stat
import tarfile

from berth.api.errors import BadRequest, HTTPError
from berth.api.http import Response, empty, json_response, writer_stream
from berth.engine.storage import export as E
from berth.engine.storage.unpack import extract
from berth.errors import BerthError, NotFound
from berth.sys import libc, rootless

_MAX_UPLOAD = 8 << 30


def _root(engine, ref):
    c = engine.containers.get(ref)
    try:
        return c, engine.containers.rootfs(c)
    except BerthError as e:
        raise HTTPError(409, f"container {c.id[:12]}: its filesystem cannot be mounted: {e}") \
            from None


def _open_in(root, path, flags):
    if not path:
        raise BadRequest("archive: query parameter path is required")
    top = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return libc.openat2(top, path.lstrip("/") or ".", flags | os.O_CLOEXEC,
                            libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS)
    except BerthError as e:
        if getattr(e, "errno", None) == 2:
            raise NotFound(f"Could not find the file {path} in container") from None
        raise
    finally:
        os.close(top)


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
        c, root = _root(engine, req.params["id"])
        fd = _open_in(root, req.q("path"), os.O_PATH | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return Response(200, b"", content_type=None,
                        headers={"X-Docker-Container-Path-Stat": _stat_header(req.q("path"), st)})

    def get(req):
        c, root = _root(engine, req.params["id"])
        path = req.q("path")
        fd = _open_in(root, path, os.O_PATH | os.O_NOFOLLOW)
        st = os.fstat(fd)
        name = os.path.basename(os.path.normpath("/" + path)) or "."
        hdr = _stat_header(path, st)

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
                            E._walk(tar, d, name + "/", {}, st.st_dev)
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
                            info.linkname = os.readlink(os.readlink(f"/proc/self/fd/{fd}"))
                        tar.addfile(info)
            finally:
                os.close(fd)
        return Response(200, writer_stream(write), content_type="application/x-tar",
                        headers={"X-Docker-Container-Path-Stat": hdr})

    def put(req):
        c, root = _root(engine, req.params["id"])
        path = req.q("path")
        fd = _open_in(root, path, os.O_PATH | os.O_DIRECTORY)
        try:
            dest = os.readlink(f"/proc/self/fd/{fd}")
            if not (dest == root or dest.startswith(root.rstrip("/") + "/")):
                raise BadRequest(f"archive: {path} resolves outside the container")
            extract(req.stream(), dest, max_bytes=_MAX_UPLOAD)
        except BerthError as e:
            if isinstance(e, (BadRequest, NotFound)):
                raise
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
        engine.events.emit("container", "commit", c.id, engine.containers._attrs(c))
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
