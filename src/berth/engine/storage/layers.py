"""From an image in the store to a container's root filesystem.

Each layer is unpacked once into the snapshot driver, under its OCI chain
id (a layer's content depends on every layer below it), and shared by every
container of every image built on it: creating a container copies nothing
with the overlay driver. The blob's digest is checked again as it is
unpacked, so a blob altered on disk after it was loaded is refused."""
import hashlib
import threading

from berth.errors import BerthError
from berth.engine.storage.unpack import extract

# a layer may not unpack to more than this unless the caller says otherwise
DEFAULT_MAX_BYTES = 64 << 30


def chain_ids(diff_ids):
    """OCI image spec: ChainID(L0) = DiffID(L0), ChainID(Ln) =
    sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


class _Hashing:
    """A read-only file wrapper hashing what passes through."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()

    def read(self, n=-1):
        data = self.f.read(n)
        self.h.update(data)
        return data

    def drain(self):
        while self.read(1 << 20):
            pass
        return "sha256:" + self.h.hexdigest()


_locks = {}
_locks_guard = threading.Lock()


def _layer_lock(driver, chain):
    """One unpacker per layer: containers created at once from a freshly
    loaded image (docker-compose up) must not unpack it twice into one dir."""
    key = (id(driver), chain)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def ensure_layers(store, driver, image_id, *, max_bytes=DEFAULT_MAX_BYTES):
    """Unpacks whatever layers of the image the driver lacks; returns the
    chain ids, bottom layer first."""
    rec = store.record(image_id)
    diff_ids = store.config(image_id)["rootfs"]["diff_ids"]
    chains = chain_ids(diff_ids)
    for i, (blob, chain) in enumerate(zip(rec["layers"], chains)):
        if driver.has_layer(chain):
            continue
        with _layer_lock(driver, chain):
            if not driver.has_layer(chain):
                _unpack_one(store, driver, image_id, blob, chain, chains[:i], max_bytes)
    return chains


def _unpack_one(store, driver, image_id, blob, chain, parents, max_bytes):
    path = driver.prepare_layer(chain, parents)
    try:
        with store.open_blob(blob) as raw:
            f = _Hashing(raw)
            extract(f, path, whiteout=driver.whiteout, max_bytes=max_bytes,
                    rootless=driver.rootless)
            got = f.drain()
        if got != blob:
            raise BerthError(f"layer {blob} of image {image_id}: content on disk is {got}",
                             hint="the store was altered; remove the image and load it again")
    except BaseException:
        driver.abort_layer(chain)
        raise
    driver.commit_layer(chain)


def container_rootfs(store, driver, image_id, container_id, idmap=None, **kw):
    """Mounts (overlay) or copies (vfs) the image's layers for one
    container; returns the rootfs path. driver.unmount / remove_container
    undo it. idmap (uid, gid, size): the container has its own user
    namespace mapping 0 to uid/gid."""
    chains = ensure_layers(store, driver, image_id, **kw)
    if idmap:
        return driver.mount(container_id, chains, idmap=idmap)
    return driver.mount(container_id, chains)
