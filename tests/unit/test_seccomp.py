"""linux.seccomp compilation, checked by running the compiled BPF in a small
classic-BPF interpreter on synthetic seccomp_data (no root, nothing loaded)."""
import copy
import errno
import os
import struct

import pytest

from berth.errors import ConfigError
from berth.oci import jsonio
from berth.runtime.security import seccomp
from berth.sys import seccomp as sc
from shared_dir import SECCOMP_PROFILE

FIXTURE = SECCOMP_PROFILE
# Docker's default capability set
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

X86_64 = 0xC000003E
I386 = 0x40000003
AARCH64 = 0xC00000B7
X32 = 0x40000000

ALLOW = 0x7FFF0000
ERRNO = 0x00050000
EPERM = ERRNO | errno.EPERM
ENOSYS = ERRNO | errno.ENOSYS

# x86_64 numbers
NR = {"getpid": 39, "keyctl": 250, "kexec_load": 246, "clone3": 435, "clone": 56,
      "unshare": 272, "personality": 135, "socket": 41, "getcwd": 79, "mount": 165}


def run_bpf(program, nr, arch=X86_64, args=()):
    """The seccomp return value for one syscall, as the kernel computes it."""
    args = tuple(args) + (0,) * (6 - len(args))
    data = struct.pack("<IIQ6Q", nr & 0xFFFFFFFF, arch, 0, *args)
    insns = [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]
    a = 0
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            a = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:  # and #k
            a &= k
        elif code == 0x06:  # ret #k
            return k
        elif code == 0x05:  # ja
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):
            cond = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if cond else jf
        else:
            raise AssertionError(f"opcode {code:#x} not understood by the test interpreter")


@pytest.fixture(scope="module")
def docker_profile():
    return jsonio.load_file(FIXTURE)


@pytest.fixture(scope="module")
def docker_filter(docker_profile):
    return seccomp.compile(seccomp.from_docker_profile(docker_profile, DOCKER_CAPS))


def test_docker_profile_allows_and_denies_like_docker(docker_filter):
    prog = docker_filter.program
    assert run_bpf(prog, NR["getpid"]) == ALLOW
    assert run_bpf(prog, NR["keyctl"]) == EPERM
    assert run_bpf(prog, NR["kexec_load"]) == EPERM
    assert run_bpf(prog, NR["mount"]) == EPERM
    assert run_bpf(prog, NR["unshare"]) == EPERM
    # without CAP_SYS_ADMIN Docker answers clone3 with ENOSYS so glibc uses clone
    assert run_bpf(prog, NR["clone3"]) == ENOSYS
    assert run_bpf(prog, NR["clone"], args=[17]) == ALLOW  # SIGCHLD
    assert run_bpf(prog, NR["clone"], args=[0x10000000 | 17]) == EPERM  # CLONE_NEWUSER
    assert run_bpf(prog, NR["personality"], args=[0]) == ALLOW
    assert run_bpf(prog, NR["personality"], args=[0x1234]) == EPERM
    assert run_bpf(prog, NR["socket"], args=[2]) == ALLOW  # AF_INET
    assert run_bpf(prog, NR["socket"], args=[40]) == EPERM  # AF_VSOCK


def test_syscalls_newer_than_the_profile_get_enosys(docker_filter):
    prog = docker_filter.program
    top = docker_filter.max_nr[X86_64]
    assert top >= NR["clone3"]
    assert run_bpf(prog, top + 1) == ENOSYS
    assert run_bpf(prog, 1000) == ENOSYS
    # a known syscall the profile does not allow stays EPERM
    assert run_bpf(prog, NR["kexec_load"]) == EPERM


def test_enosys_applies_per_arch(docker_filter):
    prog = docker_filter.program
    assert run_bpf(prog, 20, arch=I386) == ALLOW  # i386 getpid
    assert run_bpf(prog, 1000, arch=I386) == ENOSYS
    assert run_bpf(prog, X32 | NR["getpid"]) == ALLOW
    assert run_bpf(prog, X32 | 500) == ENOSYS  # above x32's common table, below its own
    # an arch the profile does not list is killed, not given ENOSYS
    assert run_bpf(prog, 1000, arch=AARCH64) == 0


def test_cap_sys_admin_opens_the_admin_syscalls(docker_profile):
    caps = DOCKER_CAPS + ["CAP_SYS_ADMIN"]
    prog = seccomp.compile(seccomp.from_docker_profile(docker_profile, caps)).program
    assert run_bpf(prog, NR["clone3"]) == ALLOW
    assert run_bpf(prog, NR["unshare"]) == ALLOW
    assert run_bpf(prog, NR["clone"], args=[0x10000000 | 17]) == ALLOW


def test_compile_loads_nothing(docker_filter):
    with open("/proc/self/status") as f:
        assert "Seccomp:\t0" in f.read()


def _one(action, syscall="getcwd", default="SCMP_ACT_ALLOW", **extra):
    rule = {"names": [syscall], "action": action, **extra}
    return seccomp.compile({"defaultAction": default, "syscalls": [rule]})


@pytest.mark.parametrize("action,extra,expect", [
    ("SCMP_ACT_KILL", {}, 0),
    ("SCMP_ACT_KILL_THREAD", {}, 0),
    ("SCMP_ACT_KILL_PROCESS", {}, 0x80000000),
    ("SCMP_ACT_TRAP", {}, 0x00030000),
    ("SCMP_ACT_ERRNO", {}, EPERM),
    ("SCMP_ACT_ERRNO", {"errnoRet": errno.EIO}, ERRNO | errno.EIO),
    ("SCMP_ACT_TRACE", {"errnoRet": 7}, 0x7FF00007),
    ("SCMP_ACT_LOG", {}, 0x7FFC0000),
])
def test_actions(action, extra, expect):
    prog = _one(action, **extra).program
    assert run_bpf(prog, NR["getcwd"]) == expect
    assert run_bpf(prog, NR["getpid"]) == ALLOW


def test_allow_and_log_defaults_keep_unknown_numbers_allowed():
    for default, ret in (("SCMP_ACT_ALLOW", ALLOW), ("SCMP_ACT_LOG", 0x7FFC0000)):
        f = _one("SCMP_ACT_ERRNO", default=default)
        assert f.max_nr == {}
        assert run_bpf(f.program, 1000) == ret


@pytest.mark.parametrize("default,ret", [
    ("SCMP_ACT_KILL_PROCESS", 0x80000000), ("SCMP_ACT_TRAP", 0x00030000),
    ("SCMP_ACT_ERRNO", EPERM)])
def test_denying_defaults_get_the_enosys_stub(default, ret):
    f = _one("SCMP_ACT_ALLOW", syscall="getcwd", default=default)
    assert f.max_nr[X86_64] == NR["getcwd"]
    assert run_bpf(f.program, NR["getcwd"]) == ALLOW
    assert run_bpf(f.program, NR["getpid"]) == ret  # below the highest named
    assert run_bpf(f.program, NR["getcwd"] + 1) == ENOSYS


def test_default_errno_ret():
    f = seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EACCES,
                         "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]})
    assert run_bpf(f.program, 0) == ERRNO | errno.EACCES


@pytest.mark.parametrize("op,value,value2,allowed,denied", [
    ("SCMP_CMP_NE", 5, None, [6, 0], [5]),
    ("SCMP_CMP_LT", 5, None, [4], [5, 6]),
    ("SCMP_CMP_LE", 5, None, [5], [6]),
    ("SCMP_CMP_EQ", 5, None, [5], [4, 6]),
    ("SCMP_CMP_GE", 5, None, [5, 6], [4]),
    ("SCMP_CMP_GT", 5, None, [6], [5]),
    ("SCMP_CMP_MASKED_EQ", 0xF0, 0x20, [0x20, 0x2F], [0x30, 0x3F]),
    ("SCMP_CMP_EQ", 0x1_0000_0002, None, [0x1_0000_0002], [2]),
])
def test_argument_operators(op, value, value2, allowed, denied):
    arg = {"index": 1, "value": value, "op": op}
    if value2 is not None:
        arg["valueTwo"] = value2
    f = seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [arg]}]})
    for v in allowed:
        assert run_bpf(f.program, NR["personality"], args=[0, v]) == ALLOW, hex(v)
    for v in denied:
        assert run_bpf(f.program, NR["personality"], args=[0, v]) == EPERM, hex(v)


def test_conditions_on_different_args_are_anded():
    f = seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}]})
    assert run_bpf(f.program, NR["personality"], args=[1, 2]) == ALLOW
    assert run_bpf(f.program, NR["personality"], args=[1, 3]) == EPERM


def test_repeated_arg_index_means_or():
    f = seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]})
    assert run_bpf(f.program, NR["personality"], args=[1]) == ALLOW
    assert run_bpf(f.program, NR["personality"], args=[2]) == ALLOW
    assert run_bpf(f.program, NR["personality"], args=[3]) == EPERM


def test_unknown_syscall_names_are_skipped():
    f = seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["no_such_syscall_xyz", "getpid"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["another_missing_one"], "action": "SCMP_ACT_ALLOW"}]})
    assert run_bpf(f.program, NR["getpid"]) == ALLOW


def test_rule_equal_to_default_is_accepted():
    f = seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}]})
    assert run_bpf(f.program, NR["keyctl"]) == EPERM


def test_architectures_add_arches_and_flags_are_kept():
    f = seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO",
                         "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                           "SCMP_ARCH_LOONGARCH64"],
                         "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                         "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]})
    assert f.flags == sc.FILTER_FLAG_LOG | sc.FILTER_FLAG_SPEC_ALLOW
    assert run_bpf(f.program, 20, arch=I386) == ALLOW
    only_native = _one("SCMP_ACT_ALLOW", syscall="getpid", default="SCMP_ACT_ERRNO")
    assert run_bpf(only_native.program, 20, arch=I386) == 0  # not listed: killed


def test_foreign_byte_order_arch_is_a_config_error():
    with pytest.raises(ConfigError, match=r"architectures\[1\]: SCMP_ARCH_S390X cannot be filtered"):
        seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO",
                         "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_S390X"]})


def _base():
    return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]}


def _set(path, value):
    cfg = _base()
    node = cfg
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


@pytest.mark.parametrize("path,value,message", [
    (["defaultAction"], KeyError, "linux.seccomp.defaultAction: required"),
    (["defaultAction"], "SCMP_ACT_FOO", 'linux.seccomp.defaultAction: unknown action "SCMP_ACT_FOO"'),
    (["defaultAction"], "SCMP_ACT_NOTIFY", "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default"),
    (["syscalls", 0, "action"], "SCMP_ACT_NOTIFY", "linux.seccomp.listenerPath: SCMP_ACT_NOTIFY needs a listener"),
    (["listenerPath"], 3, "linux.seccomp.listenerPath: must be a path"),
    (["architectures"], ["SCMP_ARCH_FOO"], "linux.seccomp.architectures[0]: unknown architecture"),
    (["flags"], ["SECCOMP_FILTER_FLAG_BOGUS"], "linux.seccomp.flags[0]: unknown flag"),
    (["flags"], ["SECCOMP_FILTER_FLAG_NEW_LISTENER"], "linux.seccomp.flags[0]: \"SECCOMP_FILTER_FLAG_NEW_LISTENER\" is not supported"),
    (["syscalls"], {}, "linux.seccomp.syscalls: must be a list"),
    (["syscalls", 0, "names"], [], "linux.seccomp.syscalls[0].names: must be a non-empty list"),
    (["syscalls", 0, "names"], ["getpid", 3], "linux.seccomp.syscalls[0].names[1]"),
    (["syscalls", 0, "action"], "ALLOW", 'linux.seccomp.syscalls[0].action: unknown action "ALLOW"'),
    (["syscalls", 0, "errnoRet"], 5, "linux.seccomp.syscalls[0].errnoRet: SCMP_ACT_ALLOW takes no errno"),
    (["syscalls", 1, "args", 0, "op"], "SCMP_CMP_FOO", "linux.seccomp.syscalls[1].args[0].op: unknown operator"),
    (["syscalls", 1, "args", 0, "index"], 6, "linux.seccomp.syscalls[1].args[0].index"),
    (["syscalls", 1, "args", 0, "value"], -1, "linux.seccomp.syscalls[1].args[0].value"),
    (["syscalls", 1, "args", 0, "value"], 1 << 64, "linux.seccomp.syscalls[1].args[0].value"),
    (["syscalls", 1, "args", 0, "valueTwo"], "x", "linux.seccomp.syscalls[1].args[0].valueTwo"),
])
def test_invalid_config_names_the_field(path, value, message):
    with pytest.raises(ConfigError) as e:
        seccomp.compile(_set(path, value))
    assert message in str(e.value)


def test_default_errno_ret_needs_an_errno_action():
    with pytest.raises(ConfigError, match=r"^linux\.seccomp\.defaultErrnoRet: SCMP_ACT_KILL takes no errno"):
        seccomp.compile({"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1})


def test_errno_ret_must_fit_16_bits():
    with pytest.raises(ConfigError, match=r"syscalls\[0\]\.errnoRet"):
        _one("SCMP_ACT_ERRNO", errnoRet=0x10000)


def test_field_prefix_is_the_callers():
    with pytest.raises(ConfigError, match=r"^process\.seccomp\.defaultAction"):
        seccomp.compile({}, field="process.seccomp")


def test_filter_is_plain_data(docker_filter):
    again = seccomp.Filter(docker_filter.program, docker_filter.flags)
    assert len(again) == len(docker_filter) == len(docker_filter.program) // 8


# --- Docker profile conversion

def _names(oci, action=None):
    out = set()
    for rule in oci["syscalls"]:
        if action is None or rule["action"] == action:
            out.update(rule["names"])
    return out


def test_docker_conversion_shape(docker_profile):
    oci = seccomp.from_docker_profile(docker_profile, DOCKER_CAPS)
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO"
    assert oci["defaultErrnoRet"] == 1
    assert oci["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for rule in oci["syscalls"]:
        assert set(rule) <= {"names", "action", "errnoRet", "args"}
    assert "arch_prctl" in _names(oci)
    assert "riscv_flush_icache" not in _names(oci)
    assert "bpf" not in _names(oci)
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in oci["syscalls"]
    assert "archMap" not in oci


def test_docker_conversion_other_arch(docker_profile):
    oci = seccomp.from_docker_profile(docker_profile, DOCKER_CAPS, arch="aarch64")
    assert oci["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in _names(oci)
    assert "arm_fadvise64_64" in _names(oci)
    s390 = seccomp.from_docker_profile(docker_profile, DOCKER_CAPS, arch="s390x")
    clone_args = [r["args"] for r in s390["syscalls"] if r["names"] == ["clone"]]
    assert clone_args == [[{"index": 1, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]]


def test_docker_conversion_caps(docker_profile):
    admin = seccomp.from_docker_profile(docker_profile, ["SYS_ADMIN", "cap_sys_ptrace"])
    assert {"bpf", "clone3", "mount", "unshare", "kcmp"} <= _names(admin, "SCMP_ACT_ALLOW")
    assert "clone3" not in _names(admin, "SCMP_ACT_ERRNO")
    assert not any(r["names"] == ["clone"] and "args" in r for r in admin["syscalls"])


def test_docker_conversion_min_kernel(docker_profile):
    old = seccomp.from_docker_profile(docker_profile, DOCKER_CAPS, kernel=(4, 4))
    new = seccomp.from_docker_profile(docker_profile, DOCKER_CAPS, kernel=(4, 8))
    assert "ptrace" not in _names(old)
    assert "ptrace" in _names(new)
    excl = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["x"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.10"}}]}
    assert _names(seccomp.from_docker_profile(excl, kernel=(5, 4))) == {"x"}
    assert _names(seccomp.from_docker_profile(excl, kernel=(6, 1))) == set()


def test_docker_conversion_legacy_name_and_explicit_architectures():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"name": "getpid", "action": "SCMP_ACT_ALLOW"}]}
    oci = seccomp.from_docker_profile(profile)
    assert oci["architectures"] == ["SCMP_ARCH_X86_64"]
    assert oci["syscalls"] == [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]


def test_docker_conversion_errors():
    with pytest.raises(ConfigError, match="unknown architecture 'sparc'"):
        seccomp.from_docker_profile({"defaultAction": "SCMP_ACT_ERRNO"}, arch="sparc")
    bad = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["x"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]}
    with pytest.raises(ConfigError, match=r"seccomp profile\.syscalls\[0\]\.includes\.minKernel"):
        seccomp.from_docker_profile(bad)


# --- compile cache

def test_cache_returns_the_same_filter(tmp_path, docker_profile):
    oci = seccomp.from_docker_profile(docker_profile, DOCKER_CAPS)
    first = seccomp.compile(oci, cache_dir=str(tmp_path))
    files = os.listdir(tmp_path)
    assert len(files) == 1
    again = seccomp.compile(copy.deepcopy(oci), cache_dir=str(tmp_path))
    assert again.program == first.program
    assert again.max_nr == first.max_nr
    assert (again.flags, again.default_action) == (first.flags, first.default_action)
    other = seccomp.compile(_base(), cache_dir=str(tmp_path))
    assert other.program != first.program
    assert len(os.listdir(tmp_path)) == 2


def test_corrupt_cache_entry_is_recompiled(tmp_path):
    cfg = _base()
    good = seccomp.compile(cfg, cache_dir=str(tmp_path))
    (entry,) = tmp_path.iterdir()
    entry.write_bytes(b"garbage")
    again = seccomp.compile(cfg, cache_dir=str(tmp_path))
    assert again.program == good.program


def test_invalid_config_is_not_cached(tmp_path):
    with pytest.raises(ConfigError):
        seccomp.compile({"defaultAction": "nope"}, cache_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_cache_in_a_directory_others_can_write_is_not_used(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    seccomp.compile(_base(), cache_dir=str(shared))
    assert list(shared.iterdir()) == []


def test_cache_dir_is_created_private(tmp_path):
    d = tmp_path / "new"
    seccomp.compile(_base(), cache_dir=str(d))
    assert d.stat().st_mode & 0o777 == 0o700
    assert len(list(d.iterdir())) == 1


def test_notify_filters_ask_for_a_listener_and_refuse_write():
    cfg = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    assert seccomp.compile(cfg).notify
    assert not seccomp.compile(dict(cfg, syscalls=[])).notify  # an unused listenerPath
    cfg["syscalls"][0]["names"].append("write")
    with pytest.raises(ConfigError, match=r"syscalls\[0\]: SCMP_ACT_NOTIFY cannot be used for the write"):
        seccomp.compile(cfg)
