"""Raw system calls through ctypes. This is the only module (with the rest of
berth.sys) that talks to libc directly; everything above calls these
wrappers, which raise SysError with the errno instead of returning -1.

Kept import-light: the runtime's start-up time is a benchmark figure."""
import ctypes
import os

from berth.errors import SysError

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# namespaces
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2

# prctl
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# x86_64 syscall numbers not wrapped by glibc 2.36
SYS_pivot_root = 155
SYS_capget = 125
SYS_capset = 126
SYS_memfd_create = 319
SYS_execveat = 322
SYS_close_range = 436
SYS_openat2 = 437

MFD_CLOEXEC = 1
MFD_ALLOW_SEALING = 2
MFD_EXEC = 0x10
AT_EMPTY_PATH = 0x1000
AT_FDCWD = -100

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_b = os.fsencode


def _check(ret, what):
    if ret < 0:
        err = ctypes.get_errno()
        raise SysError(what, errno=err)
    return ret


def _opt(s):
    return None if s is None else _b(s)


def unshare(flags):
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def setns(fd, nstype=0, what="namespace"):
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns {what}")


def mount(source, target, fstype, flags=0, data=None):
    ret = _libc.mount(_opt(source), _b(target), _opt(fstype),
                      ctypes.c_ulong(flags), _opt(data))
    _check(ret, f"mount {source or fstype} on {target}")


def umount2(target, flags=0):
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root, put_old):
    _check(_syscall(SYS_pivot_root, _b(new_root), _b(put_old)),
           f"pivot_root {new_root}")


def sethostname(name):
    data = _b(name)
    _check(_libc.sethostname(data, ctypes.c_size_t(len(data))), f"sethostname {name}")


def setdomainname(name):
    data = _b(name)
    _check(_libc.setdomainname(data, ctypes.c_size_t(len(data))),
           f"setdomainname {name}")


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2),
                              ctypes.c_ulong(arg3), ctypes.c_ulong(arg4),
                              ctypes.c_ulong(arg5)), f"prctl({option})")


def close_range(first, last=0xFFFFFFFF, flags=0):
    _check(_syscall(SYS_close_range, ctypes.c_uint(first), ctypes.c_uint(last),
                    ctypes.c_uint(flags)), "close_range")


def memfd_create(name, flags):
    return _check(_syscall(SYS_memfd_create, _b(name), ctypes.c_uint(flags)),
                  "memfd_create")


def _cstr_array(items):
    arr = (ctypes.c_char_p * (len(items) + 1))()
    arr[:-1] = [_b(x) for x in items]
    arr[len(items)] = None
    return arr


def execveat(dirfd, path, argv, envp, flags=0):
    """Only returns by raising."""
    _syscall(SYS_execveat, ctypes.c_int(dirfd), _b(path), _cstr_array(argv),
             _cstr_array(envp), ctypes.c_int(flags))
    raise SysError(f"exec {argv[0] if argv else path}", errno=ctypes.get_errno())


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd, path, flags, resolve, mode=0):
    how = _OpenHow(flags, mode, resolve)
    return _check(_syscall(SYS_openat2, ctypes.c_int(dirfd), _b(path),
                           ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))),
                  f"open {path}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def capget(pid=0):
    """Returns (effective, permitted, inheritable) as 64-bit masks."""
    hdr = _CapHeader(_CAP_V3, pid)
    data = (_CapData * 2)()
    _check(_syscall(SYS_capget, ctypes.byref(hdr), data), "capget")
    return tuple(getattr(data[0], f) | (getattr(data[1], f) << 32)
                 for f in ("effective", "permitted", "inheritable"))


def capset(effective, permitted, inheritable):
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i, shift in ((0, 0), (1, 32)):
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_syscall(SYS_capset, ctypes.byref(hdr), data), "capset")


SYS_mount_setattr = 442
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(path, attr_set, recursive=True, dirfd=AT_FDCWD):
    """Changes mount attributes of a whole subtree in one call (the only
    way to make a recursive bind read-only all the way down)."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    _check(_syscall(SYS_mount_setattr, ctypes.c_int(dirfd), _b(path), ctypes.c_uint(flags),
                    ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
           f"mount_setattr {path}")


SYS_keyctl = 250
KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name):
    """A fresh session keyring, so the container cannot reach the keys of
    the session that started it."""
    return _check(_syscall(SYS_keyctl, ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), _b(name)),
                  f"join session keyring {name}")


SYS_open_tree = 428
SYS_move_mount = 429
OPEN_TREE_CLONE = 1
MOUNT_ATTR_IDMAP = 0x100000
MOVE_MOUNT_F_EMPTY_PATH = 0x4


SYS_pidfd_open = 434
SYS_pidfd_getfd = 438


def fd_of_process(pid, fd):
    """A copy of another process's fd (pidfd_getfd, Linux 5.6): how the
    runtime takes a seccomp listener from the container's process, which
    may not reach a socket of ours."""
    pidfd = _check(_syscall(SYS_pidfd_open, ctypes.c_int(pid), ctypes.c_uint(0)),
                   f"pidfd_open {pid}")
    try:
        return _check(_syscall(SYS_pidfd_getfd, ctypes.c_int(pidfd), ctypes.c_int(fd),
                               ctypes.c_uint(0)), f"pidfd_getfd {pid} fd {fd}")
    finally:
        os.close(pidfd)


def open_tree_clone(source, recursive=False):
    """A detached copy of the mount at source (O_CLOEXEC fd): it can be
    attached later with move_mount, also from a mount namespace and a user
    namespace that could not reach source by path."""
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return _check(_syscall(SYS_open_tree, ctypes.c_int(AT_FDCWD), _b(source), ctypes.c_uint(flags)),
                  f"open_tree {source}")


MOVE_MOUNT_T_EMPTY_PATH = 0x40


def move_mount(fd, target_fd):
    """Attach the detached tree fd onto the directory target_fd (an O_PATH
    fd; a /proc/self/fd path instead is refused with EINVAL)."""
    _check(_syscall(SYS_move_mount, ctypes.c_int(fd), b"", ctypes.c_int(target_fd), b"",
                    ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)),
           "move_mount")


def idmapped_bind(source, target, userns_fd):
    """Bind source at target with the ids shifted by the user namespace
    userns_fd (an idmapped mount): files owned by 0 on disk show as the
    namespace's root mapping, and are written back unshifted."""
    fd = open_tree_clone(source)
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        _check(_syscall(SYS_mount_setattr, ctypes.c_int(fd), b"", ctypes.c_uint(AT_EMPTY_PATH),
                        ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
               f"idmap {source}")
        _check(_syscall(SYS_move_mount, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD), _b(target),
                        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)), f"move_mount {target}")
    finally:
        os.close(fd)


def userns_fd(uid_map, gid_map):
    """An fd of a new user namespace with these maps ("0 100000 65536"),
    held by nothing else: a short-lived child makes it and exits."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            if _libc.unshare(CLONE_NEWUSER) != 0:
                os._exit(1)
            os.read(r, 1)
        finally:
            os._exit(0)
    os.close(r)
    try:
        for _ in range(200):
            try:
                if os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user"):
                    break
            except OSError:
                pass
            import time
            time.sleep(0.005)
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(uid_map)
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(gid_map)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(w)
        os.waitpid(pid, 0)
