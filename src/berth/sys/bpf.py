"""The bpf(2) system call. Callers build the attr bytes; this returns the
result and the attr as the kernel left it (some commands write into it)."""
import ctypes
import os

from berth.errors import SysError
from berth.sys.libc import _syscall

_NR_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}


def call(cmd, attr):
    """Returns (result, attr bytes); result is -errno on failure, so callers
    can tell 'not attached' from a real error."""
    nr = _NR_BPF.get(os.uname().machine)
    if nr is None:
        raise SysError(f"bpf: unknown syscall number on {os.uname().machine}", errno=38)
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    r = _syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if r < 0:
        return -ctypes.get_errno(), buf.raw
    return r, buf.raw
