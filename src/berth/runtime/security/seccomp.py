"""OCI linux.seccomp -> a BPF program, loaded later in the container's init.

compile() validates the whole object and does all libseccomp work up front;
Filter.load() is one system call, so the init needs neither libseccomp nor
any allocation-heavy Python after its root has moved.

Like runc, a syscall number above the highest one the profile names (per
architecture) fails with ENOSYS instead of the default denial: the profile
cannot know about syscalls newer than itself, and libc falls back cleanly
on ENOSYS (clone3 -> clone, faccessat2 -> faccessat) but not on EPERM."""
import errno as _errno

from berth.errors import ConfigError, SysError
from berth.oci.fields import objects
from berth.sys import seccomp as sc

_ACTIONS = {
    "SCMP_ACT_KILL": sc.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": sc.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": sc.ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": sc.ACT_TRAP,
    "SCMP_ACT_ERRNO": sc.ACT_ERRNO,
    "SCMP_ACT_TRACE": sc.ACT_TRACE,
    "SCMP_ACT_ALLOW": sc.ACT_ALLOW,
    "SCMP_ACT_LOG": sc.ACT_LOG,
    "SCMP_ACT_NOTIFY": sc.ACT_NOTIFY,
}
_WITH_ERRNO = (sc.ACT_ERRNO, sc.ACT_TRACE)

_OPS = {
    "SCMP_CMP_NE": sc.CMP_NE,
    "SCMP_CMP_LT": sc.CMP_LT,
    "SCMP_CMP_LE": sc.CMP_LE,
    "SCMP_CMP_EQ": sc.CMP_EQ,
    "SCMP_CMP_GE": sc.CMP_GE,
    "SCMP_CMP_GT": sc.CMP_GT,
    "SCMP_CMP_MASKED_EQ": sc.CMP_MASKED_EQ,
}

_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": sc.FILTER_FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": sc.FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": sc.FILTER_FLAG_SPEC_ALLOW,
}
_FLAG_ATTRS = (
    (sc.FILTER_FLAG_TSYNC, sc.ATTR_CTL_TSYNC),
    (sc.FILTER_FLAG_LOG, sc.ATTR_CTL_LOG),
    (sc.FILTER_FLAG_SPEC_ALLOW, sc.ATTR_CTL_SSB),
)

# every arch the runtime spec names; libseccomp may not know all of them
_ARCHES = frozenset((
    "X86", "X86_64", "X32", "ARM", "AARCH64", "MIPS", "MIPS64", "MIPS64N32",
    "MIPSEL", "MIPSEL64", "MIPSEL64N32", "PPC", "PPC64", "PPC64LE", "S390",
    "S390X", "PARISC", "PARISC64", "RISCV64", "LOONGARCH64", "M68K", "SH", "SHEB",
))

_U64 = 1 << 64


class Filter:
    """A compiled filter. program is bytes of struct sock_filter; flags are
    seccomp(2) SECCOMP_FILTER_FLAG_* bits. Both are plain data, so a Filter
    can be rebuilt in another process with Filter(program, flags)."""

    __slots__ = ("program", "flags", "default_action", "max_nr")

    def __init__(self, program, flags=0, default_action=None, max_nr=None):
        self.program = program
        self.flags = flags
        self.default_action = default_action
        self.max_nr = max_nr or {}

    def __len__(self):
        return len(self.program) // 8

    @property
    def notify(self):
        """SCMP_ACT_NOTIFY rules: load() gives a listener fd for the agent."""
        return bool(self.flags & sc.FILTER_FLAG_NEW_LISTENER)

    def load(self):
        """Install into the calling process (its only thread). Without
        no_new_privs the caller must still hold CAP_SYS_ADMIN. Returns the
        listener fd of a notify filter, else None."""
        return sc.load_bpf(self.program, self.flags)


def _int(value, where, limit=_U64):
    if type(value) is not int or not 0 <= value < limit:
        raise ConfigError(f"{where}: must be an integer from 0 to {limit - 1}, not {value!r}")
    return value


def _action(name, errno_ret, where, errno_where):
    if not isinstance(name, str):
        raise ConfigError(f"{where}: must be an action name such as \"SCMP_ACT_ERRNO\"")
    act = _ACTIONS.get(name)
    if act is None:
        raise ConfigError(f"{where}: unknown action \"{name}\"")
    if errno_ret is not None:
        if act not in _WITH_ERRNO:
            raise ConfigError(f"{errno_where}: {name} takes no errno",
                              hint="errnoRet is only for SCMP_ACT_ERRNO and SCMP_ACT_TRACE")
        return act | _int(errno_ret, errno_where, sc.RET_DATA + 1)
    if act in _WITH_ERRNO:
        return act | _errno.EPERM
    return act


def _flags(flags, where):
    if flags is None:
        return 0
    if not isinstance(flags, list):
        raise ConfigError(f"{where}: must be a list of flag names")
    bits = 0
    for i, name in enumerate(flags):
        bit = _FLAGS.get(name)
        if bit is None:
            if name in ("SECCOMP_FILTER_FLAG_NEW_LISTENER",
                        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
                        "SECCOMP_FILTER_FLAG_TSYNC_ESRCH"):
                raise ConfigError(f"{where}[{i}]: \"{name}\" is not supported yet",
                                  hint="it belongs to seccomp user notification")
            raise ConfigError(f"{where}[{i}]: unknown flag {name!r}")
        bits |= bit
    return bits


def _arch_tokens(arches, where):
    if arches is None:
        return []
    if not isinstance(arches, list):
        raise ConfigError(f"{where}: must be a list of names such as \"SCMP_ARCH_X86_64\"")
    tokens = []
    for i, name in enumerate(arches):
        if not isinstance(name, str) or not name.startswith("SCMP_ARCH_") \
                or name[10:] not in _ARCHES:
            raise ConfigError(f"{where}[{i}]: unknown architecture {name!r}")
        token = sc.arch_resolve_name(name[10:].lower())
        # a real arch this libseccomp predates cannot run here anyway
        if token:
            tokens.append((token, f"{where}[{i}]", name))
    return tokens


def _args(args, where):
    out = []
    for at, arg in objects(args, where):
        index = _int(arg.get("index"), f"{at}.index", 6)
        op = _OPS.get(arg.get("op"))
        if op is None:
            raise ConfigError(f"{at}.op: unknown operator {arg.get('op')!r}")
        value = _int(arg.get("value"), f"{at}.value")
        value2 = arg.get("valueTwo")
        value2 = 0 if value2 is None else _int(value2, f"{at}.valueTwo")
        out.append((index, op, value, value2))
    return out


def _rules(syscalls, where):
    """Validated (names, action, arg conditions, field) per entry."""
    rules = []
    for at, call in objects(syscalls, where):
        names = call.get("names")
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{at}.names: must be a non-empty list of syscall names")
        for j, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{at}.names[{j}]: must be a syscall name, not {name!r}")
        act = _action(call.get("action"), call.get("errnoRet"), f"{at}.action", f"{at}.errnoRet")
        rules.append((names, act, _args(call.get("args"), f"{at}.args"), at))
    return rules


def _conditions(args):
    """libseccomp ANDs the conditions of one rule but allows one condition
    per argument; runc reads repeated indexes as OR, one rule each."""
    seen = set()
    for a in args:
        if a[0] in seen:
            return [[a] for a in args]
        seen.add(a[0])
    return [args]


def compile(seccomp, field="linux.seccomp", cache_dir=None):
    """Validate linux.seccomp and compile it to a Filter. Loads nothing.

    cache_dir: a root-only directory where compiled programs are kept by
    content hash; the same profile is then not compiled again (libseccomp
    needs ~12 ms for Docker's default profile with its three x86 arches)."""
    if not isinstance(seccomp, dict):
        raise ConfigError(f"{field}: must be an object")
    key = None
    if cache_dir is not None and _cache_dir_ok(cache_dir):
        key = _cache_key(seccomp)
        cached = _cache_read(cache_dir, key)
        if cached is not None:
            return cached
    filt = _compile(seccomp, field)
    if key is not None:
        _cache_write(cache_dir, key, filt)
    return filt


def _compile(seccomp, field):
    if "defaultAction" not in seccomp:
        raise ConfigError(f"{field}.defaultAction: required")
    default = _action(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"),
                      f"{field}.defaultAction", f"{field}.defaultErrnoRet")
    flags = _flags(seccomp.get("flags"), f"{field}.flags")
    tokens = _arch_tokens(seccomp.get("architectures"), f"{field}.architectures")
    rules = _rules(seccomp.get("syscalls"), f"{field}.syscalls")
    if _notify_checked(seccomp, default, rules, field):
        flags |= sc.FILTER_FLAG_NEW_LISTENER

    native = sc.arch_native()
    resolve = sc.syscall_resolver(native)
    encoded = {}
    for call_names, _, _, _ in rules:
        for name in call_names:
            if name not in encoded:
                encoded[name] = name.encode()

    with sc.Context(default) as ctx:
        # the runtime sets no_new_privs itself, when the config asks for it
        ctx.attr_set(sc.ATTR_CTL_NNP, 0)
        for bit, attr in _FLAG_ATTRS:
            if flags & bit:
                try:
                    ctx.attr_set(attr, 1)
                except SysError:
                    pass  # only seccomp_load() reads it; load_bpf() passes flags itself
        arches = [native]
        for token, at, name in tokens:
            try:
                if ctx.arch_add(token):
                    arches.append(token)
            except SysError as e:
                # EDOM: libseccomp cannot mix byte orders in one filter
                raise ConfigError(f"{at}: {name} cannot be filtered on this host",
                                  errno=e.errno) from None
        for call_names, act, args, at in rules:
            if act == default:
                continue  # libseccomp refuses a rule that repeats the default
            groups = _conditions(args)
            for name in call_names:
                nr = resolve(encoded[name])
                if nr == sc.NR_SCMP_ERROR:
                    continue  # newer or older than this libseccomp, as runc does
                for cond in groups:
                    ret = ctx.rule_add(act, nr, cond)
                    if ret < 0:
                        raise ConfigError(f"{at}: cannot add rule for syscall \"{name}\"",
                                          errno=-ret)
        program = ctx.export_bpf()

    max_nr = {}
    if _denies(default):
        max_nr = _max_numbers(arches, encoded.values())
        program = _enosys_stub(max_nr) + program
    if len(program) // 8 > sc.BPF_MAXINSNS:
        raise ConfigError(f"{field}: filter too large ({len(program) // 8} instructions, "
                          f"the kernel allows {sc.BPF_MAXINSNS})")
    return Filter(program, flags, default, max_nr)


def _notify_checked(seccomp, default, rules, field):
    """True if the filter notifies an agent (SCMP_ACT_NOTIFY). The runtime
    writes to its parent after loading it and before the agent has the
    listener, so a notified write() would never return: refused, as runc
    refuses it. A listenerPath without notify rules is unused, as in runc."""
    path = seccomp.get("listenerPath")
    if path is not None and not isinstance(path, str):
        raise ConfigError(f"{field}.listenerPath: must be a path, not {path!r}")
    if path and not path.startswith("/"):
        raise ConfigError(f"{field}.listenerPath: {path!r} is not an absolute path",
                          hint="abstract sockets are not supported, as with runc")
    if default == sc.ACT_NOTIFY:
        raise ConfigError(f"{field}.defaultAction: SCMP_ACT_NOTIFY cannot be the default "
                          "action (it would take write too)")
    notified = [(names, at) for names, act, _, at in rules if act == sc.ACT_NOTIFY]
    for names, at in notified:
        if "write" in names:
            raise ConfigError(f"{at}: SCMP_ACT_NOTIFY cannot be used for the write syscall")
    if notified and not path:
        raise ConfigError(f"{field}.listenerPath: SCMP_ACT_NOTIFY needs a listener socket",
                          hint="the unix socket of a seccomp agent")
    return bool(notified)


_CACHE_MAGIC = b"berth-seccomp-1\n"


def _cache_key(seccomp):
    try:
        from _sha256 import sha256  # hashlib costs 2.5 ms to import, this 0.2
    except ImportError:
        from hashlib import sha256
    from berth.oci import jsonio
    h = sha256(_CACHE_MAGIC)
    # the program depends on libseccomp's syscall tables and the host arch too
    h.update(repr((sc.version(), sc.arch_native())).encode())
    h.update(jsonio.dumps(seccomp).encode())
    return h.hexdigest()


def _u32(data, pos):
    return int.from_bytes(data[pos:pos + 4], "little")


def _cache_dir_ok(cache_dir):
    """Whoever can write here chooses the filter containers get: use only a
    directory of our own that nobody else may write."""
    import os
    try:
        os.mkdir(cache_dir, 0o700)
    except OSError:
        pass
    try:
        st = os.stat(cache_dir)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _cache_read(cache_dir, key):
    import os
    try:
        with open(os.path.join(cache_dir, key), "rb") as f:
            data = f.read()
    except OSError:
        return None
    m = len(_CACHE_MAGIC)
    # magic, flags, default, count, count * (arch, max), program
    if data[:m] != _CACHE_MAGIC or len(data) < m + 12:
        return None
    flags, default, count = _u32(data, m), _u32(data, m + 4), _u32(data, m + 8)
    pos = m + 12
    max_nr = {}
    for _ in range(count):
        max_nr[_u32(data, pos)] = _u32(data, pos + 4)
        pos += 8
    program = data[pos:]
    if not program or len(program) % 8:
        return None
    return Filter(program, flags, default, max_nr)


def _cache_write(cache_dir, key, filt):
    """Best effort: a cache that cannot be written only costs time."""
    import os
    parts = [_CACHE_MAGIC]
    for v in (filt.flags, filt.default_action, len(filt.max_nr)):
        parts.append(v.to_bytes(4, "little"))
    for arch, top in filt.max_nr.items():
        parts.append(arch.to_bytes(4, "little") + top.to_bytes(4, "little"))
    parts.append(filt.program)
    path = os.path.join(cache_dir, key)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"".join(parts))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _denies(action):
    act = action & ~sc.RET_DATA & 0xFFFFFFFF
    return act in (sc.ACT_ERRNO, sc.ACT_KILL_THREAD, sc.ACT_KILL_PROCESS, sc.ACT_TRAP)


def _max_numbers(arches, names):
    """{arch token: highest syscall number named}. The kernel reports x32
    calls as x86_64 with a high bit set, so x32's maximum carries that bit."""
    x32 = sc.arch_resolve_name("x32")
    out = {}
    for arch in arches:
        resolve = sc.syscall_resolver(arch)
        if arch == x32:
            # 512-547 are x32's own old entry points; new syscalls get
            # numbers below them, so the ENOSYS range is below 512 too
            nrs = [n & ~sc.X32_SYSCALL_BIT for n in map(resolve, names) if n >= 0]
            top = max([n for n in nrs if n < sc.X32_OWN_FIRST], default=-1)
            if top >= 0:
                out[arch] = top | sc.X32_SYSCALL_BIT
            continue
        top = max(map(resolve, names), default=-1)
        if top >= 0:
            out[arch] = top
    return out


def _enosys_stub(max_nr):
    """BPF that returns ENOSYS for numbers above max_nr on each arch and
    otherwise falls through to libseccomp's program, which starts by
    loading the arch again, so the stub may clobber the accumulator."""
    x32 = sc.arch_resolve_name("x32")
    arches = [(a, m) for a, m in max_nr.items() if a != x32]
    return _assemble(arches, max_nr.get(x32))


def _assemble(arches, x32_max):
    """Lay the stub out as
         ld arch; (jeq arch_i -> block_i)*; ja end
         block_i: ld nr; [jset x32 -> x32check]; jgt max_i -> enosys, else end
         x32check: jge x32's own numbers -> end; jgt x32 max -> enosys, else end
         ...
         enosys: ret ERRNO|ENOSYS
         end:"""
    # symbolic program: (code, k, jt_label, jf_label); labels are names or None
    prog = [(sc.BPF_LD_W_ABS, sc.DATA_ARCH, None, None)]
    for i, (arch, _) in enumerate(arches):
        prog.append((sc.BPF_JEQ_K, arch, f"a{i}", None))
    prog.append((sc.BPF_JA, "end", None, None))
    labels = {}
    for i, (arch, top) in enumerate(arches):
        labels[f"a{i}"] = len(prog)
        prog.append((sc.BPF_LD_W_ABS, sc.DATA_NR, None, None))
        if arch == sc.AUDIT_ARCH_X86_64:
            # x32 numbers carry a high bit; compare them only with x32's max
            prog.append((sc.BPF_JSET_K, sc.X32_SYSCALL_BIT, f"x{i}", None))
            prog.append((sc.BPF_JGT_K, top, "enosys", "end"))
            labels[f"x{i}"] = len(prog)
            if x32_max is None:
                prog.append((sc.BPF_JA, "end", None, None))
            else:
                prog.append((sc.BPF_JGE_K, sc.X32_SYSCALL_BIT | sc.X32_OWN_FIRST, "end", None))
                prog.append((sc.BPF_JGT_K, x32_max, "enosys", "end"))
        else:
            prog.append((sc.BPF_JGT_K, top, "enosys", "end"))
    labels["enosys"] = len(prog)
    prog.append((sc.BPF_RET_K, sc.ACT_ERRNO | _errno.ENOSYS, None, None))
    labels["end"] = len(prog)

    out = []
    for pc, (code, k, jt, jf) in enumerate(prog):
        if code == sc.BPF_JA:
            out.append(sc.insn(code, labels[k] - pc - 1))
            continue
        jt = 0 if jt is None else labels[jt] - pc - 1
        jf = 0 if jf is None else labels[jf] - pc - 1
        if jt > 255 or jf > 255:
            raise ConfigError("linux.seccomp: too many architectures for the ENOSYS stub")
        out.append(sc.insn(code, k, jt, jf))
    return b"".join(out)


def __getattr__(name):
    # Docker's profile format is data: its converter lives with the OCI data
    # code, loaded only when asked for (~0.8 ms the runtime's OCI path
    # does not need)
    if name == "from_docker_profile":
        from berth.oci.seccomp_profile import from_docker_profile
        return from_docker_profile
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
