"""`import`: a root filesystem tarball becomes a one-layer image, as
`docker import` makes. The tarball is stored as it came (plain or gzip);
its content is only ever unpacked by the safe unpacker."""
import os
import time

from berth.engine.images import names
from berth.engine.images.archive import (MT_DOCKER_CONFIG, MT_DOCKER_MANIFEST, layer_media_kind,
                                         put_layer)
from berth.oci import jsonio

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def import_rootfs(store, fileobj, ref=None, *, config=None, message=""):
    """Returns the new image id. config: the image's runtime config
    (Cmd, Env, WorkingDir...), like `docker import --change`."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tag = str(names.parse(ref)) if ref else None  # a bad name fails before any work
    with store:
        digest, diff_id, size, kind = put_layer(store, fileobj, "imported tarball")
        cfg = {"architecture": _ARCH.get(os.uname().machine, os.uname().machine), "os": "linux",
               "created": created, "config": dict({"Env": [DEFAULT_PATH]}, **(config or {})),
               "rootfs": {"type": "layers", "diff_ids": [diff_id]},
               "history": [{"created": created, "created_by": "berth import",
                            **({"comment": message} if message else {})}]}
        cfg_bytes = jsonio.dumps(cfg).encode()
        config_digest = store.put_bytes(cfg_bytes)
        manifest = {"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
                    "config": {"mediaType": MT_DOCKER_CONFIG, "size": len(cfg_bytes),
                               "digest": config_digest},
                    "layers": [{"mediaType": layer_media_kind(kind),
                                "size": store.blob_size(digest), "digest": digest}]}
        image_id = store.add_image(config_digest, [digest], manifest, diff_sizes=[size])
        if tag:
            store.tag(image_id, tag)
    return image_id
