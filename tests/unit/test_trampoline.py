import os
import struct

import pytest

from berth.runtime import trampoline as T


def test_elf_header_is_a_static_x86_64_executable():
    elf = T._elf()
    assert elf[:4] == b"\x7fELF" and elf[4] == 2  # 64-bit
    e_type, e_machine = struct.unpack_from("<HH", elf, 16)
    entry, = struct.unpack_from("<Q", elf, 24)
    assert (e_type, e_machine) == (2, 0x3E)
    assert entry == 0x400000 + 120


def _run(argv, env):
    fd = T.make()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1)
        T.execute(fd, argv[0], argv[1:], env)
    os.close(w)
    out = os.read(r, 4096)
    _, status = os.waitpid(pid, 0)
    os.close(r)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def test_passes_argv_and_env_and_exit_status():
    code, out = _run(["/bin/sh", "sh", "-c", 'echo "$0|$1|$X"; exit 5', "zero", "a b"], ["X=y"])
    assert (code, out) == (5, b"zero|a b|y\n")


def test_missing_program_exits_127():
    assert _run(["/nonexistent", "x"], [])[0] == 127


def test_memfd_is_sealed_against_writes():
    fd = T.make()
    try:
        wfd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
        try:
            with pytest.raises(PermissionError):
                os.write(wfd, b"\x90")
        finally:
            os.close(wfd)
    finally:
        os.close(fd)


def test_refuses_to_run_when_argv0_is_not_ours():
    # what the kernel passes when a "#!/proc/self/exe" script reaches it
    fd = T.make()
    pid = os.fork()
    if pid == 0:
        from berth.sys import libc as L
        try:
            L.execveat(fd, "", ["/proc/self/exe", "/bin/true"], [], L.AT_EMPTY_PATH)
        finally:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 127
