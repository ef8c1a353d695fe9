"""Executing the user's program without exposing a host binary.

Until its final execve the container's init is the host's Python
interpreter. If that execve meets `#!/proc/self/exe`, the kernel would run
the host interpreter inside the container, where it could reopen its own
executable for writing (CVE-2019-5736). So the init first execs a tiny
static ELF held in a sealed memfd; that program execs the user's program.
Any `/proc/self/exe` the container can reach is then the sealed memfd.

The ELF is 168 bytes of x86_64 written here: _start checks that argv[0]
is ours (a `#!/proc/self/exe` script would otherwise re-exec it forever),
calls execve(argv[1], &argv[2], envp), and on failure exit_group(127)."""
import os
import struct

from berth.errors import SysError
from berth.sys import libc as L

_BASE = 0x400000
_CODE = bytes.fromhex(
    "488b442408"      # mov rax, [rsp+8]         argv[0]
    "803862"          # cmp byte [rax], 'b'      "berth-exec" from us; a #! line
    "751a"            # jne fail                 gives "/proc/self/exe": stop, not loop
    "488b7c2410"      # mov rdi, [rsp+16]        argv[1]: path
    "488d742418"      # lea rsi, [rsp+24]        &argv[2]: the program's argv
    "488b0424"        # mov rax, [rsp]           argc
    "488d54c410"      # lea rdx, [rsp+rax*8+16]  envp
    "b83b000000"      # mov eax, 59 (execve)
    "0f05"            # syscall
    "bf7f000000"      # fail: mov edi, 127
    "b8e7000000"      # mov eax, 231 (exit_group)
    "0f05"            # syscall
)
_F_ADD_SEALS = 1033
_SEALS = 0x1 | 0x2 | 0x4 | 0x8  # seal, shrink, grow, write


def _elf():
    hdr_len = 64 + 56
    size = hdr_len + len(_CODE)
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 0x3E, 1, _BASE + hdr_len, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)
    return ehdr + phdr + _CODE


def make():
    """Returns a fd of the sealed trampoline, or None where the machine or
    a policy refuses memfd execution (the caller then execs directly)."""
    if os.uname().machine != "x86_64":
        return None
    try:
        fd = L.memfd_create("berth-exec", L.MFD_CLOEXEC | L.MFD_ALLOW_SEALING | L.MFD_EXEC)
    except SysError:
        try:
            fd = L.memfd_create("berth-exec", L.MFD_CLOEXEC | L.MFD_ALLOW_SEALING)
        except SysError:
            return None
    os.write(fd, _elf())
    import fcntl
    fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
    return fd


def execute(tramp_fd, path, argv, env):
    """Replaces the process; raises only when nothing could be executed."""
    envp = list(env)
    if tramp_fd is not None:
        try:
            L.execveat(tramp_fd, "", ["berth-exec", path] + list(argv), envp, L.AT_EMPTY_PATH)
        except SysError as e:
            # a seccomp profile may deny execveat; fall back rather than fail
            if e.errno not in (1, 38):
                raise
    os.execve(path, list(argv), dict(e.split("=", 1) for e in envp))
