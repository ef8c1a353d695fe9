"""`docker commit`: a container's changes (its overlay upper dir) become
one more layer on its image. Overlay's whiteouts (0:0 character devices)
and opaque directories (trusted.overlay.opaque) are written the way image
layers say them: `.wh.<name>` and `.wh..wh..opq`."""
import os
import stat
import tarfile
import time

from berth.engine.images import names
from berth.engine.images.archive import layer_media_kind, put_layer
from berth.oci import jsonio
from berth.sys import rootless

# the engine's own mount points, empty files in the upper dir, not changes
ENGINE_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")


def _opaque(path):
    try:
        return os.getxattr(path, rootless.opaque_xattr(), follow_symlinks=False) == b"y"
    except OSError:
        return False


def write_layer(upper, fileobj):
    """A tar of upper's changes, in the image layer format."""
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in os.walk(upper):
            dirs.sort()
            rel_top = os.path.relpath(top, upper)
            for name in dirs + sorted(files):
                full = os.path.join(top, name)
                rel = name if rel_top == "." else f"{rel_top}/{name}"
                st = os.lstat(full)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    wh = tarfile.TarInfo(os.path.join(os.path.dirname(rel), ".wh." + name))
                    tar.addfile(wh)
                    continue
                if rel in ENGINE_FILES and stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    continue
                ti = tar.gettarinfo(full, rel)
                if ti.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(ti, f)
                else:
                    tar.addfile(ti)
                if stat.S_ISDIR(st.st_mode) and _opaque(full):
                    tar.addfile(tarfile.TarInfo(f"{rel}/.wh..wh..opq"))


def commit(store, image_id, upper, container_config, *, ref=None, comment="", author="",
           container_id="", changes=None, created_by=None, intermediate=False):
    """Returns the new image id. container_config: the container's Config
    (Cmd, Env, ...), with `changes` (already parsed) on top. created_by:
    the history's words for the step (the container's command by default);
    intermediate: a build step's image (store.add_image)."""
    tag = str(names.parse(ref)) if ref else None
    base = store.config(image_id)
    rec = store.record(image_id)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with store:
        tmp = os.path.join(store.tmp_dir(), f"commit-{os.getpid()}-{time.time_ns()}.tar")
        try:
            with open(tmp, "w+b") as f:
                write_layer(upper, f)
                f.seek(0)
                digest, diff_id, size, kind = put_layer(store, f, "committed layer")
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        keep = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes",
                "Labels", "StopSignal", "Healthcheck", "OnBuild", "Shell")
        cfg = dict(base.get("config") or {})
        for k in keep:
            if k in container_config and container_config[k] is not None:
                cfg[k] = container_config[k]
        cfg.update(changes or {})
        doc = dict(base)
        # as dockerd: the container and its config, its command as the step
        doc.update({
            "created": created, "config": cfg, "container": container_id,
            "container_config": dict(container_config, Image=image_id),
            "rootfs": {"type": "layers", "diff_ids": list(rec["diff_ids"]) + [diff_id]},
            "history": list(base.get("history") or []) + [
                {"created": created, "created_by": created_by if created_by is not None
                 else _command(container_config),
                 **({"comment": comment} if comment else {}),
                 **({"author": author} if author else {})}]})
        if author:
            doc["author"] = author
        if comment:
            doc["comment"] = comment
        raw = jsonio.dumps(doc).encode()
        config_digest = store.put_bytes(raw)
        manifest = dict(rec["manifest"])
        manifest["config"] = dict(manifest["config"], size=len(raw), digest=config_digest)
        manifest["layers"] = list(manifest["layers"]) + [
            {"mediaType": layer_media_kind(kind), "size": store.blob_size(digest),
             "digest": digest}]
        sizes = list(rec.get("diff_sizes") or []) + [size]
        new_id = store.add_image(config_digest, list(rec["layers"]) + [digest], manifest,
                                 diff_sizes=sizes if len(sizes) == len(rec["layers"]) + 1 else None,
                                 parent=image_id, intermediate=intermediate)
        if tag:
            store.tag(new_id, tag)
    return new_id


def _command(config):
    cmd = config.get("Cmd") or []
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)
