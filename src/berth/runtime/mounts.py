"""Mount option parsing and mounting onto targets resolved inside the rootfs.

Targets are opened with openat2(RESOLVE_IN_ROOT) and mounted through
/proc/self/fd/N: a symlink planted in the image (say /etc -> /) then resolves
inside the rootfs instead of redirecting the mount onto the host."""
import os
import stat

from berth.errors import BerthError, ConfigError, SysError
from berth.sys import libc as L

# option -> (flag, set?)
FLAGS = {
    "ro": (L.MS_RDONLY, True), "rw": (L.MS_RDONLY, False),
    "nosuid": (L.MS_NOSUID, True), "suid": (L.MS_NOSUID, False),
    "nodev": (L.MS_NODEV, True), "dev": (L.MS_NODEV, False),
    "noexec": (L.MS_NOEXEC, True), "exec": (L.MS_NOEXEC, False),
    "sync": (L.MS_SYNCHRONOUS, True), "async": (L.MS_SYNCHRONOUS, False),
    "dirsync": (L.MS_DIRSYNC, True), "remount": (L.MS_REMOUNT, True),
    "mand": (L.MS_MANDLOCK, True), "nomand": (L.MS_MANDLOCK, False),
    "atime": (L.MS_NOATIME, False), "noatime": (L.MS_NOATIME, True),
    "diratime": (L.MS_NODIRATIME, False), "nodiratime": (L.MS_NODIRATIME, True),
    "relatime": (L.MS_RELATIME, True), "norelatime": (L.MS_RELATIME, False),
    "strictatime": (L.MS_STRICTATIME, True), "nostrictatime": (L.MS_STRICTATIME, False),
    "bind": (L.MS_BIND, True), "rbind": (L.MS_BIND | L.MS_REC, True),
    "silent": (L.MS_SILENT, True), "loud": (L.MS_SILENT, False),
    "lazytime": (L.MS_LAZYTIME, True), "nolazytime": (L.MS_LAZYTIME, False),
    "nosymfollow": (L.MS_NOSYMFOLLOW, True), "symfollow": (L.MS_NOSYMFOLLOW, False),
}
PROPAGATION = {
    "private": L.MS_PRIVATE, "rprivate": L.MS_PRIVATE | L.MS_REC,
    "shared": L.MS_SHARED, "rshared": L.MS_SHARED | L.MS_REC,
    "slave": L.MS_SLAVE, "rslave": L.MS_SLAVE | L.MS_REC,
    "unbindable": L.MS_UNBINDABLE, "runbindable": L.MS_UNBINDABLE | L.MS_REC,
}
# options the runtime understands but the kernel must not see in `data`
IGNORED = {"defaults"}
# recursive attributes, applied to the whole subtree with mount_setattr
RECURSIVE = {"rro": L.MOUNT_ATTR_RDONLY, "rnosuid": L.MOUNT_ATTR_NOSUID,
             "rnodev": L.MOUNT_ATTR_NODEV, "rnoexec": L.MOUNT_ATTR_NOEXEC}
UNSUPPORTED = {"tmpcopyup", "idmap", "ridmap"}

# statvfs f_flag bits that a remount in a user namespace must keep (locked)
_ST_TO_MS = ((1, L.MS_RDONLY), (2, L.MS_NOSUID), (4, L.MS_NODEV), (8, L.MS_NOEXEC),
             (1024, L.MS_NOATIME), (2048, L.MS_NODIRATIME), (4096, L.MS_RELATIME))


def parse_options(options, field="mounts"):
    """Returns (flags, propagation, recursive mount_setattr bits, data)."""
    flags = 0
    prop = 0
    rattr = 0
    data = []
    for opt in options or ():
        if opt in FLAGS:
            bit, on = FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        elif opt in PROPAGATION:
            prop |= PROPAGATION[opt]
        elif opt in RECURSIVE:
            rattr |= RECURSIVE[opt]
        elif opt in UNSUPPORTED:
            raise ConfigError(f'{field}.options: "{opt}" is not supported yet')
        elif opt in IGNORED:
            continue
        else:
            data.append(opt)
    return flags, prop, rattr, ",".join(data)


def locked_flags(path):
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_TO_MS if f & st)


def open_in_root(rootfd, path, create=None):
    """O_PATH fd for `path` resolved inside rootfd. create: None, "dir" or
    "file" to make the missing final component (parents are made as dirs)."""
    rel = path.strip("/") or "."
    how = L.RESOLVE_IN_ROOT | L.RESOLVE_NO_MAGICLINKS
    try:
        return L.openat2(rootfd, rel, os.O_PATH | os.O_CLOEXEC, how)
    except SysError as e:
        if e.errno != 2 or create is None:
            raise SysError(f"open {path} in rootfs", errno=e.errno) from None
    # make the missing components one by one; every prefix is resolved
    # from the rootfs again so `..` and symlinks stay clamped to it
    parts = rel.split("/")
    for i in range(len(parts)):
        prefix = "/".join(parts[:i + 1])
        try:
            os.close(L.openat2(rootfd, prefix, os.O_PATH | os.O_CLOEXEC, how))
            continue
        except SysError as e:
            if e.errno != 2:
                raise SysError(f"open {path} in rootfs", errno=e.errno) from None
        parent = L.openat2(rootfd, "/".join(parts[:i]) or ".", os.O_PATH | os.O_CLOEXEC, how)
        try:
            if i == len(parts) - 1 and create == "file":
                os.close(os.open(parts[i], os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                                 0o644, dir_fd=parent))
            else:
                os.mkdir(parts[i], 0o755, dir_fd=parent)
        finally:
            os.close(parent)
    return L.openat2(rootfd, rel, os.O_PATH | os.O_CLOEXEC, how)


def delayed_readonly(m, flags=None):
    """A read-only tmpfs or /dev is mounted read-write and made read-only
    at the end, as runc does: the runtime still writes into it."""
    if flags is None:
        flags = parse_options(m.get("options"))[0]
    return bool(flags & L.MS_RDONLY) and not flags & L.MS_BIND and \
        (m.get("type") == "tmpfs" or m["destination"].rstrip("/") == "/dev")


def _ordinary_directory(rootfd, dest, typ, field):
    """proc and sysfs only go on a real directory: through a symlink in the
    image they would land somewhere the masks do not cover."""
    rel = dest.strip("/")
    parent = os.path.dirname(rel)
    try:
        pfd = open_in_root(rootfd, parent or "/") if parent else os.dup(rootfd)
    except SysError:
        return  # missing: made as a directory below
    try:
        st = os.stat(os.path.basename(rel), dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    finally:
        os.close(pfd)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f'{field}: filesystem "{typ}" must be mounted on ordinary directory; '
                          f"{dest} in the rootfs is not one")


def fd_path(fd):
    return f"/proc/self/fd/{fd}"


def is_bind_mount(m):
    flags = parse_options(m.get("options"))[0]
    return bool(flags & L.MS_BIND) or m.get("type") == "bind"


def bind_sources(mounts, bundle, userns):
    """{index: source} for the bind mounts, made by the runtime before the
    container's process exists: a relative source is the bundle's (as runc
    reads it), and with a new user namespace each source is opened here, as
    a detached tree (open_tree), so that a source the namespace's root
    cannot read still mounts (runc passes such fds too). close_sources()
    once the process is made."""
    out = {}
    try:
        for i, m in enumerate(mounts or ()):
            if not isinstance(m, dict) or not is_bind_mount(m):
                continue
            src = os.path.join(bundle, m.get("source") or "")
            if not userns:
                out[i] = src
                continue
            rec = "rbind" in (m.get("options") or ())
            try:
                out[i] = L.open_tree_clone(src, recursive=rec)
            except SysError as e:
                raise ConfigError(f"mounts[{i}].source: cannot open bind source {src}",
                                  errno=e.errno) from None
    except BaseException:
        close_sources(out)
        raise
    return out


def close_sources(sources):
    for v in (sources or {}).values():
        if isinstance(v, int):
            os.close(v)


def mount_at(rootfd, m, index, mount_fn, source=None):
    """Mounts one spec entry; mount_fn(source, target_path, fstype, flags,
    data, m) mounts the non-bind types. target_path names the directory
    *under* any mount made on it, so mount_fn must reopen to go inside.
    source: bind_sources()' entry, a path or a detached tree's fd."""
    dest = m["destination"]
    typ = m.get("type") or ""
    opts = m.get("options") or []
    field = f"mounts[{index}]"
    flags, prop, rattr, data = parse_options(opts, field)
    src = m.get("source") or typ
    tree = None
    if isinstance(source, int):
        tree, src = source, fd_path(source)
    elif source is not None:
        src = source
    is_bind = bool(flags & L.MS_BIND) or typ == "bind"
    if delayed_readonly(m, flags):
        # devices and links still go in: finish() makes it read-only
        flags &= ~L.MS_RDONLY
    if typ in ("proc", "sysfs"):
        _ordinary_directory(rootfd, dest, typ, field)
    if is_bind:
        try:
            st = os.stat(src)
        except OSError as e:
            raise ConfigError(f"{field}.source: bind source {src} is not there", errno=e.errno) from None
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        flags |= L.MS_BIND
    else:
        kind = "dir"
    try:
        tfd = open_in_root(rootfd, dest, create=kind)
    except (SysError, OSError) as e:
        raise BerthError(f"{field}: cannot make mount point {dest} in the rootfs: {e}") from None
    try:
        target = fd_path(tfd)
        if tree is not None:
            L.move_mount(tree, tfd)
        elif is_bind:
            L.mount(src, target, None, flags & (L.MS_BIND | L.MS_REC))
        else:
            mount_fn(src, target, typ, flags, data, m)
        rest = flags & ~(L.MS_BIND | L.MS_REC | L.MS_REMOUNT)
        if (is_bind and rest) or prop or rattr:
            # the fd still names the directory under the new mount: reopen
            os.close(tfd)
            tfd = open_in_root(rootfd, dest)
            target = fd_path(tfd)
            if is_bind and rest:
                L.mount(None, target, None, L.MS_BIND | L.MS_REMOUNT | rest | locked_flags(target))
            if prop:
                L.mount(None, target, None, prop)
            if rattr:
                L.mount_setattr(target, rattr)
    except SysError as e:
        raise BerthError(f"{field}: mount {typ or 'bind'} {src} on {dest}: {e}") from None
    finally:
        os.close(tfd)
