"""Bundle builders for the runtime tests and the start-up benchmark.

Two kinds of root filesystem: a tiny one made from Debian's busybox-static
(fast to build, enough for most scenarios) and one unpacked from the
docker-archive images in ../shared/fixtures/images. Unpacking here is
test-only code; the engine gets a real image store later.

config.json always starts from `runc spec` so both runtimes are fed the
spec runc itself considers the default.
"""
import copy
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from shared_dir import FIXTURES

HOST_BUSYBOX = "/bin/busybox"
IMAGES = FIXTURES / "images"

APPLETS = (
    "sh", "cat", "echo", "env", "false", "grep", "head", "hostname",
    "id", "kill", "ls", "mkdir", "ps", "pwd", "readlink", "sed", "sleep",
    "sort", "stat", "tail", "touch", "true", "wc", "sysctl",
    "test", "printf", "tr", "cut", "unshare", "mount",
)

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "user:x:1000:1000:user:/home/user:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = (
    "root:x:0:\n"
    "wheel:x:10:\n"
    "users:x:100:\n"
    "user:x:1000:\n"
    "nogroup:x:65534:\n"
)

DELETE = object()  # patch() value that removes the key

_base_spec = None


def base_spec():
    """A deep copy of `runc spec`'s output with terminal off.

    runc is asked once per process; every caller gets its own copy."""
    global _base_spec
    if _base_spec is None:
        with tempfile.TemporaryDirectory(prefix="berth-spec-") as d:
            subprocess.run(["runc", "spec", "--bundle", d], check=True,
                           capture_output=True)
            _base_spec = json.loads(Path(d, "config.json").read_text())
        _base_spec["process"]["terminal"] = False
    return copy.deepcopy(_base_spec)


def patch(spec, changes):
    """Apply {"dotted.path": value} changes to spec in place and return it.

    Missing intermediate objects are created; a value of DELETE removes the
    key. List items are addressed by index ("linux.namespaces.0.type")."""
    for dotted, value in (changes or {}).items():
        parts = dotted.split(".")
        node = spec
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            if value is DELETE:
                del node[int(last)]
            else:
                node[int(last)] = value
        elif value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return spec


def write_config(bundle, spec):
    Path(bundle, "config.json").write_text(json.dumps(spec, indent=2))


def read_config(bundle):
    return json.loads(Path(bundle, "config.json").read_text())


def make_busybox_rootfs(dest, applets=APPLETS):
    """A root filesystem holding only busybox, its applet links, passwd and
    group (root, user 1000, nobody) and the empty dirs the spec mounts on."""
    dest = Path(dest)
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(HOST_BUSYBOX, dest / "bin" / "busybox")
    for name in applets:
        link = dest / "bin" / name
        if not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    (dest / "etc" / "hostname").write_text("berth\n")
    return dest


def open_traversal(path, stop):
    """Let a remapped root (user namespaces) reach the bundle: pytest makes
    its temp dirs 0700, which a uid other than host root cannot cross."""
    path = Path(path).resolve()
    stop = Path(stop).resolve()
    for p in [path, *path.parents]:
        st = p.stat()
        if st.st_mode & 0o011 != 0o011:
            os.chmod(p, (st.st_mode & 0o7777) | 0o011)
        if p == stop or p == p.parent:
            break


def make_busybox_bundle(bundle, args=None, changes=None, rootfs_src=None):
    """Create bundle/ with a busybox rootfs and config.json.

    rootfs_src, if given, is a prepared rootfs copied instead of built."""
    bundle = Path(bundle)
    bundle.mkdir(parents=True, exist_ok=True)
    if rootfs_src is not None:
        copy_rootfs(rootfs_src, bundle / "rootfs")
    else:
        make_busybox_rootfs(bundle / "rootfs")
    spec = base_spec()
    if args is not None:
        spec["process"]["args"] = list(args)
    patch(spec, changes)
    write_config(bundle, spec)
    return bundle


def copy_rootfs(src, dest):
    """Copy a rootfs keeping owners, modes, links and device nodes."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # cp -a keeps hard links, xattrs and device nodes; shutil does not
    subprocess.run(["cp", "-a", "--", str(src), str(dest)], check=True)
    return dest


# ---------------------------------------------------------------- images


def image_path(name):
    """'alpine-3.20' or 'busybox-1.38' -> the archive under fixtures/images."""
    p = IMAGES / (name if name.endswith(".tar") else name + ".tar")
    if not p.exists():
        raise FileNotFoundError(f"no image archive {p}")
    return p


def image_config(archive):
    """The image's config JSON (Env, Cmd, WorkingDir ...) from the archive."""
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        return json.load(outer.extractfile(_follow(outer, manifest[0]["Config"])))


def _follow(tar, name):
    member = tar.getmember(name)
    seen = 0
    while member.issym() and seen < 8:
        target = os.path.normpath(os.path.join(os.path.dirname(member.name),
                                               member.linkname))
        member = tar.getmember(target)
        seen += 1
    return member


def unpack_image(archive, dest):
    """Apply the layers of a docker-archive in order into dest, honouring
    whiteouts (.wh.NAME deletes NAME, .wh..wh..opq empties the directory)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        for layer_name in manifest[0]["Layers"]:
            fobj = outer.extractfile(_follow(outer, layer_name))
            with tarfile.open(fileobj=fobj, mode="r:*") as layer:
                apply_layer(layer, dest)
    return dest


def _inside(root, rel):
    p = os.path.normpath(os.path.join(str(root), rel.lstrip("/")))
    if p != str(root) and not p.startswith(str(root) + os.sep):
        raise ValueError(f"layer entry {rel!r} escapes the rootfs")
    return p


def _remove(path):
    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    else:
        shutil.rmtree(path)


def apply_layer(layer, root):
    root = Path(root)
    members = []
    for m in layer:
        name = os.path.normpath(m.name).lstrip("/")
        if name in (".", ""):
            continue
        base = os.path.basename(name)
        parent = os.path.dirname(name)
        if base == ".wh..wh..opq":
            d = _inside(root, parent)
            if os.path.isdir(d):
                for child in os.listdir(d):
                    _remove(os.path.join(d, child))
            continue
        if base.startswith(".wh."):
            _remove(_inside(root, os.path.join(parent, base[4:])))
            continue
        target = _inside(root, name)
        if os.path.lexists(target) and not (m.isdir() and os.path.isdir(target)
                                            and not os.path.islink(target)):
            _remove(target)
        if m.islnk():
            _inside(root, m.linkname)
        m.name = name
        members.append(m)
    # directories last-touched keep their mtimes/modes only if set after
    # their contents, which extractall does for us
    kwargs = {"numeric_owner": True}
    if hasattr(tarfile, "fully_trusted_filter"):
        kwargs["filter"] = "fully_trusted"
    layer.extractall(str(root), members=members, **kwargs)


def make_image_bundle(bundle, rootfs_src, args=None, changes=None,
                      image=None):
    """Bundle whose rootfs is a copy of an unpacked image rootfs.

    With image (an archive path) the spec takes the image's Env and
    WorkingDir, as an engine's spec generator would."""
    bundle = Path(bundle)
    bundle.mkdir(parents=True, exist_ok=True)
    copy_rootfs(rootfs_src, bundle / "rootfs")
    spec = base_spec()
    if image is not None:
        cfg = image_config(image).get("config") or {}
        if cfg.get("Env"):
            spec["process"]["env"] = list(cfg["Env"])
        if cfg.get("WorkingDir"):
            spec["process"]["cwd"] = cfg["WorkingDir"]
        if args is None and cfg.get("Cmd"):
            args = (cfg.get("Entrypoint") or []) + cfg["Cmd"]
    if args is not None:
        spec["process"]["args"] = list(args)
    patch(spec, changes)
    write_config(bundle, spec)
    return bundle
