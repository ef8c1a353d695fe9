"""Reading and checking an OCI runtime bundle's config.json.

Every check names the field it rejects, so a user can find the line: errors
read like `linux.namespaces[2].type: unknown namespace "foo"`."""
import os

from berth.errors import ConfigError
from berth.oci import jsonio
from berth.oci.fields import objects

NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

# sysctls that are namespaced, and the namespace that must be private for them
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def load(bundle, path="config.json"):
    full = os.path.join(bundle, path)
    cfg = jsonio.load_file(full, full)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: top level must be an object")
    return cfg


def _get(d, key, kind, field, default=None):
    v = d.get(key, default)
    if v is not None and not isinstance(v, kind):
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(f"{field}: must be {_article(want)}, not {type(v).__name__}")
    return v


def _article(word):
    return {"dict": "an object", "list": "a list", "str": "a string", "int": "a number",
            "bool": "a boolean"}.get(word, word)


def rootfs_path(cfg, bundle):
    root = _get(cfg, "root", dict, "root")
    if not root or not root.get("path"):
        raise ConfigError("root.path: missing (the bundle needs a root filesystem)")
    path = _get(root, "path", str, "root.path")
    full = os.path.realpath(os.path.join(bundle, path))
    if not os.path.isdir(full):
        raise ConfigError(f"root.path: rootfs {full} does not exist or is not a directory")
    return full


def namespaces(cfg):
    """Returns {type: path or None} in the spec's order."""
    linux = _get(cfg, "linux", dict, "linux") or {}
    out = {}
    for field, ns in objects(linux.get("namespaces"), "linux.namespaces"):
        t = ns.get("type")
        if t not in NAMESPACES:
            raise ConfigError(f'{field}.type: unknown namespace "{t}"',
                              hint="one of " + ", ".join(NAMESPACES))
        if t in out:
            raise ConfigError(f'{field}.type: namespace "{t}" listed twice')
        path = _get(ns, "path", str, f"{field}.path") or None
        if path and not os.path.exists(path):
            raise ConfigError(f"{field}.path: {path} does not exist")
        out[t] = path
    return out


def check_process(proc, field="process", need_args=True):
    if not isinstance(proc, dict):
        raise ConfigError(f"{field}: missing or not an object")
    args = _get(proc, "args", list, f"{field}.args")
    if need_args and not args:
        raise ConfigError(f"{field}.args: empty (nothing to run)")
    for i, a in enumerate(args or ()):
        if not isinstance(a, str):
            raise ConfigError(f"{field}.args[{i}]: must be a string")
    cwd = _get(proc, "cwd", str, f"{field}.cwd") or "/"
    if not cwd.startswith("/"):
        raise ConfigError(f"{field}.cwd: {cwd!r} must be an absolute path")
    for i, e in enumerate(_get(proc, "env", list, f"{field}.env") or ()):
        if not isinstance(e, str) or "=" not in e:
            raise ConfigError(f"{field}.env[{i}]: {e!r} is not KEY=value")
    user = _get(proc, "user", dict, f"{field}.user") or {}
    for k in ("uid", "gid", "umask"):
        v = _get(user, k, int, f"{field}.user.{k}")
        if v is not None and v < 0:
            raise ConfigError(f"{field}.user.{k}: must not be negative")
    for i, g in enumerate(_get(user, "additionalGids", list, f"{field}.user.additionalGids") or ()):
        if not isinstance(g, int) or g < 0:
            raise ConfigError(f"{field}.user.additionalGids[{i}]: {g!r} is not a gid")
    for i, r in enumerate(_get(proc, "rlimits", list, f"{field}.rlimits") or ()):
        f = f"{field}.rlimits[{i}]"
        if not isinstance(r, dict) or r.get("type") not in RLIMITS:
            raise ConfigError(f"{f}.type: unknown rlimit {r.get('type') if isinstance(r, dict) else r!r}")
        soft, hard = r.get("soft"), r.get("hard")
        if not isinstance(soft, int) or not isinstance(hard, int) or soft > hard:
            raise ConfigError(f"{f}: soft {soft!r} and hard {hard!r} must be numbers with soft <= hard")
    _get(proc, "oomScoreAdj", int, f"{field}.oomScoreAdj")
    cs = _get(proc, "consoleSize", dict, f"{field}.consoleSize")
    if cs and not (isinstance(cs.get("height"), int) and isinstance(cs.get("width"), int)):
        raise ConfigError(f"{field}.consoleSize: needs numbers height and width")


def _check_mappings(linux, key):
    maps = _get(linux, key, list, f"linux.{key}") or []
    for i, m in enumerate(maps):
        f = f"linux.{key}[{i}]"
        if not isinstance(m, dict) or not all(
                isinstance(m.get(k), int) and m.get(k) >= 0 for k in ("containerID", "hostID", "size")):
            raise ConfigError(f"{f}: needs non-negative numbers containerID, hostID and size")
        if m["size"] == 0:
            raise ConfigError(f"{f}.size: must be at least 1")
    return maps


def _check_mounts(cfg):
    for f, m in objects(cfg.get("mounts"), "mounts"):
        dest = _get(m, "destination", str, f"{f}.destination")
        if not dest:
            raise ConfigError(f"{f}.destination: missing")
        _get(m, "type", str, f"{f}.type")
        _get(m, "source", str, f"{f}.source")
        for j, o in enumerate(_get(m, "options", list, f"{f}.options") or ()):
            if not isinstance(o, str):
                raise ConfigError(f"{f}.options[{j}]: must be a string")


def _check_sysctl(linux, ns):
    for key in _get(linux, "sysctl", dict, "linux.sysctl") or {}:
        f = f'linux.sysctl["{key}"]'
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if "ipc" not in ns or ns["ipc"]:
                raise ConfigError(f"{f}: needs a new ipc namespace")
        elif key.startswith("net."):
            if "network" not in ns:
                raise ConfigError(f"{f}: needs a network namespace")
        elif key in ("kernel.hostname", "kernel.domainname"):
            raise ConfigError(f"{f}: set hostname/domainname fields instead")
        else:
            raise ConfigError(f"{f}: not a namespaced sysctl, it would change the host")


def validate(cfg, bundle):
    """Checks the whole config; returns (rootfs, namespaces) for the caller."""
    if not isinstance(_get(cfg, "ociVersion", str, "ociVersion"), str):
        raise ConfigError("ociVersion: missing")
    rootfs = rootfs_path(cfg, bundle)
    check_process(cfg.get("process"))
    ns = namespaces(cfg)
    linux = cfg.get("linux") or {}
    maps = _check_mappings(linux, "uidMappings") + _check_mappings(linux, "gidMappings")
    if maps and "user" not in ns:
        raise ConfigError("linux.uidMappings: mappings need a user namespace in linux.namespaces")
    if "user" in ns and not ns["user"]:
        if not (linux.get("uidMappings") and linux.get("gidMappings")):
            raise ConfigError("linux.uidMappings: a new user namespace needs uidMappings and gidMappings")
        for key, what in (("uidMappings", "uid"), ("gidMappings", "gid")):
            # the init works as the namespace's root before it switches user
            if not any(m["containerID"] == 0 for m in linux[key]):
                raise ConfigError(f"linux.{key}: container {what} 0 is not mapped",
                                  hint="map container id 0 to some host id")
    if _get(cfg, "hostname", str, "hostname") and ("uts" not in ns or ns["uts"]):
        raise ConfigError("hostname: setting it needs a new uts namespace")
    if _get(cfg, "domainname", str, "domainname") and ("uts" not in ns or ns["uts"]):
        raise ConfigError("domainname: setting it needs a new uts namespace")
    _check_mounts(cfg)
    _check_sysctl(linux, ns)
    if linux.get("timeOffsets") and ("time" not in ns or ns["time"]):
        raise ConfigError("linux.timeOffsets: offsets need a new time namespace")
    for key in ("maskedPaths", "readonlyPaths"):
        for i, p in enumerate(_get(linux, key, list, f"linux.{key}") or ()):
            if not isinstance(p, str) or not p.startswith("/"):
                raise ConfigError(f"linux.{key}[{i}]: {p!r} must be an absolute path")
    prop = _get(linux, "rootfsPropagation", str, "linux.rootfsPropagation")
    if prop and prop not in PROPAGATION:
        raise ConfigError(f'linux.rootfsPropagation: unknown propagation "{prop}"')
    return rootfs, ns


# what runc accepts for linux.rootfsPropagation; containerd's CRI plugin
# asks for rshared (Bidirectional volumes) and rslave (HostToContainer)
PROPAGATION = frozenset(p + kind for p in ("", "r")
                        for kind in ("shared", "slave", "private", "unbindable"))
