"""OCI image layout directories (what skopeo `oci:` and umoci use).

  oci-layout     {"imageLayoutVersion": "1.0.0"}
  index.json     image index; each manifest named by annotations
  blobs/sha256/  manifests, configs, layers

Export writes OCI media types; import also takes Docker v2 schema2
manifests and manifest lists. Every blob read is checked against the
digest and size its descriptor gives before the image is added."""
import hashlib
import os
import platform

from berth.engine.images import names
from berth.engine.images.archive import put_layer, DEFAULT_MAX_BYTES
from berth.engine.images.store import check_digest
from berth.engine.storage import compression
from berth.errors import BerthError, NotFound
from berth.oci import jsonio

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFESTS = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
INDEXES = (MT_OCI_INDEX, MT_DOCKER_LIST)
LAYERS = {
    MT_OCI_LAYER: MT_OCI_LAYER,
    MT_OCI_LAYER_GZIP: MT_OCI_LAYER_GZIP,
    MT_OCI_LAYER_ZSTD: MT_OCI_LAYER_ZSTD,
    "application/vnd.docker.image.rootfs.diff.tar": MT_OCI_LAYER,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": MT_OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar.zstd": MT_OCI_LAYER_ZSTD,
}
OCI_LAYER_OF_KIND = {"tar": MT_OCI_LAYER, "gzip": MT_OCI_LAYER_GZIP, "zstd": MT_OCI_LAYER_ZSTD}
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
_JSON_MAX = 16 << 20


def _host_arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)


def _write_blob(blobs, data=None, src=None):
    """Write bytes (or copy the file src) into blobs/ as tmp + rename."""
    h = hashlib.sha256()
    tmp = os.path.join(blobs, f".tmp{os.getpid()}.{os.urandom(4).hex()}")
    try:
        with open(tmp, "wb") as out:
            if data is not None:
                h.update(data)
                out.write(data)
            else:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = "sha256:" + h.hexdigest()
        os.rename(tmp, os.path.join(blobs, digest[7:]))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return digest


def export(store, ref, dest_dir):
    """Add the image ref names to the layout at dest_dir (created if
    missing); returns the manifest digest."""
    image_id = store.resolve(ref)
    rec = store.record(image_id)
    cfg = store.config(image_id)
    r = _name_of(ref)
    if r is not None and str(r) not in store.tags_of(image_id):
        r = None  # ref was an id (prefix), not one of the image's names
    blobs = os.path.join(dest_dir, "blobs", "sha256")
    os.makedirs(blobs, mode=0o755, exist_ok=True)
    stored_layers = (rec.get("manifest") or {}).get("layers") or []
    layers = []
    for i, digest in enumerate(rec["layers"]):
        if not os.path.exists(os.path.join(blobs, digest[7:])):
            with store.open_blob(digest) as f:
                _write_blob(blobs, src=f)
        mt = stored_layers[i].get("mediaType") if i < len(stored_layers) else None
        if mt not in LAYERS:
            with store.open_blob(digest) as f:
                mt = OCI_LAYER_OF_KIND[compression.kind_of(f.read(4))]
        layers.append({"mediaType": LAYERS[mt], "digest": digest,
                       "size": store.blob_size(digest)})
    cfg_bytes = store.read_blob(image_id)
    _write_blob(blobs, data=cfg_bytes)
    manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "config": {"mediaType": MT_OCI_CONFIG, "digest": image_id,
                           "size": len(cfg_bytes)},
                "layers": layers}
    mbytes = jsonio.dumps(manifest).encode()
    mdigest = _write_blob(blobs, data=mbytes)
    desc = {"mediaType": MT_OCI_MANIFEST, "digest": mdigest, "size": len(mbytes)}
    if cfg.get("architecture") and cfg.get("os"):
        desc["platform"] = {"architecture": cfg["architecture"], "os": cfg["os"]}
        if cfg.get("variant"):
            desc["platform"]["variant"] = cfg["variant"]
    index_path = os.path.join(dest_dir, "index.json")
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
    if os.path.exists(index_path):
        index = jsonio.load_file(index_path, f"{index_path}")
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise BerthError(f"{index_path}: not an OCI image index")
    if r is not None:
        desc["annotations"] = {IMAGE_NAME: str(r), REF_NAME: r.tag}
        index["manifests"] = [m for m in index["manifests"]
                              if (m.get("annotations") or {}).get(IMAGE_NAME) != str(r)
                              and not _same_short_name(m, r)]
    if r is not None or not any(m.get("digest") == mdigest and not m.get("annotations")
                                for m in index["manifests"]):
        index["manifests"].append(desc)
    jsonio.write_atomic(os.path.join(dest_dir, "oci-layout"),
                        {"imageLayoutVersion": "1.0.0"}, mode=0o644)
    jsonio.write_atomic(index_path, index, mode=0o644)
    return mdigest


def _same_short_name(desc, r):
    ann = desc.get("annotations") or {}
    return IMAGE_NAME not in ann and ann.get(REF_NAME) == r.tag


def _name_of(ref):
    """The tagged name ref gives, or None for an id."""
    if ref.startswith("sha256:"):
        return None
    try:
        r = names.parse(ref)
    except BerthError:
        return None
    return r if r.tag is not None else None


class _Layout:
    def __init__(self, root):
        self.root = root
        self.blobs = os.path.join(root, "blobs")

    def open(self, desc, what):
        if not isinstance(desc, dict):
            raise BerthError(f"{what}: descriptor must be an object")
        digest = check_digest(desc.get("digest"), f"{what}.digest")
        size = desc.get("size")
        if not isinstance(size, int) or size < 0:
            raise BerthError(f"{what}.size: expected a non-negative integer")
        path = os.path.join(self.blobs, "sha256", digest[7:])
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise NotFound(f"{what}: blob {path} cannot be opened", errno=e.errno) from None
        f = os.fdopen(fd, "rb")
        st = os.fstat(fd)
        if st.st_size != size:
            f.close()
            raise BerthError(f"{what}: blob {digest} has {st.st_size} bytes, "
                             f"the descriptor says {size}")
        return f, digest

    def json(self, desc, what):
        f, digest = self.open(desc, what)
        with f:
            data = f.read(_JSON_MAX + 1)
        if len(data) > _JSON_MAX:
            raise BerthError(f"{what}: {digest} is larger than {_JSON_MAX} bytes")
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise BerthError(f"{what}: blob {digest} hashes to {got}",
                             hint="the layout is corrupt or was tampered with")
        obj = jsonio.loads(data, what)
        if not isinstance(obj, dict):
            raise BerthError(f"{what}: expected a json object")
        return obj, data


def _pick_platform(layout, desc, what):
    index, _ = layout.json(desc, what)
    arch = _host_arch()
    for i, m in enumerate(index.get("manifests") or []):
        p = m.get("platform") or {}
        if p.get("os", "linux") == "linux" and p.get("architecture") == arch \
                and m.get("mediaType") in MANIFESTS:
            return m
    raise NotFound(f"{what}: no manifest for linux/{arch}")


def import_(store, src_dir, ref=None, *, max_bytes=DEFAULT_MAX_BYTES):
    """Import images from the layout at src_dir; returns their ids. With
    ref, import the one image it names (or the only one) and tag it ref."""
    layout = _Layout(src_dir)
    marker = os.path.join(src_dir, "oci-layout")
    meta = jsonio.load_file(marker, f"{marker}") if os.path.exists(marker) else None
    if not isinstance(meta, dict) or "imageLayoutVersion" not in meta:
        raise BerthError(f"{src_dir}: not an OCI image layout (oci-layout missing or invalid)")
    index = jsonio.load_file(os.path.join(src_dir, "index.json"), f"{src_dir}/index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise BerthError(f"{src_dir}/index.json: manifests must be a list")
    want = names.parse(ref) if ref is not None else None
    chosen = []
    for i, desc in enumerate(entries):
        what = f"{src_dir}/index.json manifests[{i}]"
        if not isinstance(desc, dict):
            raise BerthError(f"{what}: descriptor must be an object")
        name = _annotated_name(desc)
        if want is not None:
            short = (desc.get("annotations") or {}).get(REF_NAME)
            if name != str(want) and short != want.tag and short != str(want) \
                    and short != want.familiar():
                continue
        chosen.append((desc, what, name))
    if want is not None:
        if not chosen and len(entries) == 1:
            chosen = [(entries[0], f"{src_dir}/index.json manifests[0]", None)]
        if not chosen:
            raise NotFound(f"{src_dir}: no image named {want.familiar()} in index.json")
        chosen = chosen[:1]
    if not chosen:
        raise BerthError(f"{src_dir}/index.json: no manifests")
    with store:
        try:
            plans = [_check(store, layout, desc, what, max_bytes) for desc, what, _ in chosen]
            ids = []
            for (config_digest, layers, sizes, manifest), (_, _, name) in zip(plans, chosen):
                store.add_image(config_digest, layers, manifest, diff_sizes=sizes)
                tag = str(want) if want is not None else name
                if tag is not None:
                    store.tag(config_digest, tag)
                ids.append(config_digest)
            return ids
        finally:
            store.gc()


def _annotated_name(desc):
    """A full name from the annotations; a bare tag names no repository."""
    ann = desc.get("annotations") or {}
    for key in (IMAGE_NAME, REF_NAME):
        v = ann.get(key)
        if isinstance(v, str) and ("/" in v or ":" in v):
            try:
                r = names.parse(v)
            except BerthError:
                continue
            if r.tag is not None:
                return str(r.with_tag(r.tag))
    return None


def _check(store, layout, desc, what, max_bytes):
    mt = desc.get("mediaType")
    if mt in INDEXES:
        desc = _pick_platform(layout, desc, what)
        what += " (platform manifest)"
        mt = desc.get("mediaType")
    if mt not in MANIFESTS:
        raise BerthError(f"{what}.mediaType: {mt!r} is not an image manifest or index")
    manifest, _ = layout.json(desc, f"{what} manifest")
    cdesc = manifest.get("config")
    f, config_digest = layout.open(cdesc, f"{what} config")
    with f:
        store.put_blob(f, config_digest, max_bytes=_JSON_MAX)
    cfg = store.config(config_digest)
    diff_ids = (cfg.get("rootfs") or {}).get("diff_ids")
    ldescs = manifest.get("layers")
    if not isinstance(ldescs, list) or not isinstance(diff_ids, list) \
            or len(diff_ids) != len(ldescs):
        raise BerthError(f"{what}: manifest layers and config rootfs.diff_ids differ in length")
    layers, sizes = [], []
    for j, ld in enumerate(ldescs):
        lwhat = f"{what} layers[{j}]"
        if ld.get("mediaType") not in LAYERS:
            raise BerthError(f"{lwhat}.mediaType: {ld.get('mediaType')!r} is not supported")
        f, digest = layout.open(ld, lwhat)
        with f:
            got, diff_id, size, _ = put_layer(store, f, lwhat, digest, max_bytes)
        want = check_digest(diff_ids[j], f"{what} config rootfs.diff_ids[{j}]")
        if diff_id != want:
            raise BerthError(f"{lwhat}: uncompressed content hashes to {diff_id}, "
                             f"the config says {want}")
        layers.append(got)
        sizes.append(size)
    return config_digest, layers, sizes, manifest
