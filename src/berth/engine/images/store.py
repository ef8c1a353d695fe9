"""Content-addressed image store.

Layout under root:
  blobs/sha256/<hex>   configs, layers (as stored, maybe gzip), manifests
  images/<hex>.json    one record per image, keyed by its config digest (the id)
  tags.json            {"docker.io/library/alpine:latest": "sha256:<id>"}
  tmp/                 partial blobs, named with the writer's pid
  lock                 flock'ed by every writer, across processes

Every file is written tmp + fsync + rename, so a crash leaves either the old
state or the new one; orphans (blobs no image uses, stale tmp files) are
collected by remove() and prune(). Layers are kept as blobs here; turning
them into snapshots is the storage layer's job."""
import errno
import fcntl
import hashlib
import os
import threading

from berth.engine.images import names
from berth.errors import BerthError, ConfigError, Conflict, NotFound, SysError
from berth.oci import jsonio

DEFAULT_ROOT = "/var/lib/berth/images"
_CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


def check_digest(digest, what="digest"):
    if not isinstance(digest, str) or not names.is_digest(digest):
        raise BerthError(f"{what}: {digest!r} is not sha256:<64 lowercase hex>")
    return digest


class Store:
    def __init__(self, root=DEFAULT_ROOT):
        self.root = os.path.abspath(root)
        self._blobs = os.path.join(self.root, "blobs", "sha256")
        self._images = os.path.join(self.root, "images")
        self._tmp = os.path.join(self.root, "tmp")
        self._tags = os.path.join(self.root, "tags.json")
        for d in (self._blobs, self._images, self._tmp):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self._mutex = threading.RLock()
        self._depth = 0
        self._lockfd = None
        self._set_aside_garbled()

    def _set_aside_garbled(self):
        """Records are written atomically; one that does not parse was
        damaged from outside. It is moved aside and named in a warning, so
        the store still works instead of failing every listing."""
        paths = [os.path.join(self._images, n) for n in os.listdir(self._images) if n.endswith(".json") and len(n) == 69]
        if os.path.exists(self._tags):
            paths.append(self._tags)
        for path in paths:
            try:
                if isinstance(jsonio.load_file(path), dict):
                    continue
            except ConfigError:
                pass
            aside = f"{path}.garbled"
            os.replace(path, aside)
            import sys
            print(f"berth: {path}: unreadable record, moved to {aside}"
                  + ("; images are kept and can be tagged again" if path == self._tags else ""),
                  file=sys.stderr, flush=True)

    # locking: re-entrant inside the process, flock across processes

    def __enter__(self):
        self._mutex.acquire()
        if self._depth == 0:
            fd = os.open(os.path.join(self.root, "lock"),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                self._mutex.release()
                raise
            self._lockfd = fd
        self._depth += 1
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            os.close(self._lockfd)  # closing drops the flock
            self._lockfd = None
        self._mutex.release()

    # blobs

    def blob_path(self, digest):
        return os.path.join(self._blobs, check_digest(digest)[len("sha256:"):])

    def has_blob(self, digest):
        return os.path.isfile(self.blob_path(digest))

    def blob_size(self, digest):
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in {self.root}") from None

    def open_blob(self, digest):
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in {self.root}") from None

    def read_blob(self, digest, limit=16 << 20):
        with self.open_blob(digest) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise BerthError(f"blob {digest} is larger than {limit} bytes")
        return data

    def put_blob(self, fileobj, expected_digest=None, *, max_bytes=None, tap=None):
        """Stream fileobj into the store and return its digest. With
        expected_digest a mismatch raises and nothing is kept. tap(chunk),
        if given, sees every chunk (to hash the uncompressed layer on the way)."""
        if expected_digest is not None:
            check_digest(expected_digest, "expected digest")
        h = hashlib.sha256()
        tmp = os.path.join(self._tmp, f"blob.{os.getpid()}.{threading.get_ident()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            total = 0
            while True:
                chunk = fileobj.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if max_bytes is not None and total > max_bytes:
                    raise BerthError(f"blob is larger than the limit of {max_bytes} bytes")
                h.update(chunk)
                if tap is not None:
                    tap(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            digest = "sha256:" + h.hexdigest()
            if expected_digest is not None and digest != expected_digest:
                raise BerthError(f"blob digest mismatch: expected {expected_digest}, got {digest}")
            os.fsync(fd)
        except BaseException as e:
            os.close(fd)
            os.unlink(tmp)
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SysError(f"image store {self._tmp}: cannot write a blob", errno=e.errno,
                               hint="the file system is full: free space and retry") from None
            raise
        os.close(fd)
        with self:
            os.rename(tmp, self.blob_path(digest))
            jsonio.fsync_dir(self._blobs)
        return digest

    def put_bytes(self, data, expected_digest=None):
        import io
        return self.put_blob(io.BytesIO(data), expected_digest)

    def _delete_blob(self, digest):
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            pass

    # records

    def _record_path(self, image_id):
        return os.path.join(self._images, check_digest(image_id, "image id")[7:] + ".json")

    def _record(self, image_id):
        path = self._record_path(image_id)
        if not os.path.exists(path):
            raise NotFound(f"no such image: {image_id}")
        return jsonio.load_file(path, f"image record {image_id}")

    def _ids(self):
        out = []
        for name in os.listdir(self._images):
            if name.endswith(".json") and len(name) == 69:
                out.append("sha256:" + name[:-5])
        return sorted(out)

    def _load_tags(self):
        if not os.path.exists(self._tags):
            return {}
        return jsonio.load_file(self._tags, "tags.json")

    def _save_tags(self, tags):
        jsonio.write_atomic(self._tags, dict(sorted(tags.items())), indent=1, mode=0o600)

    def config(self, image_id):
        return jsonio.loads(self.read_blob(image_id), f"image config {image_id}")

    def add_image(self, config_digest, layer_digests, manifest, *, diff_sizes=None,
                  repo_digests=(), parent="", intermediate=False):
        """Record an image whose blobs are in the store already. The id is the
        config digest; adding an image twice merges its repo digests. parent:
        the image a commit or build step started from (Docker's Parent).
        intermediate: a build step's image, kept as the build cache, not
        listed, removed with the last image made from it (as dockerd's);
        adding it again not intermediate makes it an image of its own."""
        check_digest(config_digest, "config digest")
        layer_digests = [check_digest(d, f"layers[{i}]") for i, d in enumerate(layer_digests)]
        with self:
            for d in [config_digest] + layer_digests:
                if not self.has_blob(d):
                    raise NotFound(f"blob {d} not found in {self.root}",
                                   hint="put_blob every layer and the config first")
            cfg = self.config(config_digest)
            rootfs = cfg.get("rootfs") if isinstance(cfg, dict) else None
            diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
            if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_digests):
                raise BerthError(f"image config {config_digest}: rootfs.diff_ids has "
                                 f"{len(diff_ids) if isinstance(diff_ids, list) else 'no'} "
                                 f"entries for {len(layer_digests)} layers")
            for i, d in enumerate(diff_ids):
                check_digest(d, f"image config {config_digest}: rootfs.diff_ids[{i}]")
            path = self._record_path(config_digest)
            old = jsonio.load_file(path) if os.path.exists(path) else {}
            if diff_sizes is None:
                diff_sizes = old.get("diff_sizes") or [self.blob_size(d) for d in layer_digests]
            rec = {
                "id": config_digest,
                "layers": layer_digests,
                "diff_ids": diff_ids,
                "diff_sizes": list(diff_sizes),
                "manifest": manifest,
                "repo_digests": sorted(set(old.get("repo_digests", [])) | set(repo_digests)),
                "parent": parent or old.get("parent", ""),
                "intermediate": bool(intermediate and old.get("intermediate", not old)),
            }
            jsonio.write_atomic(path, rec, mode=0o600)
        return config_digest

    def record(self, image_id):
        """The stored record: id, layers (blob digests), diff_ids, manifest."""
        return self._record(image_id)

    # tags

    def tag(self, image_id, ref):
        r = names.parse(ref) if isinstance(ref, str) else ref
        if r.digest is not None:
            raise BerthError(f"tag {r.familiar()}: cannot tag with a digest reference")
        with self:
            image_id = self.resolve(image_id)
            tags = self._load_tags()
            tags[str(r)] = image_id
            self._save_tags(tags)

    def untag(self, ref):
        r = names.parse(ref) if isinstance(ref, str) else ref
        with self:
            tags = self._load_tags()
            if str(r) not in tags:
                raise NotFound(f"no such image: {r.familiar()}")
            del tags[str(r)]
            self._save_tags(tags)

    def tags_of(self, image_id, tags=None):
        tags = self._load_tags() if tags is None else tags
        return sorted(k for k, v in tags.items() if v == image_id)

    def resolve(self, ref_or_id):
        """Image id for a name, name@digest, full id or unique id prefix."""
        s = ref_or_id
        if not isinstance(s, str) or not s:
            raise NotFound("no such image: empty reference")
        ids = None
        if s.startswith("sha256:") and "/" not in s:
            return self._by_prefix(s[7:], s)
        try:
            r = names.parse(s)
        except BerthError:
            if set(s) <= _HEX:
                return self._by_prefix(s, s)
            raise
        if r.digest is not None:
            ids = self._ids()
            for i in ids:
                if f"{r.name}@{r.digest}" in self._record(i).get("repo_digests", []):
                    return i
            if r.tag is None:
                raise NotFound(f"no such image: {s}")
        tags = self._load_tags()
        found = tags.get(str(r.with_tag(r.tag)))
        if found is not None:
            return found
        if set(s) <= _HEX:
            return self._by_prefix(s, s)
        raise NotFound(f"no such image: {r.familiar()}")

    def _by_prefix(self, prefix, shown):
        if not prefix or not set(prefix) <= _HEX or len(prefix) > 64:
            raise NotFound(f"no such image: {shown}")
        hits = [i for i in self._ids() if i[7:].startswith(prefix)]
        if not hits:
            raise NotFound(f"no such image: {shown}")
        if len(hits) > 1:
            raise Conflict(f"image id prefix {shown!r} is ambiguous: it matches {len(hits)} images",
                           hint="give more characters of the id")
        return hits[0]

    # views

    def _size(self, rec):
        return sum(rec.get("diff_sizes") or [])

    def inspect(self, ref_or_id):
        image_id = self.resolve(ref_or_id)
        rec = self._record(image_id)
        cfg = self.config(image_id)
        tags = self.tags_of(image_id)
        out = {
            "Id": image_id,
            "RepoTags": [names.parse(t).familiar() for t in tags],
            "RepoDigests": [_familiar_digest(d) for d in rec.get("repo_digests", [])],
            "Parent": rec.get("parent", ""),
            "Comment": cfg.get("comment", ""),
            "Created": cfg.get("created", ""),
            "DockerVersion": cfg.get("docker_version") or "",
            "Author": cfg.get("author", ""),
            "Config": cfg.get("config") or {},
            "Architecture": cfg.get("architecture", ""),
            "Os": cfg.get("os", ""),
            "Size": self._size(rec),
            "RootFS": {"Type": "layers", "Layers": list(rec["diff_ids"])},
        }
        if cfg.get("variant"):
            out["Variant"] = cfg["variant"]
        return out

    def images(self):
        """Summaries as Docker's GET /images/json lists them, newest first."""
        tags = self._load_tags()
        out = []
        for image_id in self._ids():
            rec = self._record(image_id)
            if rec.get("intermediate") and not self.tags_of(image_id, tags):
                continue
            cfg = self.config(image_id)
            out.append({
                "Id": image_id,
                "ParentId": rec.get("parent", ""),
                "RepoTags": [names.parse(t).familiar() for t in self.tags_of(image_id, tags)],
                "RepoDigests": [_familiar_digest(d) for d in rec.get("repo_digests", [])],
                "Created": _unix(cfg.get("created")),
                "Size": self._size(rec),
                "Labels": (cfg.get("config") or {}).get("Labels") or {},
                "Containers": -1,
                "SharedSize": -1,
            })
        out.sort(key=lambda x: (-x["Created"], x["Id"]))
        return out

    def history(self, ref_or_id):
        """Docker's GET /images/{name}/history: newest step first."""
        image_id = self.resolve(ref_or_id)
        rec = self._record(image_id)
        cfg = self.config(image_id)
        sizes = list(rec.get("diff_sizes") or [])
        steps = cfg.get("history") or []
        if not steps:
            steps = [{"created": cfg.get("created")} for _ in rec["layers"]]
        out = []
        layer = 0
        for step in steps:
            size = 0
            if not step.get("empty_layer"):
                size = sizes[layer] if layer < len(sizes) else 0
                layer += 1
            out.append({"Id": "<missing>", "Created": _unix(step.get("created")),
                        "CreatedBy": step.get("created_by", ""), "Tags": None,
                        "Size": size, "Comment": step.get("comment", "")})
        out.reverse()
        out[0]["Id"] = image_id
        out[0]["Tags"] = [names.parse(t).familiar() for t in self.tags_of(image_id)] or None
        return out

    # removal

    def remove(self, ref_or_id, force=False):
        """Untag a name, deleting the image with its last tag; by id, refuse
        while several names point at it unless force. Returns Docker's list
        of {"Untagged": ...} / {"Deleted": ...}."""
        with self:
            image_id = self.resolve(ref_or_id)
            tags = self._load_tags()
            mine = self.tags_of(image_id, tags)
            by_name = None
            r = _try_parse(ref_or_id)
            if r is not None and r.digest is None and str(r) in tags:
                by_name = str(r)
            events = []
            # like docker rmi -f name: force never widens an untag to other names
            if by_name is not None and len(mine) > 1:
                del tags[by_name]
                self._save_tags(tags)
                return [{"Untagged": names.parse(by_name).familiar()}]
            if by_name is None and len(mine) > 1 and not force:
                raise Conflict(f"unable to delete {image_id[7:19]} (must be forced): "
                               f"image is referenced in {len(mine)} repositories",
                               hint="remove the tags one by one, or use force")
            for t in mine:
                del tags[t]
                events.append({"Untagged": names.parse(t).familiar()})
            if mine:
                self._save_tags(tags)
            parent = self._record(image_id).get("parent")
            self._forget(image_id)
            events.append({"Deleted": image_id})
            events += self._drop_build_parents(parent, tags)
            self._gc()
            return events

    def _drop_build_parents(self, parent, tags):
        """The build steps' images under a removed image that no other image
        was made from, as dockerd deletes them with it."""
        out = []
        tagged = set(tags.values())
        while parent and parent not in tagged:
            try:
                rec = self._record(parent)
            except (BerthError, OSError):
                break
            if not rec.get("intermediate") or any(
                    self._record(i).get("parent") == parent for i in self._ids()):
                break
            self._forget(parent)
            out.append({"Deleted": parent})
            parent = rec.get("parent")
        return out

    def _forget(self, image_id):
        """Drops an image's record and what hangs off it (its signatures)."""
        os.unlink(self._record_path(image_id))
        import shutil
        shutil.rmtree(os.path.join(self.root, "signatures", image_id.split(":", 1)[1]),
                      ignore_errors=True)

    def _gc(self):
        keep = set()
        for image_id in self._ids():
            rec = self._record(image_id)
            keep.add(image_id)
            keep.update(rec["layers"])
        freed = 0
        for name in os.listdir(self._blobs):
            digest = "sha256:" + name
            if digest not in keep:
                try:
                    freed += os.stat(os.path.join(self._blobs, name)).st_size
                    os.unlink(os.path.join(self._blobs, name))
                except FileNotFoundError:
                    pass
        return freed

    def gc(self):
        """Delete blobs no image uses. Callers staging blobs for an image they
        have not added yet must hold the store lock across both steps."""
        with self:
            return self._gc()

    def prune(self, all=False, keep=()):
        """Remove untagged images (every image with all=True) except the
        ids in keep (the engine passes images that containers use), then
        collect orphan blobs and tmp files of dead writers."""
        with self:
            tags = self._load_tags()
            tagged = set(tags.values())
            deleted = []
            for image_id in self._ids():
                if image_id in keep or (image_id in tagged and not all):
                    continue
                for t in self.tags_of(image_id, tags):
                    del tags[t]
                    deleted.append({"Untagged": names.parse(t).familiar()})
                self._forget(image_id)
                deleted.append({"Deleted": image_id})
            if all:
                self._save_tags(tags)
            freed = self._gc()
            for name in os.listdir(self._tmp):
                parts = name.split(".")
                if len(parts) > 1 and parts[1].isdigit() and not _alive(int(parts[1])):
                    try:
                        os.unlink(os.path.join(self._tmp, name))
                    except FileNotFoundError:
                        pass
            return {"ImagesDeleted": deleted, "SpaceReclaimed": freed}

    def tmp_dir(self):
        return self._tmp


def _try_parse(s):
    try:
        return names.parse(s)
    except BerthError:
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _familiar_digest(d):
    name, _, digest = d.partition("@")
    return f"{names.parse(name).familiar_name()}@{digest}"


def _unix(created):
    """RFC 3339 (with nanoseconds, as Go writes it) to unix seconds."""
    if not isinstance(created, str) or not created:
        return 0
    import datetime
    text = created.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    date, sep, rest = text.partition(".")
    if sep:
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        text = date + rest[i:]
    try:
        return int(datetime.datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0
