"""A container's filesystem as its processes see it, for docker cp.

Running: /proc/<pid>/root, which is the container's own mount namespace,
volumes, binds and tmpfs included. Not running: a detached copy of its
rootfs mount (open_tree) with a detached copy of each volume and bind
attached at its destination, as dockerd mounts them for a copy; nothing
of it is visible in any mount namespace, and it dissolves when the fd is
closed, so a crash leaves no mount behind. tmpfs mounts do not exist
while the container is stopped: the view says where they would be.

Paths inside a view are resolved with openat2(RESOLVE_IN_ROOT): `..`
and symlinks of the image stay inside it."""
import errno
import os
import select
import stat

from berth.errors import BerthError, ConfigError, Conflict, NotFound, SysError
from berth.sys import libc

_IN_ROOT = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS


class View:
    """fd: an O_PATH fd of the container's /. mounts: (destination, kind,
    writable) of everything mounted over the rootfs, deepest last."""

    def __init__(self, fd, running, mounts, readonly_root):
        self.fd = fd
        self.running = running
        self.mounts = mounts
        self.readonly_root = readonly_root

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self, path, flags):
        """An fd of path inside the view (flags: os.O_PATH, ...)."""
        rel = path.lstrip("/") or "."
        return libc.openat2(self.fd, rel, flags | os.O_CLOEXEC, _IN_ROOT)

    def mount_at(self, path):
        """(destination, kind, writable) of the mount that holds path (as
        written: symlinks are not followed), or None for the rootfs."""
        path = os.path.normpath("/" + path.lstrip("/"))
        best = None
        for m in self.mounts:
            if path == m[0] or path.startswith(m[0].rstrip("/") + "/"):
                if best is None or len(m[0]) >= len(best[0]):
                    best = m
        return best


def mounts_of(c):
    """(destination, kind, writable, source, recursive) of each mount of
    the container's record, parents first."""
    out = []
    hc = c.host_config
    nonrec = {m.get("Target") for m in hc.get("Mounts") or []
              if (m.get("BindOptions") or {}).get("NonRecursive")}
    for m in c.data.get("Mounts") or []:
        dest = os.path.normpath(m.get("Destination") or "/")
        out.append((dest, m.get("Type") or "bind", bool(m.get("RW", True)),
                    m.get("Source") or "", dest not in nonrec))
    for dest in (hc.get("Tmpfs") or {}):
        out.append((os.path.normpath(dest), "tmpfs", True, "", True))
    taken = {m[0] for m in out}
    for dest, key in (("/etc/hostname", "HostnamePath"), ("/etc/hosts", "HostsPath"),
                      ("/etc/resolv.conf", "ResolvConfPath")):
        if c.data.get(key) and dest not in taken:
            out.append((dest, "bind", True, c.data[key], False))
    out.sort(key=lambda m: m[0].count("/"))
    return out


def open_view(cs, c):
    """-> View of container c (Containers cs); the caller closes it."""
    mounts = mounts_of(c)
    shown = [m[:3] for m in mounts]
    ro_root = bool(c.host_config.get("ReadonlyRootfs"))
    with c.lifecycle:
        pid = c.state["Pid"] if c.state["Status"] in ("running", "paused") else 0
        if pid:
            view = _running(c, pid, shown, ro_root)
            if view is not None:
                return view
        try:
            root = cs.rootfs(c)
        except BerthError as e:
            raise Conflict(f"container {c.id[:12]}: its filesystem cannot be mounted: {e}") \
                from None
        tree = libc.clone_tree(root)
        try:
            _attach_mounts(tree, [m for m in mounts if m[1] != "tmpfs"])
            if ro_root:
                libc.tree_readonly(tree, recursive=False)
        except BaseException:
            os.close(tree)
            raise
    return View(tree, False, shown, ro_root)


def _running(c, pid, shown, ro_root):
    """The view through /proc/<pid>/root, or None when the process is gone
    (the container stopped meanwhile): the pidfd, opened first, tells an
    exited (or recycled) pid from the container's own."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        try:
            fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        if select.select([pidfd], [], [], 0)[0] or c.state["Pid"] != pid:
            os.close(fd)
            return None
        return View(fd, True, shown, ro_root)
    finally:
        os.close(pidfd)


def _attach_mounts(tree, mounts):
    """Attaches a detached copy of each source at its destination inside
    tree (which then holds it), parents first."""
    for dest, kind, rw, source, recursive in mounts:
        if not source.startswith("/"):
            continue
        try:
            st = os.stat(source)
        except OSError as e:
            raise NotFound(f"mount source {source} of {dest}", errno=e.errno) from None
        target = _mountpoint(tree, dest, stat.S_ISDIR(st.st_mode))
        try:
            sub = libc.clone_tree(source, recursive=recursive)
            try:
                if not rw:
                    libc.tree_readonly(sub)
                libc.attach_tree(sub, target)
            finally:
                os.close(sub)
        except SysError as e:
            if e.errno in (errno.EINVAL, errno.ENOSYS):
                raise BerthError(f"docker cp of a stopped container: cannot attach {dest}: this "
                                 "kernel cannot mount on a detached tree (Linux 6.15 or later "
                                 "can)", errno=e.errno) from None
            raise
        finally:
            os.close(target)


def _mountpoint(tree, dest, is_dir):
    """An O_PATH fd of dest inside tree, made (as an empty directory or
    file) when missing, as dockerd makes mountpoints for a copy."""
    parts = [p for p in dest.split("/") if p and p != "."]
    if not parts:
        raise ConfigError("a mount on / cannot be attached")
    for i in range(len(parts)):
        rel = "/".join(parts[:i + 1])
        try:
            fd = libc.openat2(tree, rel, os.O_PATH | os.O_CLOEXEC, _IN_ROOT)
        except SysError as e:
            if e.errno != errno.ENOENT:
                raise
            parent = libc.openat2(tree, "/".join(parts[:i]) or ".",
                                  os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, _IN_ROOT)
            try:
                if i == len(parts) - 1 and not is_dir:
                    os.close(os.open(parts[i], os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW |
                                     os.O_CLOEXEC, 0o644, dir_fd=parent))
                else:
                    os.mkdir(parts[i], 0o755, dir_fd=parent)
            finally:
                os.close(parent)
            fd = libc.openat2(tree, rel, os.O_PATH | os.O_CLOEXEC, _IN_ROOT)
        if i < len(parts) - 1:
            os.close(fd)
    return fd
