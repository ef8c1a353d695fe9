"""Mounts and devices: Docker's defaults, binds, API mounts, tmpfs,
--device and what --privileged exposes."""
import os
import stat

from berth.errors import ConfigError, NotFound

_PROPAGATION = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_BIND_FLAGS = ("ro", "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated") + _PROPAGATION


def default_mounts(opts):
    ro = [] if opts.privileged else ["ro"]
    out = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev"] + ro},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime"] + ro},
    ]
    if opts.shm_path:
        # a shareable IPC's, or the one of the container whose IPC is joined
        out.append({"destination": "/dev/shm", "type": "bind", "source": opts.shm_path,
                    "options": ["rbind", "nosuid", "noexec", "nodev"]})
    elif opts.ipc_mode == "host":
        # sharing the host's IPC means sharing its POSIX shm too
        out.append({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                    "options": ["rbind", "nosuid", "noexec", "nodev"]})
    elif opts.ipc_mode != "none":  # dockerd's "none": no /dev/shm at all
        size = int(opts.shm_size or 64 << 20)
        if size <= 0:
            raise ConfigError(f"shm_size: {size} must be positive")
        out.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                    "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={size}"]})
    if opts.ipc_mode != "host":
        # a fresh mqueue shows the queues of the IPC namespace it is in, joined or not
        out.append({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                    "options": ["nosuid", "noexec", "nodev"]})
    return out


def _abs(path, field, what):
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"{field}: {what} {path!r} must be an absolute path")
    return os.path.normpath(path)


def _bind(source, dest, flags, field, recursive=True):
    opts = ["rbind" if recursive else "bind"]
    prop = "rprivate"
    for flag in flags:
        if flag not in _BIND_FLAGS:
            raise ConfigError(f"{field}: unknown bind option {flag!r}",
                              hint="ro, rw or a propagation mode like rslave")
        if flag in _PROPAGATION:
            prop = flag
        elif flag == "ro":
            opts.append("ro")
    opts.append(prop)
    return {"destination": dest, "type": "bind", "source": source, "options": opts}


def user_mounts(opts):
    out = []
    for i, spec in enumerate(opts.binds or ()):
        field = f"binds[{i}]"
        if not isinstance(spec, str):
            raise ConfigError(f"{field}: must be a \"/host:/container[:options]\" string")
        parts = spec.split(":")
        if len(parts) < 2 or len(parts) > 3:
            raise ConfigError(f"{field}: {spec!r} is not \"/host:/container[:options]\"")
        if not parts[0].startswith("/"):
            raise ConfigError(f"{field}: source {parts[0]!r} must be an absolute path",
                              hint="named volumes are resolved to paths by the engine first")
        flags = parts[2].split(",") if len(parts) == 3 and parts[2] else []
        out.append(_bind(_abs(parts[0], field, "source"), _abs(parts[1], field, "destination"),
                         flags, field))
    for i, m in enumerate(opts.mounts or ()):
        out.append(_api_mount(m, f"mounts[{i}]"))
    for dest, options in (opts.tmpfs or {}).items():
        field = f"tmpfs[{dest!r}]"
        extra = [o for o in (options or "").split(",") if o]
        out.append({"destination": _abs(dest, field, "destination"), "type": "tmpfs",
                    "source": "tmpfs", "options": _tmpfs_options(extra)})
    seen = set()
    for m in out:
        if m["destination"] in seen:
            raise ConfigError(f"mounts: duplicate mount point {m['destination']}")
        seen.add(m["destination"])
    return out


def _tmpfs_options(extra):
    # Docker's defaults; a later option of the user wins inside the kernel
    return ["nosuid", "nodev", "noexec"] + list(extra)


def _api_mount(m, field):
    if not isinstance(m, dict):
        raise ConfigError(f"{field}: must be an object")
    kind = m.get("Type") or "bind"
    dest = _abs(m.get("Target"), field, "Target")
    if kind in ("bind", "volume"):
        # a volume arrives here already resolved to its directory
        source = _abs(m.get("Source"), field, "Source")
        flags = ["ro"] if m.get("ReadOnly") else []
        bopts = m.get("BindOptions") or {}
        if bopts.get("Propagation"):
            flags.append(bopts["Propagation"])
        # NonRecursive: the mounts below the source stay out, as with runc's "bind"
        return _bind(source, dest, flags, field, recursive=not bopts.get("NonRecursive"))
    if kind == "tmpfs":
        t = m.get("TmpfsOptions") or {}
        extra = []
        if t.get("SizeBytes"):
            extra.append(f"size={int(t['SizeBytes'])}")
        if t.get("Mode"):
            extra.append(f"mode={int(t['Mode']):o}")
        if m.get("ReadOnly"):
            extra.append("ro")
        return {"destination": dest, "type": "tmpfs", "source": "tmpfs",
                "options": _tmpfs_options(extra)}
    raise ConfigError(f"{field}: mount type {kind!r} is not supported",
                      hint="bind, volume or tmpfs")


def merge(defaults, extra):
    """User mounts replace a default at the same destination (Docker lets
    -v /host:/dev/shm win); parents come before children."""
    taken = {m["destination"] for m in extra}
    out = [m for m in defaults if m["destination"] not in taken]
    # stable sort by depth keeps the defaults' order among equals
    return out + sorted(extra, key=lambda m: m["destination"].rstrip("/").count("/"))


# ---------------------------------------------------------------- devices

# Docker's default allow list; "m" on all nodes matters only with MKNOD
DEFAULT_DEVICE_RULES = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, None, "rwm"), ("c", 10, 200, "rwm"),
)


def _rule(kind, major, minor, access, allow=True):
    r = {"allow": allow, "type": kind, "access": access}
    if major is not None:
        r["major"] = major
    if minor is not None:
        r["minor"] = minor
    return r


def _node(host_path, ctr_path, field):
    try:
        st = os.stat(host_path)
    except OSError as e:
        raise NotFound(f"{field}: device {host_path}", errno=e.errno) from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise ConfigError(f"{field}: {host_path} is not a device node")
    return {"path": ctr_path, "type": kind, "major": os.major(st.st_rdev),
            "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
            "uid": 0, "gid": 0}


def _perms(text):
    return bool(text) and len(text) <= 3 and all(c in "rwm" for c in text) \
        and len(set(text)) == len(text)


def devices(opts, host):
    """-> (linux.devices, linux.resources.devices)"""
    nodes = []
    rules = [{"allow": False, "access": "rwm"}]
    if opts.privileged:
        nodes = host_devices(host.dev_root)
        rules = [{"allow": True, "access": "rwm"}]
    else:
        rules += [_rule(*r) for r in DEFAULT_DEVICE_RULES]
    for i, spec in enumerate(opts.devices or ()):
        field = f"devices[{i}]"
        if isinstance(spec, dict):  # the API's DeviceMapping
            parts = [spec.get("PathOnHost"), spec.get("PathInContainer") or spec.get("PathOnHost"),
                     spec.get("CgroupPermissions") or "rwm"]
        else:
            parts = str(spec).split(":")
        if len(parts) == 2 and _perms(parts[1]):
            parts = [parts[0], parts[0], parts[1]]
        if not 1 <= len(parts) <= 3:
            raise ConfigError(f"{field}: {spec!r} is not \"/dev/x[:/dev/y[:rwm]]\"")
        host_path = _abs(parts[0], field, "device")
        ctr = _abs(parts[1], field, "container path") if len(parts) > 1 and parts[1] else host_path
        perms = parts[2] if len(parts) > 2 else "rwm"
        if not _perms(perms):
            raise ConfigError(f"{field}: permissions {perms!r} must be made of r, w and m")
        node = _node(host_path, ctr, field)
        nodes = [n for n in nodes if n["path"] != ctr] + [node]
        if not opts.privileged:
            rules.append(_rule(node["type"], node["major"], node["minor"], perms))
    if not opts.privileged:
        rules += [cgroup_rule(r, f"device_cgroup_rules[{i}]")
                  for i, r in enumerate(opts.device_cgroup_rules or ())]
    return nodes, rules


def cgroup_rule(text, field):
    """--device-cgroup-rule "c 1:3 rwm" ("a *:* r", "b 8:* m") -> a rule."""
    parts = str(text).split()
    if len(parts) != 3 or parts[0] not in ("a", "b", "c") or not _perms(parts[2]):
        raise ConfigError(f"{field}: invalid device cgroup rule format: '{text}'")
    major, sep, minor = parts[1].partition(":")
    nums = []
    for n in (major, minor):
        if n != "*" and not n.isdigit():
            raise ConfigError(f"{field}: invalid device cgroup rule format: '{text}'")
        nums.append(None if n == "*" else int(n))
    if not sep:
        raise ConfigError(f"{field}: invalid device cgroup rule format: '{text}'")
    return _rule(parts[0], nums[0], nums[1], parts[2])


_SKIP_DIRS = ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev")


def host_devices(root="/dev"):
    """Every device node under root, as --privileged exposes them (minus
    the console and the per-container pts/shm/mqueue)."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        if dirpath == root:
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in sorted(files):
            p = os.path.join(dirpath, name)
            if p == os.path.join(root, "console"):
                continue
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                continue
            ctr = "/dev/" + os.path.relpath(p, root)
            out.append({"path": ctr, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                        "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                        "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
    return out
