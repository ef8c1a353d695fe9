"""Device rules on cgroup2: a BPF_PROG_TYPE_CGROUP_DEVICE program built from
the rule list, loaded with bpf(2) and attached to the container's cgroup.
cgroup2 has no devices.allow; the kernel asks this program instead.

The program sees {access << 16 | type, major, minor} and answers 1 (allow)
or 0 (deny). Rules are checked last to first and the first match decides,
which is what v1's devices.allow/deny sequence amounts to for the rule
lists runtimes write (a leading deny-all, then exceptions). A rule of type
"a" resets the list, so only the rules after the last one are compiled and
it sets the answer when nothing matches.

The bpf(2) call itself is in berth.sys.bpf; this module is imported only
on hosts with cgroup2 device control."""
import ctypes
import os
import struct

from berth.errors import SysError
from berth.sys.bpf import call as _bpf

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

DEV_BLOCK, DEV_CHAR = 1, 2
ACC = {"m": 1, "r": 2, "w": 4}

def _insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


_LDXW, _AND32, _RSH32, _MOV32X, _MOV64K, _JNE, _JEQ, _EXIT = (
    0x61, 0x54, 0x74, 0xbc, 0xb7, 0x55, 0x15, 0x95)


def compile_rules(rules):
    """[(allow, type, major, minor, access)] -> program bytes."""
    default = False
    start = 0
    for i, (allow, typ, _, _, _) in enumerate(rules):
        if typ == "a":
            default, start = allow, i + 1
    prog = [
        _insn(_LDXW, 2, 1, 0),           # r2 = type | access << 16
        _insn(_AND32, 2, imm=0xFFFF),    # r2 = type
        _insn(_LDXW, 3, 1, 0),
        _insn(_RSH32, 3, imm=16),        # r3 = access requested
        _insn(_LDXW, 4, 1, 4),           # r4 = major
        _insn(_LDXW, 5, 1, 8),           # r5 = minor
    ]
    for allow, typ, major, minor, access in reversed(rules[start:]):
        checks = []  # (opcode, reg, imm) jumps that leave the block on mismatch
        checks.append((_JNE, 2, DEV_BLOCK if typ == "b" else DEV_CHAR))
        bits = 0
        for ch in access:
            bits |= ACC[ch]
        block_pre = []
        if bits != 7:
            # allow: every requested bit is granted; deny: any requested bit is refused
            mask = (~bits & 7) if allow else bits
            block_pre = [_insn(_MOV32X, 1, 3), _insn(_AND32, 1, imm=mask)]
            checks.append((_JNE if allow else _JEQ, 1, 0))
        if major is not None:
            checks.append((_JNE, 4, major))
        if minor is not None:
            checks.append((_JNE, 5, minor))
        # layout: type check, [mov, and], access check, major, minor, mov r0, exit
        body = [checks[0]] + block_pre + checks[1:]
        n = len(body) + 2
        for i, item in enumerate(body):
            if isinstance(item, bytes):
                prog.append(item)
            else:
                op, reg, imm = item
                prog.append(_insn(op, reg, off=n - i - 1, imm=imm))
        prog.append(_insn(_MOV64K, 0, imm=1 if allow else 0))
        prog.append(_insn(_EXIT))
    prog.append(_insn(_MOV64K, 0, imm=1 if default else 0))
    prog.append(_insn(_EXIT))
    return b"".join(prog)


def load(code):
    """Loads the program; returns its fd. A refusal is retried with the
    verifier's log on, so the error can quote it."""
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(1 << 16)
    for level in (0, 1):
        attr = struct.pack("<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                           ctypes.addressof(insns), ctypes.addressof(lic), level,
                           len(log) if level else 0, ctypes.addressof(log) if level else 0,
                           0, 0, b"berth_dev", 0, BPF_CGROUP_DEVICE)
        fd, _ = _bpf(BPF_PROG_LOAD, attr)
        if fd >= 0:
            return fd
        if level == 0:
            err = -fd
    why = [ln for ln in log.value.decode(errors="replace").splitlines() if ln.strip()]
    raise SysError("cannot load the cgroup2 device program", errno=err,
                   hint=(why[-2] if len(why) > 1 else "does the kernel have CONFIG_CGROUP_BPF?"))


def attached(cg_fd):
    """Ids of the device programs attached to the cgroup itself."""
    ids = (ctypes.c_uint32 * 64)()
    attr = struct.pack("<IIIIQI4x", cg_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64)
    r, raw = _bpf(BPF_PROG_QUERY, attr)
    if r < 0:
        raise SysError("cannot list the cgroup's device programs", errno=-r)
    cnt = struct.unpack_from("<I", raw, 24)[0]
    return list(ids[:cnt])


def install(cgroup_dir, rules):
    """Attaches a program for rules and then detaches the ones attached
    before: the cgroup is never without a device policy."""
    code = compile_rules(rules)
    try:
        cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SysError(f"cannot open cgroup {cgroup_dir}", errno=e.errno) from None
    try:
        old = attached(cg_fd)
        prog = load(code)
        try:
            attr = struct.pack("<IIIII", cg_fd, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, 0)
            r, _ = _bpf(BPF_PROG_ATTACH, attr)
            if r < 0:
                raise SysError(f"cannot attach the device program to {cgroup_dir}", errno=-r)
        finally:
            os.close(prog)
        for pid in old:
            fd, _ = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<III", pid, 0, 0))
            if fd < 0:
                continue  # gone meanwhile
            try:
                r, _ = _bpf(BPF_PROG_DETACH,
                            struct.pack("<IIIII", cg_fd, fd, BPF_CGROUP_DEVICE, 0, 0))
                if r < 0 and r != -2:
                    raise SysError(f"cannot detach the old device program from {cgroup_dir}",
                                   errno=-r)
            finally:
                os.close(fd)
    finally:
        os.close(cg_fd)
