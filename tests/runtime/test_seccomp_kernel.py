"""Seccomp filters on the real kernel. Every filter is loaded in a forked
child (a filter can never be removed); results come back through a pipe."""
import ctypes
import errno
import os
import signal
import time

import pytest

from berth.errors import SysError
from berth.oci import jsonio
from berth.runtime.security import seccomp
from berth.sys import libc
from shared_dir import SECCOMP_PROFILE

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

FIXTURE = SECCOMP_PROFILE
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def sys_errno(nr, *args):
    """0 if the raw syscall succeeded, else its errno."""
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return ctypes.get_errno() if ret == -1 else 0


def in_child(fn):
    """Run fn() in a forked child; returns ("ok", value) / ("error", repr)
    or ("signal", signum) if the child was killed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = ("ok", fn())
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            out = ("error", f"{type(e).__name__}: {e}")
        try:
            os.write(w, jsonio.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return ("signal", os.WTERMSIG(status))
    return tuple(jsonio.loads(data))


@pytest.fixture(scope="module")
def docker_oci():
    return seccomp.from_docker_profile(jsonio.load_file(FIXTURE), DOCKER_CAPS)


def test_docker_profile_on_the_kernel(docker_oci):
    filt = seccomp.compile(docker_oci)
    top = filt.max_nr[0xC000003E]

    def child():
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        filt.load()
        with open("/proc/self/status") as f:
            mode = [l for l in f.read().splitlines() if l.startswith("Seccomp:")][0]
        return {
            "mode": mode,
            "getpid": os.getpid(),
            "keyctl": sys_errno(250, 0, 0, 0, 0),           # KEYCTL_GET_KEYRING_ID
            "add_key": sys_errno(248, 0, 0, 0, 0, 0),
            "kexec_load": sys_errno(246, 0, 0, 0, 0),
            "unshare_user": sys_errno(272, libc.CLONE_NEWUSER),
            "personality_bad": sys_errno(135, 0x1234),
            "clone3": sys_errno(435, 0, 0),
            "above_max": sys_errno(top + 1),
            "nr_1000": sys_errno(1000),
        }

    status, res = in_child(child)
    assert status == "ok", res
    assert res["mode"] == "Seccomp:\t2"
    assert res["getpid"] > 1
    for name in ("keyctl", "add_key", "kexec_load", "unshare_user", "personality_bad"):
        assert res[name] == errno.EPERM, name
    assert res["clone3"] == errno.ENOSYS
    assert res["above_max"] == errno.ENOSYS
    assert res["nr_1000"] == errno.ENOSYS


def test_docker_profile_compile_and_load_time(docker_oci, tmp_path):
    """Cold compile is libseccomp's time; the cached path is what a
    container start pays once the profile has been seen."""
    seccomp.compile(docker_oci, cache_dir=str(tmp_path))  # warm the cache

    def child():
        t0 = time.perf_counter()
        filt = seccomp.compile(docker_oci)
        t1 = time.perf_counter()
        cached = seccomp.compile(docker_oci, cache_dir=str(tmp_path))
        t2 = time.perf_counter()
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        cached.load()
        t3 = time.perf_counter()
        assert cached.program == filt.program
        return [(t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, len(filt)]

    status, res = in_child(child)
    assert status == "ok", res
    cold, warm, load, insns = res
    print(f"\ndocker profile: {insns} insns, compile {cold:.1f} ms, "
          f"cached compile {warm:.2f} ms, load {load:.2f} ms")
    assert cold < 100
    assert warm + load < 10


def test_filter_rebuilt_from_plain_data_loads():
    filt = seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EIO}]})
    copy = seccomp.Filter(bytes(filt.program), filt.flags)

    def child():
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        copy.load()
        try:
            os.getcwd()
        except OSError as e:
            return e.errno
        return 0

    assert in_child(child) == ("ok", errno.EIO)


def test_loads_without_no_new_privs_as_root():
    filt = seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]})

    def child():
        filt.load()
        with open("/proc/self/status") as f:
            nnp = [l for l in f.read().splitlines() if l.startswith("NoNewPrivs:")][0]
        return [nnp, sys_errno(79, 0, 0)]

    assert in_child(child) == ("ok", ["NoNewPrivs:\t0", errno.EPERM])


def test_load_without_nnp_or_cap_sys_admin_is_refused_with_a_hint():
    filt = seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW"})

    def child():
        eff, perm, inh = libc.capget()
        libc.capset(eff & ~(1 << 21), perm, inh)
        try:
            filt.load()
        except SysError as e:
            return [e.errno, e.hint]
        return "loaded"

    status, res = in_child(child)
    assert status == "ok"
    assert res[0] == errno.EACCES
    assert "no_new_privs" in res[1]


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_TRAP"])
def test_killing_actions_end_the_process_with_sigsys(action):
    filt = seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getcwd"], "action": action}]})

    def child():
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        filt.load()
        sys_errno(79, 0, 0)
        return "survived"

    assert in_child(child) == ("signal", signal.SIGSYS)


def test_argument_filter_and_log_flag():
    filt = seccomp.compile({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": errno.EACCES,
                      "args": [{"index": 0, "value": 0x1234, "op": "SCMP_CMP_EQ"}]}]})

    def child():
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        filt.load()
        return [sys_errno(135, 0x1234), sys_errno(135, 0xFFFFFFFF)]

    assert in_child(child) == ("ok", [errno.EACCES, 0])


def test_default_errno_with_enosys_for_unknown_numbers():
    filt = seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EACCES,
                            "syscalls": [{"names": [
                                "read", "write", "close", "exit", "exit_group", "getpid",
                                "rt_sigreturn", "rt_sigprocmask", "mmap", "munmap", "brk",
                                "futex", "madvise"], "action": "SCMP_ACT_ALLOW"}]})

    top = filt.max_nr[0xC000003E]
    assert top == 231  # exit_group

    def child():
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        filt.load()
        # getppid (110) is below the highest allowed number
        return [sys_errno(39), sys_errno(110), sys_errno(top + 1), sys_errno(435)]

    assert in_child(child) == ("ok", [0, errno.EACCES, errno.ENOSYS, errno.ENOSYS])
