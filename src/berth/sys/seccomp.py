"""libseccomp through ctypes, and the seccomp(2) call that installs a BPF
program.

libseccomp only compiles: a Context is turned into classic BPF bytes with
export_bpf(), and load_bpf() installs those bytes with one system call. The
split lets the runtime compile before it forks and load in the container's
init, where libseccomp.so may no longer be reachable (after pivot_root) and
where every extra system call would run under the new filter.

libseccomp.so.2 is opened on first use, so importing this module costs
nothing on paths that never compile a filter."""
import ctypes
import os

from berth.errors import SysError
from berth.sys import libc

# actions (seccomp.h); ERRNO and TRACE carry 16 bits of data
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_NOTIFY = 0x7FC00000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
RET_DATA = 0x0000FFFF

# enum scmp_compare
CMP_NE = 1
CMP_LT = 2
CMP_LE = 3
CMP_EQ = 4
CMP_GE = 5
CMP_GT = 6
CMP_MASKED_EQ = 7

# enum scmp_filter_attr
ATTR_ACT_DEFAULT = 1
ATTR_ACT_BADARCH = 2
ATTR_CTL_NNP = 3
ATTR_CTL_TSYNC = 4
ATTR_CTL_LOG = 6
ATTR_CTL_SSB = 7
ATTR_CTL_OPTIMIZE = 8

# seccomp(2)
SYS_seccomp = 317
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_MODE_FILTER = 2
PR_SET_SECCOMP = 22
FILTER_FLAG_TSYNC = 1
FILTER_FLAG_LOG = 2
FILTER_FLAG_SPEC_ALLOW = 4
FILTER_FLAG_NEW_LISTENER = 8
FILTER_FLAG_TSYNC_ESRCH = 16
FILTER_FLAG_WAIT_KILLABLE_RECV = 32
BPF_MAXINSNS = 4096

# the kernel's struct seccomp_data: nr at 0, arch at 4, args from 16
DATA_NR = 0
DATA_ARCH = 4
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
X32_OWN_FIRST = 512  # x32-only entry points are 512..547
NR_SCMP_ERROR = -1

# classic BPF opcodes
BPF_LD_W_ABS = 0x20
BPF_JA = 0x05
BPF_JEQ_K = 0x15
BPF_JGT_K = 0x25
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_lib = None


def _seccomp():
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as e:
        raise SysError("load libseccomp.so.2", hint=f"install libseccomp2 ({e})") from None
    u32, p, i = ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int
    sigs = {
        "seccomp_init": (p, [u32]),
        "seccomp_release": (None, [p]),
        "seccomp_arch_add": (i, [p, u32]),
        "seccomp_arch_exist": (i, [p, u32]),
        "seccomp_arch_native": (u32, []),
        "seccomp_arch_resolve_name": (u32, [ctypes.c_char_p]),
        "seccomp_attr_set": (i, [p, i, u32]),
        "seccomp_syscall_resolve_name": (i, [ctypes.c_char_p]),
        "seccomp_syscall_resolve_name_arch": (i, [u32, ctypes.c_char_p]),
        "seccomp_rule_add_array": (i, [p, u32, i, ctypes.c_uint, ctypes.POINTER(ArgCmp)]),
        "seccomp_export_bpf": (i, [p, i]),
        "seccomp_api_get": (ctypes.c_uint, []),
    }
    for fname, (res, args) in sigs.items():
        fn = getattr(lib, fname)
        fn.restype = res
        fn.argtypes = args
    _lib = lib
    return lib


def preload():
    """Loads libseccomp now, if it is there: a process that forks many
    runtimes (the shim zygote) pays the ~1 ms dlopen once, not per container."""
    try:
        _seccomp()
    except SysError:
        pass


def arch_resolve_name(name):
    """libseccomp token of an arch name such as "x86_64", or 0 if unknown."""
    return _seccomp().seccomp_arch_resolve_name(os.fsencode(name))


def arch_native():
    return _seccomp().seccomp_arch_native()


def syscall_resolve_name(name, arch=None):
    """Syscall number of name (native arch unless arch is a token).
    NR_SCMP_ERROR if libseccomp does not know the name; other negative
    numbers are libseccomp's pseudo syscalls (exist on another arch)."""
    lib = _seccomp()
    if not isinstance(name, bytes):
        name = os.fsencode(name)
    if arch is None:
        return lib.seccomp_syscall_resolve_name(name)
    return lib.seccomp_syscall_resolve_name_arch(arch, name)


def syscall_resolver(arch):
    """A fast syscall_resolve_name(bytes name) for one arch token, for
    resolving hundreds of names."""
    fn = _seccomp().seccomp_syscall_resolve_name_arch
    return lambda name: fn(arch, name)


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


def version():
    """(major, minor, micro) of the loaded libseccomp."""
    fn = _seccomp().seccomp_version
    fn.restype = ctypes.POINTER(_Version)
    v = fn().contents
    return (v.major, v.minor, v.micro)


def api_level():
    return _seccomp().seccomp_api_get()


class Context:
    """One scmp_filter_ctx. Use as a context manager so it is released."""

    def __init__(self, default_action):
        self._lib = _seccomp()
        self._ctx = self._lib.seccomp_init(default_action)
        if not self._ctx:
            raise SysError(f"seccomp_init(default action {default_action:#x})",
                           hint="the action may be too new for this kernel or libseccomp")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def release(self):
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None

    def arch_add(self, token):
        """False if the arch was there already (the native one always is)."""
        ret = self._lib.seccomp_arch_add(self._ctx, token)
        if ret == -17:  # EEXIST
            return False
        if ret < 0:
            raise SysError(f"seccomp_arch_add({token:#x})", errno=-ret)
        return True

    def attr_set(self, attr, value):
        ret = self._lib.seccomp_attr_set(self._ctx, attr, value)
        if ret < 0:
            raise SysError(f"seccomp_attr_set({attr}, {value})", errno=-ret)

    def rule_add(self, action, nr, cmps=()):
        """cmps: sequence of (arg index, CMP_*, datum_a, datum_b).
        Returns the negative errno libseccomp gave, or 0."""
        n = len(cmps)
        arr = (ArgCmp * n)(*cmps) if n else None
        return self._lib.seccomp_rule_add_array(self._ctx, action, nr, n, arr)

    def export_bpf(self):
        """The compiled program: bytes of struct sock_filter."""
        fd = libc.memfd_create("berth-seccomp", libc.MFD_CLOEXEC)
        try:
            ret = self._lib.seccomp_export_bpf(self._ctx, fd)
            if ret < 0:
                raise SysError("seccomp_export_bpf", errno=-ret)
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)


def insn(code, k=0, jt=0, jf=0):
    """One struct sock_filter (host byte order, x86_64 is little endian)."""
    return (code | jt << 16 | jf << 24 | k << 32).to_bytes(8, "little")


def load_bpf(program, flags=0):
    """Install program (bytes of struct sock_filter) into the calling
    thread. Without no_new_privs the caller needs CAP_SYS_ADMIN. Returns
    the listener fd with FILTER_FLAG_NEW_LISTENER, else None."""
    count = len(program) // 8
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(count, ctypes.addressof(buf))
    ret = _syscall(ctypes.c_long(SYS_seccomp), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                   ctypes.c_uint(flags), ctypes.byref(prog))
    if ret == 0:
        return None
    if ret > 0 and flags & FILTER_FLAG_NEW_LISTENER:
        return ret  # the notification fd
    if ret > 0:
        raise SysError(f"seccomp: thread {ret} could not be synchronised to the filter")
    err = ctypes.get_errno()
    if err == 38 and not flags:  # ENOSYS: kernel older than 3.17
        ret = _libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                          ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0))
        if ret == 0:
            return
        err = ctypes.get_errno()
    hint = None
    if err == 13:  # EACCES
        hint = "set no_new_privs first or keep CAP_SYS_ADMIN until the filter is loaded"
    elif err == 22:
        hint = f"the kernel may not support seccomp flags {flags:#x}"
    raise SysError(f"load seccomp filter ({count} instructions)", errno=err, hint=hint)
