"""The two rootfs tarballs runc's suite downloads, made without a download.

busybox: the layers of a docker-archive fixture flattened into one rootfs
tar (whiteouts applied). debian: the little hooks.bats needs of a Debian
rootfs (a shell, grep and ldconfig) from the host's own Debian binaries:
busybox-static and libc-bin's static ldconfig.

Usage: images.py busybox ARCHIVE OUT.tar.xz | images.py debian - OUT.tar.xz
"""
import io
import json
import os
import sys
import tarfile

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def _norm(name):
    return os.path.normpath(name.lstrip("./") or ".")


def _flatten(archive):
    """Path -> (TarInfo, bytes or None), the layers applied in order."""
    tree = {}
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as tar:
                for member in tar:
                    path = _norm(member.name)
                    base = os.path.basename(path)
                    parent = os.path.dirname(path)
                    if base == OPAQUE:
                        for p in [p for p in tree if p.startswith(parent + "/")]:
                            del tree[p]
                        continue
                    if base.startswith(WHITEOUT):
                        gone = os.path.join(parent, base[len(WHITEOUT):])
                        for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                            del tree[p]
                        continue
                    data = tar.extractfile(member).read() if member.isreg() else None
                    member.name = path
                    tree[path] = (member, data)
    return tree


def _host_debian():
    tree = {}

    def add(info, data=None):
        tree[info.name] = (info, data)

    for d in ("bin", "sbin", "lib", "etc", "tmp", "proc", "sys", "dev", "root"):
        info = tarfile.TarInfo(d)
        info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
        add(info)
    for src, dst in (("/bin/busybox", "bin/busybox"), ("/sbin/ldconfig", "sbin/ldconfig")):
        with open(src, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo(dst)
        info.size, info.mode = len(data), 0o755
        add(info, data)
    for tool in ("sh", "grep", "cat", "ls"):
        info = tarfile.TarInfo("bin/" + tool)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
        add(info)
    conf = b"/lib\n"
    info = tarfile.TarInfo("etc/ld.so.conf")
    info.size, info.mode = len(conf), 0o644
    add(info, conf)
    return tree


def main(argv):
    kind, archive, out = argv
    tree = _flatten(archive) if kind == "busybox" else _host_debian()
    tmp = out + ".tmp"
    with tarfile.open(tmp, "w:xz") as tar:
        for path in tree:
            if path == ".":
                continue
            info, data = tree[path]
            info.name = "./" + path
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    os.rename(tmp, out)


if __name__ == "__main__":
    main(sys.argv[1:])
