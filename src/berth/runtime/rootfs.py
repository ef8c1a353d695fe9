"""Builds the container's filesystem view inside its new mount namespace.

Order: mounts stay out of the host (rslave), the rootfs becomes a mount
point, the spec's mounts go in (each target resolved inside the rootfs),
devices and /dev links, then -- after hooks -- pivot_root, masked and
read-only paths, and a read-only root last so nothing above fails on it."""
import os

from berth.errors import BerthError, SysError
from berth.runtime import mounts as M
from berth.sys import libc as L
from berth.sys.mountinfo import unescape

DEFAULT_DEVICES = (  # path, major, minor
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
)
DEV_LINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
             ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))


def prepare_before_cgroup(cfg, rootfs, sources=None):
    """The part that does not need the container's cgroup: the spec's mounts
    up to the first cgroup mount. Returns (rootfd, index of the next mount),
    so the init can do this while the runtime is still making the cgroup.
    sources: mounts.bind_sources() of the runtime."""
    linux = cfg.get("linux") or {}
    prop = linux.get("rootfsPropagation")
    # taken as given, recursive or not, as runc does: rshared keeps the
    # copies of the host's mounts peers of theirs, so mounts under a shared
    # bind travel both ways (Kubernetes' Bidirectional), rslave one way
    L.mount(None, "/", None, M.PROPAGATION[prop] if prop else L.MS_SLAVE | L.MS_REC)
    # pivot_root refuses a new root whose parent mount is shared
    _make_parent_private(rootfs)
    L.mount(rootfs, rootfs, None, L.MS_BIND | L.MS_REC)
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    mounts = cfg.get("mounts") or ()
    i = 0
    while i < len(mounts) and mounts[i].get("type") != "cgroup":
        M.mount_at(rootfd, mounts[i], i, lambda *a: _mount_special(rootfd, *a),
                   source=(sources or {}).get(i))
        i += 1
    return rootfd, i


def prepare_rest(rootfd, cfg, start, userns, cgroups, sources=None):
    """The remaining mounts (from the first cgroup mount on), devices, /dev
    links and the working directory. cgroups: cgroup_sources(), taken
    before a cgroup namespace hides the host's view of the paths."""
    linux = cfg.get("linux") or {}
    mounts = cfg.get("mounts") or ()
    for i in range(start, len(mounts)):
        M.mount_at(rootfd, mounts[i], i, lambda *a: _mount_special(rootfd, *a, cgroups=cgroups),
                   source=(sources or {}).get(i))
    has_dev = any(m["destination"].rstrip("/") == "/dev" for m in mounts)
    if has_dev:
        _default_devices(rootfd, userns)
    for i, d in enumerate(linux.get("devices") or ()):
        _device(rootfd, d, userns, f"linux.devices[{i}]")
    if has_dev:
        _dev_links(rootfd, cfg)
    # runc makes a missing working directory; do it while the root is writable
    os.close(M.open_in_root(rootfd, (cfg.get("process") or {}).get("cwd") or "/", create="dir"))


def _make_parent_private(path):
    # walk up to the mount point holding `path`, then make it private
    mnts = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnts.add(unescape(line.split()[4]))
    p = path
    while p not in mnts and p != "/":
        p = os.path.dirname(p)
    L.mount(None, p, None, L.MS_PRIVATE)


def _mount_special(rootfd, src, target, typ, flags, data, m, cgroups=None):
    if typ == "cgroup":
        _mount_cgroup(rootfd, target, flags, m, cgroups if cgroups is not None else cgroup_sources())
        return
    try:
        L.mount(src, target, typ, flags, data or None)
    except SysError as e:
        # sysfs in a user namespace without its own net namespace is refused;
        # runc falls back to a recursive bind of the host's /sys
        if typ == "sysfs" and e.errno in (1, 16):
            attrs = ((L.MS_RDONLY, L.MOUNT_ATTR_RDONLY), (L.MS_NOSUID, L.MOUNT_ATTR_NOSUID),
                     (L.MS_NODEV, L.MOUNT_ATTR_NODEV), (L.MS_NOEXEC, L.MOUNT_ATTR_NOEXEC))
            L.mount("/sys", target, None, L.MS_BIND | L.MS_REC)
            # a remount through /proc/self/fd/N would reach the mount below
            # the new one: name it by path, and set the flags on every
            # submount too (a plain remount leaves /sys/fs/cgroup & co rw)
            L.mount_setattr(os.readlink(target) if target.startswith("/proc/self/fd/") else target,
                            sum(a for f, a in attrs if flags & f))
        else:
            raise


def cgroup_sources():
    """[(fstype, host dir of this process's cgroup, name)] per hierarchy.
    The init has joined the container's cgroup already, so these are the
    container's own directories. Read before unsharing a cgroup namespace:
    inside one, both files show paths relative to it."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            own[ctrls] = path
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _src, sopts = post.split()[:3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            fields = pre.split()
            mroot, mp = unescape(fields[3]), unescape(fields[4])
            if fstype == "cgroup2":
                key = ""
            else:
                key = ",".join(o for o in sopts.split(",") if o not in ("rw", "ro") and
                               (o.startswith("name=") or "=" not in o))
            path = own.get(key)
            if path is None or not path.startswith(mroot):
                continue
            rel = path[len(mroot):].lstrip("/")
            out.append((fstype, f"{mp}/{rel}".rstrip("/"), os.path.basename(mp)))
    return out


def _mount_cgroup(rootfd, target, flags, m, cmounts):
    """A container's /sys/fs/cgroup: on v2 hosts its cgroup2 directory; on v1
    and hybrid hosts a tmpfs with one directory per hierarchy. Each is a
    bind of the container's own cgroup: the same view a fresh mount gives in
    a cgroup namespace, without the ~14 ms a fresh cgroup2 mount costs."""
    ro = flags & L.MS_RDONLY
    base = flags & (L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC)
    v2 = len(cmounts) == 1 and cmounts[0][0] == "cgroup2"
    if v2:
        L.mount(cmounts[0][1], target, None, L.MS_BIND)
    else:
        L.mount("tmpfs", target, "tmpfs", base, "mode=755")
    # the fd names the directory under the new mount: reopen to go inside
    tfd = M.open_in_root(rootfd, m["destination"])
    top = M.fd_path(tfd)
    try:
        for _fstype, src, name in ([] if v2 else cmounts):
            os.mkdir(name, 0o755, dir_fd=tfd)
            L.mount(src, f"{top}/{name}", None, L.MS_BIND)
        attrs = ro | base  # MOUNT_ATTR_{RDONLY,NOSUID,NODEV,NOEXEC} equal the MS_ bits
        if attrs:
            # one call for the whole tree instead of a remount per hierarchy
            L.mount_setattr(top, attrs)
    finally:
        os.close(tfd)


def _default_devices(rootfd, userns):
    for path, major, minor in DEFAULT_DEVICES:
        _device(rootfd, {"path": path, "type": "c", "major": major, "minor": minor,
                         "fileMode": 0o666, "uid": 0, "gid": 0}, userns, path)


def _device(rootfd, d, userns, field):
    path = d.get("path")
    if not isinstance(path, str) or not path.startswith("/dev/"):
        raise BerthError(f"{field}.path: {path!r} must be under /dev")
    typ = d.get("type", "c")
    kinds = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}
    if typ not in kinds:
        raise BerthError(f"{field}.type: unknown device type {typ!r}")
    parent = M.open_in_root(rootfd, os.path.dirname(path), create="dir")
    name = os.path.basename(path)
    try:
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        if userns:
            # mknod is not allowed in a user namespace: bind the host's node
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=parent))
            tfd = M.open_in_root(rootfd, path)
            try:
                L.mount(path, M.fd_path(tfd), None, L.MS_BIND)
            finally:
                os.close(tfd)
            return
        mode = (d.get("fileMode") or 0o666) & 0o7777
        dev = os.makedev(d.get("major", 0), d.get("minor", 0))
        os.mknod(name, kinds[typ] | mode, dev, dir_fd=parent)
        os.chmod(name, mode, dir_fd=parent)
        os.chown(name, d.get("uid") or 0, d.get("gid") or 0, dir_fd=parent)
    except OSError as e:
        raise BerthError(f"{field}: cannot create device {path}: {e.strerror}") from None
    finally:
        os.close(parent)


def _dev_links(rootfd, cfg):
    links = list(DEV_LINKS)
    if any(m["destination"].rstrip("/") == "/dev/pts" for m in cfg.get("mounts") or ()):
        links.append(("pts/ptmx", "/dev/ptmx"))
    dev = M.open_in_root(rootfd, "/dev")
    try:
        for src, dst in links:
            name = os.path.basename(dst)
            try:
                os.unlink(name, dir_fd=dev)
            except FileNotFoundError:
                pass
            os.symlink(src, name, dir_fd=dev)
    finally:
        os.close(dev)


def pivot(rootfs, no_pivot=False):
    if no_pivot:
        _hide_full_proc_and_sys(rootfs)
        os.chdir(rootfs)
        L.mount(rootfs, "/", None, L.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    # pivot_root(".", ".") stacks the old root under the new one; detaching
    # it then needs no put_old directory inside the image
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        L.pivot_root(".", ".")
        os.fchdir(old)
        L.mount(None, ".", None, L.MS_SLAVE | L.MS_REC)
        L.umount2(".", L.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def _hide_full_proc_and_sys(rootfs):
    """Without pivot_root the host's mounts stay in the namespace, only out
    of reach of the chroot. The kernel lets a process mount a fresh proc or
    sysfs when a full, uncovered one is in its mount namespace, so one left
    there would let the container mount a /proc without the masks (runc
    detaches them for the same reason); what cannot be detached is covered."""
    full = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            point = unescape(fields[4])
            if fields[3] == "/" and post.split()[0] in ("proc", "sysfs") and \
                    point != rootfs and not point.startswith(rootfs.rstrip("/") + "/"):
                full.append(point)
    for point in full:
        try:
            L.mount(None, point, None, L.MS_SLAVE | L.MS_REC)
        except SysError as e:
            if e.errno == 2:  # under one detached already
                continue
            raise
        try:
            L.umount2(point, L.MNT_DETACH)
        except SysError as e:
            if e.errno not in (1, 22):
                raise
            L.mount("tmpfs", point, "tmpfs", 0)


def finish(cfg):
    """After pivot_root: masked paths, read-only paths, read-only root."""
    linux = cfg.get("linux") or {}
    for m in cfg.get("mounts") or ():
        if M.delayed_readonly(m):
            dest = m["destination"]
            L.mount(None, dest, None, L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY | M.locked_flags(dest))
    # read-only first, as runc: a masked path below a read-only one stays masked
    for p in linux.get("readonlyPaths") or ():
        _readonly(p)
    for p in linux.get("maskedPaths") or ():
        _mask(p)
    prop = linux.get("rootfsPropagation")
    if prop:
        L.mount(None, "/", None, M.PROPAGATION[prop])
    if (cfg.get("root") or {}).get("readonly"):
        L.mount(None, "/", None, L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY | M.locked_flags("/"))


def _mask(path):
    try:
        if os.path.isdir(path):
            L.mount("tmpfs", path, "tmpfs", L.MS_RDONLY)
        elif os.path.lexists(path):
            L.mount("/dev/null", path, None, L.MS_BIND)
    except SysError as e:
        if e.errno != 2:
            raise BerthError(f"linux.maskedPaths: cannot mask {path}: {e}") from None


def _readonly(path):
    try:
        L.mount(path, path, None, L.MS_BIND | L.MS_REC)
    except SysError as e:
        if e.errno == 2:
            return
        raise BerthError(f"linux.readonlyPaths: cannot bind {path}: {e}") from None
    L.mount(None, path, None, L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY | M.locked_flags(path))


def set_sysctls(sysctl):
    for key, value in (sysctl or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except OSError as e:
            raise BerthError(f'linux.sysctl["{key}"]: cannot write {value!r} to {path}',
                             errno=e.errno) from None
