"""Named volumes, local driver only, laid out as Docker's:

  <root>/<name>/_data       what containers mount
  <root>/<name>/meta.json   Name, Driver, Mountpoint, CreatedAt, Labels, Options, Scope

meta.json is written tmp + fsync + rename; a directory without it (a crash
between mkdir and the rename) is not a volume and is collected by the next
create of that name. Which containers use a volume is the containers
manager's knowledge: the engine sets `in_use` to a callable(name) -> ids.

Anonymous volumes (create without a name) get 64 hex characters and the
label com.docker.volume.anonymous, as Docker >= 23 marks them; prune removes
only those unless asked with the filter all=true."""
import os
import re
import shutil
import threading
import time

from berth.errors import BerthError, ConfigError, Conflict, NotFound
from berth.engine.labels import label_matches
from berth.oci import jsonio

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
# Docker's local driver options; mounting a tmpfs/nfs/device volume is not
# there yet, so they are refused with a clear message instead of ignored
_LOCAL_OPTIONS = ("type", "device", "o", "size")
LIST_FILTERS = ("name", "label", "dangling", "driver")
PRUNE_FILTERS = ("label", "label!", "all")


def check_name(name):
    if not isinstance(name, str) or not name:
        raise ConfigError("volume name is empty")
    if len(name) < 2:
        raise ConfigError(f"volume name {name!r} is too short, names should be at least "
                          "two alphanumeric characters")
    if not _NAME.match(name):
        raise ConfigError(f"{name!r} includes invalid characters for a local volume name, "
                          'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed',
                          hint="to mount a host directory, give an absolute path")
    if len(name) > 255:
        raise ConfigError(f"volume name {name[:32]}...: longer than 255 characters")
    return name


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _truthy(values, what):
    out = set()
    for v in values:
        lv = v.lower()
        if lv in ("1", "true"):
            out.add(True)
        elif lv in ("0", "false"):
            out.add(False)
        else:
            raise ConfigError(f"invalid filter '{what}={v}': expected true or false")
    return out


def dir_usage(path):
    """Bytes of the regular files under path, each inode counted once
    (Docker's UsageData.Size); symlinks are not followed."""
    total = 0
    seen = set()
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return 0
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if e.is_dir(follow_symlinks=False):
                    if st.st_dev == dev:
                        stack.append(e.path)
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                total += st.st_size
    return total


class Volumes:
    def __init__(self, root, events=None):
        self.root = os.path.abspath(root)
        self.events = events
        self.in_use = lambda name: []
        self._lock = threading.RLock()
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.collect()

    # paths

    def _dir(self, name):
        return os.path.join(self.root, check_name(name))

    def mountpoint(self, name):
        return self.get(name)["Mountpoint"]

    def _meta_path(self, name):
        return os.path.join(self._dir(name), "meta.json")

    def _emit(self, action, name):
        if self.events is not None:
            self.events.emit("volume", action, name, {"driver": "local"})

    # reading

    def _load(self, name):
        path = self._meta_path(name)
        try:
            meta = jsonio.load_file(path, f"volume {name} meta.json")
        except ConfigError:
            if not os.path.exists(path):
                raise NotFound(f"get {name}: no such volume") from None
            raise
        meta["Mountpoint"] = os.path.join(self.root, name, "_data")
        meta.setdefault("Labels", {})
        meta.setdefault("Options", {})
        meta["Scope"] = "local"
        return meta

    def get(self, name):
        if not isinstance(name, str) or not _NAME.match(name or ""):
            raise NotFound(f"get {name}: no such volume")
        with self._lock:
            return self._load(name)

    def names(self):
        try:
            entries = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in entries if _NAME.match(n)
                and os.path.isfile(os.path.join(self.root, n, "meta.json"))]

    def list(self, filters=None):
        """Docker's volume list filters: name (substring), label (key or
        key=value), dangling (not used by any container), driver."""
        filters = filters or {}
        for k in filters:
            if k not in LIST_FILTERS:
                raise ConfigError(f"invalid filter '{k}'",
                                  hint="volume filters: " + ", ".join(LIST_FILTERS))
        dangling = _truthy(filters.get("dangling", []), "dangling")
        out = []
        with self._lock:
            for name in self.names():
                try:
                    v = self._load(name)
                except (NotFound, ConfigError):
                    continue
                if "name" in filters and not any(f in name for f in filters["name"]):
                    continue
                if "driver" in filters and v["Driver"] not in filters["driver"]:
                    continue
                if "label" in filters and not label_matches(filters["label"], v["Labels"]):
                    continue
                if dangling and (not self.in_use(name)) not in dangling:
                    continue
                out.append(v)
        return out

    def usage(self, name):
        return dir_usage(self.get(name)["Mountpoint"])

    # writing

    def create(self, name=None, driver="local", labels=None, options=None):
        driver = driver or "local"
        if driver != "local":
            raise NotFound(f"error looking up volume plugin {driver}: plugin {driver!r} not found",
                           hint="berth has only the local volume driver")
        labels = dict(labels or {})
        options = dict(options or {})
        for k, v in list(labels.items()) + list(options.items()):
            if not isinstance(k, str) or not isinstance(v, str):
                raise ConfigError("volume labels and options: expected string keys and values")
        for k in options:
            if k not in _LOCAL_OPTIONS:
                raise ConfigError(f"invalid option key: {k!r}",
                                  hint="the local driver knows " + ", ".join(_LOCAL_OPTIONS))
        if options:
            raise ConfigError("volume options (" + ", ".join(sorted(options)) + ") are not "
                              "supported by berth's local driver yet",
                              hint="create the volume without -o; tmpfs, nfs and device "
                                   "volumes need a mount that berth does not make yet")
        if name in (None, ""):
            name = os.urandom(32).hex()
            labels.setdefault(ANONYMOUS_LABEL, "")
        check_name(name)
        with self._lock:
            d = os.path.join(self.root, name)
            meta_path = os.path.join(d, "meta.json")
            if os.path.isfile(meta_path):
                return self._load(name)      # Docker: create of an existing name is a no-op
            os.makedirs(os.path.join(d, "_data"), mode=0o755, exist_ok=True)
            os.chmod(d, 0o701)
            meta = {"Name": name, "Driver": "local", "CreatedAt": _now(),
                    "Labels": labels, "Options": options, "Scope": "local"}
            jsonio.write_atomic(meta_path, meta, mode=0o600)
            jsonio.fsync_dir(d)
            jsonio.fsync_dir(self.root)
            v = self._load(name)
        self._emit("create", name)
        return v

    def remove(self, name, force=False):
        """force ignores a volume that is not there (as Docker's); a volume
        in use stays, force or not."""
        with self._lock:
            try:
                self.get(name)
            except NotFound:
                if force:
                    return
                raise
            users = list(self.in_use(name) or [])
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]",
                               hint="remove the containers that use it first")
            self._delete(name)
        self._emit("destroy", name)

    def _delete(self, name):
        d = self._dir(name)
        # the meta goes first: a crash half-way leaves no half volume behind
        trash = os.path.join(self.root, f".trash-{name}-{os.urandom(4).hex()}")
        os.rename(d, trash)
        jsonio.fsync_dir(self.root)
        try:
            shutil.rmtree(trash)
        except OSError as e:
            raise BerthError(f"remove volume {name}: cannot delete {trash}", errno=e.errno)

    def prune(self, filters=None):
        """Remove unused volumes: anonymous ones only, or every one with
        all=true; label / label! narrow it. -> (names removed, bytes reclaimed)."""
        filters = filters or {}
        for k in filters:
            if k not in PRUNE_FILTERS:
                raise ConfigError(f"invalid filter '{k}'",
                                  hint="volume prune filters: " + ", ".join(PRUNE_FILTERS))
        every = True in _truthy(filters.get("all", []), "all")
        removed, freed = [], 0
        with self._lock:
            for name in self.names():
                try:
                    v = self._load(name)
                except (NotFound, ConfigError):
                    continue
                labels = v["Labels"]
                if not every and ANONYMOUS_LABEL not in labels:
                    continue
                if "label" in filters and not label_matches(filters["label"], labels):
                    continue
                if "label!" in filters and any(label_matches([w], labels) for w in filters["label!"]):
                    continue
                if self.in_use(name):
                    continue
                size = dir_usage(v["Mountpoint"])
                self._delete(name)
                removed.append(name)
                freed += size
        for name in removed:
            self._emit("destroy", name)
        return removed, freed

    def collect(self):
        """Remove the remains of crashed creates and removes."""
        with self._lock:
            for n in os.listdir(self.root):
                p = os.path.join(self.root, n)
                if n.startswith(".trash-") or (_NAME.match(n) and os.path.isdir(p)
                                              and not os.path.exists(os.path.join(p, "meta.json"))):
                    shutil.rmtree(p, ignore_errors=True)
