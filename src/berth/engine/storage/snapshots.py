"""Snapshot drivers: where image layers are unpacked and how a container's
root filesystem is made from them.

Layout under a driver's root:
  layers/<id>/           a committed layer
  layers/<id>.partial/   a layer being unpacked (removed by cleanup_stale)
  containers/<cid>/      per-container state (see each driver)
  mounts/<cid>.json      written *before* a container's rootfs is mounted or
                         copied, removed after it is undone, so a crash
                         leaves a record cleanup_stale() can act on

overlay: each layer dir holds only that layer's changes (whiteouts as 0:0
  char devices, opaque dirs by xattr: unpack with whiteout="overlay"). A
  container's rootfs is an overlay mount with the layers as lowerdir and a
  per-container upper and work dir; layers are shared, nothing is copied.
vfs: each layer dir holds the full tree of the layer applied on its parent
  (a copy of the parent, unpacked with whiteout="delete"), and a container's
  rootfs is one more full copy. The cost: every layer and every container
  takes the disk space and creation time of the whole image. It works on any
  filesystem and in any namespace, which is why it is the fallback.

Layer ids are ordered bottom first, as in an image manifest.
"""
import os

from berth.errors import BerthError, Conflict, NotFound, SysError
from berth.oci import jsonio
from berth.sys import libc, rootless
from berth.sys.mountinfo import unescape

_ID_BAD = frozenset("/\0:,\\")
# mount(2) data is one page; paths past this make the kernel refuse
_MAX_OPTS = 4000


def _rmtree(path, ignore_errors=False):
    import shutil   # imports re via fnmatch; only removal needs it
    shutil.rmtree(path, ignore_errors=ignore_errors)


def layer_key(layer_id):
    """The directory name of a layer: digests ("sha256:<hex>", as the image
    store names chain ids) lose the algorithm prefix, whose ':' would split
    overlay's lowerdir list."""
    if isinstance(layer_id, str) and layer_id.startswith("sha256:"):
        layer_id = layer_id[len("sha256:"):]
    return _check_id(layer_id, "layer")


def _check_id(value, what):
    if (not isinstance(value, str) or not value or value in (".", "..")
            or any(c in _ID_BAD for c in value) or value.endswith(".partial")):
        raise BerthError(f"{what}: invalid id {value!r}")
    return value


def mounted_at(path):
    """The mountinfo line of the topmost mount at path, or None."""
    path = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            if unescape(fields[4]) == path:
                found = line.rstrip("\n")
    return found


def _shift_owners(root, idmap):
    uid, gid, size = idmap
    for top, dirs, files in os.walk(root):
        for name in [top] + [os.path.join(top, n) for n in dirs + files]:
            st = os.lstat(name)
            if st.st_uid >= size or st.st_gid >= size:
                raise BerthError(f"{name}: owner {st.st_uid}:{st.st_gid} is outside the "
                                 f"container's {size} ids")
            os.chown(name, uid + st.st_uid, gid + st.st_gid, follow_symlinks=False)


def _copy_tree(src, dst):
    """Full copy keeping owners, modes, times, xattrs, hardlinks, devices."""
    import subprocess
    os.makedirs(dst, exist_ok=True)
    r = subprocess.run(["cp", "-a", "--reflink=auto", f"{src}/.", dst],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BerthError(f"copy {src} -> {dst}: {r.stderr.strip()}")


class Driver:
    name = None
    whiteout = None   # how to call unpack.extract for prepare_layer's dir

    def __init__(self, root):
        self.root = os.path.abspath(root)
        # in a user namespace: no device nodes, user.* overlay xattrs
        self.rootless = rootless.in_user_namespace()
        if any(c in self.root for c in ":,"):
            raise BerthError(f"storage root {self.root}: ':' and ',' are not allowed "
                             "(they separate overlay mount options)")
        self.layers = os.path.join(self.root, "layers")
        self.containers = os.path.join(self.root, "containers")
        self.mounts = os.path.join(self.root, "mounts")
        for d in (self.layers, self.containers, self.mounts):
            os.makedirs(d, mode=0o700, exist_ok=True)

    # -- layers

    def layer_path(self, layer_id):
        return os.path.join(self.layers, layer_key(layer_id))

    def has_layer(self, layer_id):
        return os.path.isdir(self.layer_path(layer_id))

    def prepare_layer(self, layer_id, parent_ids=()):
        """A fresh directory to unpack layer_id into (on top of parent_ids,
        bottom first); commit_layer makes it visible."""
        final = self.layer_path(layer_id)
        if os.path.exists(final):
            raise Conflict(f"layer {layer_id}: exists already")
        for p in parent_ids:
            if not self.has_layer(p):
                raise NotFound(f"layer {layer_id}: parent layer {p} not found")
        partial = final + ".partial"
        if os.path.lexists(partial):
            _rmtree(partial)
        self._fill_new_layer(partial, list(parent_ids))
        return partial

    def _fill_new_layer(self, path, parent_ids):
        os.mkdir(path, 0o755)

    def commit_layer(self, layer_id):
        final = self.layer_path(layer_id)
        partial = final + ".partial"
        if not os.path.isdir(partial):
            raise NotFound(f"layer {layer_id}: nothing prepared to commit")
        os.rename(partial, final)
        return final

    def abort_layer(self, layer_id):
        partial = self.layer_path(layer_id) + ".partial"
        if os.path.lexists(partial):
            _rmtree(partial)

    def remove_layer(self, layer_id):
        path = self.layer_path(layer_id)
        key = layer_key(layer_id)
        for rec in self._records():
            if key in [layer_key(lid) for lid in rec.get("layers", ())]:
                raise Conflict(f"layer {layer_id}: in use by container {rec.get('container')}")
        if not os.path.lexists(path):
            raise NotFound(f"layer {layer_id}: not found")
        _rmtree(path)

    # -- records

    def _record_path(self, cid):
        return os.path.join(self.mounts, _check_id(cid, "container") + ".json")

    def _write_record(self, cid, rec):
        # a record of mounts, which a reboot ends: no fsync needed
        jsonio.write_atomic(self._record_path(cid), rec, durable=False)

    def _read_record(self, cid):
        path = self._record_path(cid)
        if not os.path.exists(path):
            return None
        try:
            return jsonio.load_file(path)
        except BerthError:
            return {}   # torn by a crash: cleanup falls back to the default paths

    def _drop_record(self, cid):
        try:
            os.unlink(self._record_path(cid))
        except FileNotFoundError:
            pass

    def _records(self):
        out = []
        for n in sorted(os.listdir(self.mounts)):
            if n.endswith(".json"):
                try:
                    out.append(jsonio.load_file(os.path.join(self.mounts, n)))
                except BerthError:
                    continue
        return out

    def container_path(self, cid):
        return os.path.join(self.containers, _check_id(cid, "container"))

    def remove_container(self, container_id):
        self.unmount(container_id)
        path = self.container_path(container_id)
        if os.path.lexists(path):
            _rmtree(path)
        self._drop_record(container_id)

    def cleanup_stale(self, live_ids=()):
        """After a crash: undo mounts and half-made copies of containers not in
        live_ids, and drop half-unpacked layers. Returns the container ids
        cleaned."""
        live = set(live_ids)
        for n in os.listdir(self.layers):
            if n.endswith(".partial"):
                _rmtree(os.path.join(self.layers, n), ignore_errors=True)
        cleaned = []
        for n in sorted(os.listdir(self.mounts)):
            if n.endswith(".json") and n[:-5] not in live:
                if self._cleanup_one(n[:-5]):
                    cleaned.append(n[:-5])
            elif ".json.tmp" in n:
                os.unlink(os.path.join(self.mounts, n))
        return cleaned


class OverlayDriver(Driver):
    """containers/<cid>/{upper,work,merged}; mount record while mounted."""
    name = "overlay"
    whiteout = "overlay"

    def mount(self, container_id, layer_ids, idmap=None):
        """idmap: (uid, gid, size) for a container in its own user
        namespace: the layers are stacked through idmapped mounts (files
        owned by 0 on disk belong to the container's root, shared layers
        stay unchanged) and the upper dir belongs to that root."""
        cdir = self.container_path(container_id)
        merged = os.path.join(cdir, "merged")
        if os.path.isdir(merged) and mounted_at(merged):
            return merged
        layer_ids = list(layer_ids)
        lowers = []
        for lid in reversed(layer_ids):   # overlay wants the top layer first
            if not self.has_layer(lid):
                raise NotFound(f"container {container_id}: layer {lid} not found")
            lowers.append(self.layer_path(lid))
        for d in ("upper", "work", "merged"):
            os.makedirs(os.path.join(cdir, d), mode=0o755, exist_ok=True)
        if not lowers:
            # overlay needs a lowerdir; an image without layers gets an empty one
            empty = os.path.join(cdir, "empty")
            os.makedirs(empty, mode=0o755, exist_ok=True)
            lowers = [empty]
        rec = {"driver": self.name, "container": container_id, "target": merged,
               "layers": layer_ids}
        if idmap:
            mapped = [os.path.join(cdir, "idmapped", str(i)) for i in range(len(lowers))]
            rec["idmapped"] = mapped
        opts = (f"lowerdir={':'.join(mapped if idmap else lowers)},upperdir={cdir}/upper,"
                f"workdir={cdir}/work" + (",userxattr" if self.rootless else ""))
        if len(opts) > _MAX_OPTS:
            raise BerthError(f"container {container_id}: {len(layer_ids)} layers make the "
                             f"overlay options {len(opts)} bytes, over the kernel's page",
                             hint="use a shorter storage root or squash the image")
        self._write_record(container_id, rec)
        try:
            if idmap:
                self._idmap_lowers(lowers, mapped, idmap, cdir)
            libc.mount("overlay", merged, "overlay", 0, opts)
        except SysError:
            self._cleanup_one(container_id)
            raise
        return merged

    @staticmethod
    def _idmap_lowers(lowers, mapped, idmap, cdir):
        uid, gid, size = idmap
        fd = libc.userns_fd(f"0 {uid} {size}", f"0 {gid} {size}")
        try:
            for src, dst in zip(lowers, mapped):
                os.makedirs(dst, mode=0o700, exist_ok=True)
                if not mounted_at(dst):
                    libc.idmapped_bind(src, dst, fd)
        finally:
            os.close(fd)
        for d in ("upper", "work"):
            os.chown(os.path.join(cdir, d), uid, gid)

    def unmount(self, container_id, keep_record=False):
        """keep_record: a stopped container's unmount; the record (its
        layers, in use until rm) stays and mount() brings it back."""
        if not keep_record:
            self._cleanup_one(container_id)
            return
        rec = self._read_record(container_id) or {}
        self._umount(rec.get("target") or os.path.join(self.container_path(container_id), "merged"))
        for d in rec.get("idmapped", ()):
            self._umount(d)

    @staticmethod
    def _umount(target):
        """Every mount stacked at target. The kernel says when none is
        left (EINVAL): reading the mount table instead costs more than the
        unmount on a host with many mounts."""
        import errno
        while True:
            try:
                libc.umount2(target)
                continue
            except SysError as e:
                if e.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                    return
                if e.errno != errno.EBUSY:
                    raise
            try:
                # a process still has it open: detach now, freed when it exits
                libc.umount2(target, libc.MNT_DETACH)
            except SysError as e:
                if e.errno in (errno.EINVAL, errno.ENOENT):
                    return
                raise

    def _cleanup_one(self, cid):
        rec = self._read_record(cid) or {}
        target = rec.get("target") or os.path.join(self.container_path(cid), "merged")
        self._umount(target)
        for d in rec.get("idmapped", ()):
            self._umount(d)
        self._drop_record(cid)
        return True


class VfsDriver(Driver):
    """containers/<cid>/rootfs, a full copy; the record says whether the
    copy finished ("ready") and stays until remove_container."""
    name = "vfs"
    whiteout = "delete"

    def _fill_new_layer(self, path, parent_ids):
        if parent_ids:
            _copy_tree(self.layer_path(parent_ids[-1]), path)
        else:
            os.mkdir(path, 0o755)

    def mount(self, container_id, layer_ids, idmap=None):
        """idmap: (uid, gid, size): no idmapped mounts here, so the copy is
        chowned into the container's range instead (the fallback)."""
        layer_ids = list(layer_ids)
        rootfs = os.path.join(self.container_path(container_id), "rootfs")
        rec = self._read_record(container_id)
        if rec and rec.get("state") == "ready" and os.path.isdir(rootfs):
            return rootfs   # a restart keeps what the container wrote
        for lid in layer_ids:
            if not self.has_layer(lid):
                raise NotFound(f"container {container_id}: layer {lid} not found")
        base = {"driver": self.name, "container": container_id, "target": rootfs,
                "layers": layer_ids}
        self._write_record(container_id, dict(base, state="copying"))
        if os.path.lexists(rootfs):
            _rmtree(rootfs)
        if layer_ids:
            _copy_tree(self.layer_path(layer_ids[-1]), rootfs)
        else:
            os.makedirs(rootfs, mode=0o755)
        if idmap:
            _shift_owners(rootfs, idmap)
        self._write_record(container_id, dict(base, state="ready"))
        return rootfs

    def unmount(self, container_id, keep_record=False):
        pass   # nothing is mounted; the copy is the container's filesystem

    def _cleanup_one(self, cid):
        rec = self._read_record(cid) or {}
        if rec.get("state") == "ready":
            return False   # a finished copy is the container's filesystem: keep it
        _rmtree(os.path.join(self.container_path(cid), "rootfs"), ignore_errors=True)
        self._drop_record(cid)
        return True


DRIVERS = {"overlay": OverlayDriver, "vfs": VfsDriver}


def overlay_works(root):
    """Mount a tiny overlay under root (same filesystem the layers will use)
    and write through it."""
    import tempfile
    os.makedirs(root, mode=0o700, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".overlay-probe-", dir=root)
    try:
        dirs = {d: os.path.join(tmp, d) for d in ("lower", "upper", "work", "merged")}
        for d in dirs.values():
            os.mkdir(d)
        with open(os.path.join(dirs["lower"], "f"), "w") as f:
            f.write("x")
        try:
            libc.mount("overlay", dirs["merged"], "overlay", 0,
                       f"lowerdir={dirs['lower']},upperdir={dirs['upper']},"
                       f"workdir={dirs['work']}"
                       + (",userxattr" if rootless.in_user_namespace() else ""))
        except (SysError, OSError):
            return False
        try:
            os.unlink(os.path.join(dirs["merged"], "f"))   # needs a whiteout
            return not os.path.exists(os.path.join(dirs["merged"], "f"))
        except OSError:
            return False
        finally:
            OverlayDriver._umount(dirs["merged"])
    finally:
        _rmtree(tmp, ignore_errors=True)


def pick_driver(root, name=None):
    """The driver named, or overlay where it works under root, else vfs."""
    if name is not None:
        if name not in DRIVERS:
            raise BerthError(f"storage driver {name!r}: unknown",
                             hint="one of " + ", ".join(sorted(DRIVERS)))
        return DRIVERS[name](os.path.join(root, name))
    if overlay_works(root):
        return OverlayDriver(os.path.join(root, "overlay"))
    return VfsDriver(os.path.join(root, "vfs"))
