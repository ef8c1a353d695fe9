"""Docker's image archive (`docker save` / `docker load`).

Layout read and written:
  manifest.json        [{"Config": "<hex>.json", "RepoTags": [...], "Layers": ["<hex>.tar", ...]}]
  <config hex>.json    the image config; its sha256 is the image id
  <diff id hex>.tar    a layer (reading also accepts gzip and zstd, and Docker 25's blobs/sha256/<hex>)
  <v1 id>/layer.tar    symlink to the layer, with VERSION and json, for old loaders
  repositories         {"docker.io/library/alpine": {"latest": "<top v1 id>"}}

The archive is read as a stream of data: no member is ever extracted by its
path. Names that are absolute or climb with `..` refuse the whole archive,
and every digest is checked before a single image record is written, so a
bad archive leaves the store as it was."""
import contextlib
import hashlib
import io
import os
import posixpath
import tarfile
import zlib

from berth.engine.images import names
from berth.engine.images.store import check_digest
from berth.engine.storage import compression
from berth.errors import BerthError
from berth.oci import jsonio

DEFAULT_MAX_BYTES = 64 << 30
_SMALL = 1 << 20          # members up to this size are kept in memory
PROGRESS_STEP = 512 << 10  # dockerd's step for "Loading layer" progress
_JSON_MAX = 16 << 20
_LINK_HOPS = 8

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# not in Docker's schema2 spec, but what containerd and moby name zstd layers
MT_DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"


class DiffTap:
    """Fed the bytes of a layer as stored; works out the digest and size of
    the uncompressed tar (the diff id) without keeping anything."""

    def __init__(self, what, max_bytes=DEFAULT_MAX_BYTES):
        self.what = what
        self.max_bytes = max_bytes
        self.kind = None
        self._head = b""
        self._h = hashlib.sha256()
        self._z = None
        self.size = 0

    def __call__(self, chunk):
        if self.kind is None:
            self._head += chunk
            if len(self._head) < 4:
                return
            chunk, self._head = self._head, b""
            self._pick(chunk)
        if self.kind == "tar":
            self._out(chunk)
        elif self.kind == "zstd":
            self._z.feed(chunk)
        else:
            self._inflate(chunk)

    def _pick(self, head):
        self.kind = compression.kind_of(head)
        if self.kind == "gzip":
            self._z = zlib.decompressobj(wbits=31)
        elif self.kind == "zstd":
            self._z = compression.ZstdTap(self._out, self.what)

    def _out(self, data):
        self.size += len(data)
        if self.size > self.max_bytes:
            raise BerthError(f"{self.what}: uncompressed layer is larger than {self.max_bytes} bytes")
        self._h.update(data)

    def _inflate(self, data):
        while data:
            if self._z is None:
                if not data.strip(b"\0"):
                    return  # zero padding after the last gzip member
                self._z = zlib.decompressobj(wbits=31)
            try:
                self._out(self._z.decompress(data, _SMALL))
                while self._z.unconsumed_tail and not self._z.eof:
                    self._out(self._z.decompress(self._z.unconsumed_tail, _SMALL))
            except zlib.error as e:
                raise BerthError(f"{self.what}: corrupt gzip data: {e}") from None
            if self._z.eof:
                # another gzip member may follow (pigz, concatenated streams)
                data = self._z.unused_data
                self._z = None
            else:
                data = b""

    def finish(self):
        if self.kind is None:
            head, self._head = self._head, b""
            self._pick(head + b"\0\0\0\0")
            if self.kind == "tar":
                self._out(head)
            elif self.kind == "zstd":
                self._z.feed(head)
            else:
                self._inflate(head)
        if self.kind == "zstd":
            self._z.finish()
        if self.kind == "gzip" and self._z is not None:
            raise BerthError(f"{self.what}: gzip stream is truncated")
        return "sha256:" + self._h.hexdigest(), self.size


def layer_media_kind(kind):
    return {"gzip": MT_DOCKER_LAYER_GZIP, "zstd": MT_DOCKER_LAYER_ZSTD}.get(kind, MT_DOCKER_LAYER)


def put_layer(store, fileobj, what, expected_digest=None, max_bytes=DEFAULT_MAX_BYTES):
    """Store a layer blob; returns (blob digest, diff id, uncompressed size, kind)."""
    tap = DiffTap(what, max_bytes)
    digest = store.put_blob(fileobj, expected_digest, max_bytes=max_bytes, tap=tap)
    diff_id, size = tap.finish()
    return digest, diff_id, size, tap.kind


def _safe_name(name, what="archive member"):
    if not name or "\0" in name:
        raise BerthError(f"{what} {name!r}: empty name")
    if name.startswith("/"):
        raise BerthError(f"{what} {name!r}: absolute paths are refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BerthError(f"{what} {name!r}: '..' in a member name is refused")
    if not parts:
        raise BerthError(f"{what} {name!r}: empty name")
    return "/".join(parts)


class _Members:
    def __init__(self, store):
        self.store = store
        self.items = {}

    def add(self, name, item):
        if name in self.items:
            raise BerthError(f"archive member {name!r} appears twice")
        self.items[name] = item

    def _find(self, name):
        seen = 0
        while True:
            item = self.items.get(name)
            if item is None:
                raise BerthError(f"archive: {name!r} is named in the manifest but missing")
            if item[0] != "link":
                return name, item
            seen += 1
            if seen > _LINK_HOPS:
                raise BerthError(f"archive: too many links resolving {name!r}")
            name = item[1]

    def real_name(self, name):
        return self._find(_safe_name(name, "manifest entry"))[0]

    def data(self, name, limit=_JSON_MAX):
        name, item = self._find(_safe_name(name, "manifest entry"))
        if item[0] == "data":
            return item[1]
        return self.store.read_blob(item[1], limit)

    def layer(self, name, max_bytes, progress=None):
        """(blob digest, diff id, size, kind) of a layer member."""
        name, item = self._find(_safe_name(name, "manifest entry"))
        if item[0] == "data":
            got = put_layer(self.store, io.BytesIO(item[1]), f"layer {name}", max_bytes=max_bytes)
            self.items[name] = ("blob",) + got
            if progress is not None:   # kept in memory: read at once, one event
                progress(short_id(name), len(item[1]), len(item[1]))
            return got
        return item[1:]


def short_id(name):
    """The id a member's progress is shown under: the 12 hex digits its
    name carries (blobs/sha256/<digest>, <v1 id>/layer.tar), as dockerd
    shows a layer's."""
    for part in reversed(name.split("/")):
        part = part.split(".")[0]   # <diff id>.tar in docker 25's archives
        if len(part) == 64 and all(c in "0123456789abcdef" for c in part):
            return part[:12]
    return hashlib.sha256(name.encode()).hexdigest()[:12]


class _Counted:
    """A member's file object that reports the bytes read so far, at most
    every PROGRESS_STEP bytes and at the end."""

    def __init__(self, f, total, report):
        self.f, self.total, self.report = f, total, report
        self.done = self.last = 0

    def read(self, n=-1):
        data = self.f.read(n)
        self.done += len(data)
        if self.done - self.last >= PROGRESS_STEP or (self.done == self.total and data):
            self.last = self.done
            self.report(self.done, self.total)
        return data


def _read(store, fileobj, max_bytes, progress=None):
    members = _Members(store)
    total = 0
    try:
        tf = tarfile.open(fileobj=fileobj, mode="r|*")
    except tarfile.TarError as e:
        raise BerthError(f"archive: not a tar stream: {e}") from None
    try:
        for m in tf:
            if m.isdir():   # `tar -C dir .` adds "." and ./-prefixed names
                continue
            name = _safe_name(m.name)
            if m.issym():
                if m.linkname.startswith("/"):
                    raise BerthError(f"archive member {m.name!r}: absolute link target refused")
                target = posixpath.normpath(posixpath.join(posixpath.dirname(name), m.linkname))
                if target == ".." or target.startswith("../"):
                    raise BerthError(f"archive member {m.name!r}: link target "
                                     f"{m.linkname!r} leaves the archive")
                target = _safe_name(target, f"link target of {m.name!r}")
                members.add(name, ("link", target))
            elif m.islnk():
                members.add(name, ("link", _safe_name(m.linkname, f"link target of {m.name!r}")))
            elif m.isreg():
                total += m.size
                if total > max_bytes:
                    raise BerthError(f"archive is larger than the limit of {max_bytes} bytes")
                f = tf.extractfile(m)
                if progress is not None and m.size > _SMALL:
                    short = short_id(name)
                    f = _Counted(f, m.size, lambda cur, tot: progress(short, cur, tot))
                if m.size <= _SMALL:
                    members.add(name, ("data", f.read()))
                else:
                    members.add(name, ("blob",) + put_layer(store, f, f"archive member {name}",
                                                            max_bytes=max_bytes))
            else:
                raise BerthError(f"archive member {m.name!r}: unsupported type "
                                 "(only files, directories and links belong in an image archive)")
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise BerthError(f"archive: corrupt tar stream: {e}") from None
    finally:
        tf.close()
    return members


def _hex_of(name):
    """The digest a member's name promises, if it promises one."""
    base = posixpath.basename(name)
    if name.startswith("blobs/sha256/"):
        return "sha256:" + base
    if base.endswith(".json") and len(base) == 69:
        return "sha256:" + base[:-5]
    return None


def _json(data, what):
    obj = jsonio.loads(data, what)
    return obj


def load(store, fileobj, *, max_bytes=DEFAULT_MAX_BYTES):
    """Load a `docker save` archive; returns the image ids in manifest
    order. All or nothing: any bad digest, name or entry adds no image."""
    return [image_id for image_id, _ in load_tagged(store, fileobj, max_bytes=max_bytes)]


def load_tagged(store, fileobj, *, max_bytes=DEFAULT_MAX_BYTES, progress=None):
    """load(), -> [(image id, [the tags the archive gave it])] in manifest
    order. progress(short id, bytes read, layer size) is called as layers
    are read."""
    with store:
        try:
            return _load(store, fileobj, max_bytes, progress)
        finally:
            # blobs staged for images that were not added (or members that
            # were not layers at all) go; the lock kept anyone else out
            store.gc()


def _load(store, fileobj, max_bytes, progress):
    members = _read(store, fileobj, max_bytes, progress)
    if "manifest.json" not in members.items:
        raise BerthError("archive has no manifest.json",
                         hint="archives from docker before 1.10 are not supported; re-save with a newer docker")
    manifest = _json(members.data("manifest.json"), "archive manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise BerthError("archive manifest.json: expected a non-empty list of images")
    repos = {}
    if "repositories" in members.items:
        repos = _json(members.data("repositories"), "archive repositories")
        if not isinstance(repos, dict):
            raise BerthError("archive repositories: expected an object")
    plans = []
    for i, entry in enumerate(manifest):
        plans.append(_check_entry(store, members, repos, entry, f"manifest.json[{i}]",
                                  max_bytes, progress))
    loaded = []
    for config_digest, layers, sizes, doc, tags in plans:
        store.add_image(config_digest, layers, doc, diff_sizes=sizes)
        for t in tags:
            store.tag(config_digest, t)
        loaded.append((config_digest, tags))
    return loaded


def _check_entry(store, members, repos, entry, where, max_bytes, progress=None):
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
        raise BerthError(f"archive {where}: Config must name the image config")
    layers = entry.get("Layers")
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise BerthError(f"archive {where}.Layers: expected a list of member names")
    cfg_bytes = members.data(entry["Config"])
    config_digest = "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
    promised = _hex_of(members.real_name(entry["Config"]))
    if promised is not None and promised != config_digest:
        raise BerthError(f"archive {where}.Config {entry['Config']!r}: digest mismatch, "
                         f"content hashes to {config_digest}")
    cfg = _json(cfg_bytes, f"archive {where} config")
    diff_ids = ((cfg.get("rootfs") or {}).get("diff_ids") if isinstance(cfg, dict) else None)
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise BerthError(f"archive {where}: config rootfs.diff_ids does not list "
                         f"{len(layers)} layers")
    blob_layers, sizes, descs = [], [], []
    for j, name in enumerate(layers):
        digest, diff_id, size, kind = members.layer(name, max_bytes, progress)
        want = check_digest(diff_ids[j], f"archive {where} config rootfs.diff_ids[{j}]")
        if diff_id != want:
            raise BerthError(f"archive {where}.Layers[{j}] {name!r}: content hashes to "
                             f"{diff_id}, the config says {want}",
                             hint="the archive is corrupt or was tampered with")
        promised = _hex_of(members.real_name(name))
        if promised is not None and name.startswith("blobs/") and promised != digest:
            raise BerthError(f"archive {where}.Layers[{j}] {name!r}: digest mismatch, "
                             f"content hashes to {digest}")
        blob_layers.append(digest)
        sizes.append(size)
        descs.append({"mediaType": layer_media_kind(kind), "size": store.blob_size(digest),
                      "digest": digest})
    store.put_bytes(cfg_bytes, config_digest)
    tags = []
    for t in entry.get("RepoTags") or []:
        if not isinstance(t, str):
            raise BerthError(f"archive {where}.RepoTags: expected strings")
        r = names.parse(t)
        if r.digest is not None:
            raise BerthError(f"archive {where}.RepoTags: {t!r} carries a digest")
        tags.append(str(r))
    if not entry.get("RepoTags") and layers:
        tags.extend(_legacy_tags(members, repos, layers[-1]))
    doc = {"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
           "config": {"mediaType": MT_DOCKER_CONFIG, "size": len(cfg_bytes),
                      "digest": config_digest},
           "layers": descs}
    return config_digest, blob_layers, sizes, doc, tags


def _legacy_tags(members, repos, top_layer):
    """Tags from the old repositories file, which names the v1 id whose
    <v1 id>/layer.tar is this image's top layer."""
    top = members.real_name(top_layer)
    out = []
    for repo, tagmap in repos.items():
        if not isinstance(tagmap, dict):
            continue
        for tag, v1 in tagmap.items():
            if not isinstance(v1, str) or not v1:
                continue
            try:
                if members.real_name(f"{v1}/layer.tar") != top:
                    continue
            except BerthError:
                continue
            out.append(str(names.parse(f"{repo}:{tag}")))
    return out


# save

def _info(name, size=0, kind=tarfile.REGTYPE, link=""):
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = kind
    ti.linkname = link
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else (0o777 if kind == tarfile.SYMTYPE else 0o444)
    return ti


def _v1_id(parent, diff_id, image_id):
    h = hashlib.sha256(f"{parent}\n{diff_id}\n{image_id}".encode())
    return h.hexdigest()


def save(store, refs, fileobj):
    """Write the images named by refs (names or ids) as a docker archive."""
    if isinstance(refs, str):
        refs = [refs]
    order, tags_for = [], {}
    with store:
        all_tags = store._load_tags()
        for ref in refs:
            image_id = store.resolve(ref)
            if image_id not in tags_for:
                order.append(image_id)
                tags_for[image_id] = []
            r = _parse_or_none(ref)
            if r is not None and r.digest is None and all_tags.get(str(r)) == image_id:
                if str(r) not in tags_for[image_id]:
                    tags_for[image_id].append(str(r))
        records = {i: store.record(i) for i in order}
    tf = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT)
    try:
        written = set()
        manifest, repositories = [], {}
        for image_id in order:
            rec = records[image_id]
            layer_names = []
            parent = ""
            last = len(rec["layers"]) - 1
            for n, (blob, diff_id) in enumerate(zip(rec["layers"], rec["diff_ids"])):
                lname = diff_id[7:] + ".tar"
                if lname not in written:
                    _add_layer(store, tf, lname, blob, diff_id)
                    written.add(lname)
                layer_names.append(lname)
                v1 = _v1_id(parent, diff_id, image_id if n == last else "")
                if v1 not in written:
                    _add_v1(tf, v1, parent, lname)
                    written.add(v1)
                parent = v1
            cname = image_id[7:] + ".json"
            if cname not in written:
                data = store.read_blob(image_id)
                tf.addfile(_info(cname, len(data)), io.BytesIO(data))
                written.add(cname)
            tags = tags_for[image_id]
            manifest.append({"Config": cname,
                             "RepoTags": [names.parse(t).familiar() for t in tags] or None,
                             "Layers": layer_names})
            for t in tags:
                r = names.parse(t)
                if parent:
                    repositories.setdefault(r.familiar_name(), {})[r.tag] = parent
        for name, obj in (("manifest.json", manifest), ("repositories", repositories)):
            data = jsonio.dumps(obj).encode()
            tf.addfile(_info(name, len(data)), io.BytesIO(data))
    except BaseException:
        # no end-of-archive marker: a half-written save must not look whole
        tf.closed = True
        raise
    tf.close()


def _parse_or_none(ref):
    try:
        return names.parse(ref)
    except BerthError:
        return None


def _add_v1(tf, v1, parent, lname):
    tf.addfile(_info(v1, kind=tarfile.DIRTYPE))
    tf.addfile(_info(f"{v1}/VERSION", 3), io.BytesIO(b"1.0"))
    meta = {"id": v1, "created": "1970-01-01T00:00:00Z", "os": "linux"}
    if parent:
        meta["parent"] = parent
    data = jsonio.dumps(meta).encode()
    tf.addfile(_info(f"{v1}/json", len(data)), io.BytesIO(data))
    tf.addfile(_info(f"{v1}/layer.tar", kind=tarfile.SYMTYPE, link=f"../{lname}"))


def _add_layer(store, tf, lname, blob, diff_id):
    """Layers go out uncompressed, as docker save writes them; a gzip or
    zstd blob is inflated to a tmp file first since the tar header needs
    the size."""
    with store.open_blob(blob) as f:
        kind = compression.kind_of(f.read(4))
        f.seek(0)
        if kind == "tar":
            size = os.fstat(f.fileno()).st_size
            tf.addfile(_info(lname, size), f)
            return
        import gzip
        import tempfile
        with tempfile.TemporaryFile(dir=store.tmp_dir()) as tmp:
            h = hashlib.sha256()
            opened = (gzip.GzipFile(fileobj=f, mode="rb") if kind == "gzip"
                      else compression.ZstdReader(f, f"layer {blob}"))
            with contextlib.closing(opened) as z:
                while True:
                    chunk = z.read(_SMALL)
                    if not chunk:
                        break
                    h.update(chunk)
                    tmp.write(chunk)
            if "sha256:" + h.hexdigest() != diff_id:
                raise BerthError(f"layer {blob} in the store does not inflate to {diff_id}",
                                 hint="the store is corrupt; remove and reload the image")
            size = tmp.tell()
            tmp.seek(0)
            tf.addfile(_info(lname, size), tmp)
