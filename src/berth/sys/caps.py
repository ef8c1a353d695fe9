"""Capability names and numbers (linux/capability.h) and what the running
kernel knows. Numbers are positions in NAMES."""
from berth.errors import SysError
from berth.sys import libc

NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
    "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: nr for nr, name in enumerate(NAMES)}

PR_CAPBSET_READ = 23
LAST_CAP_PATH = "/proc/sys/kernel/cap_last_cap"


def number(name):
    """Number of a CAP_* name, or None if the name is not a capability."""
    return NUMBERS.get(name)


def name(nr):
    return NAMES[nr] if 0 <= nr < len(NAMES) else f"CAP_{nr}"


def names(mask):
    """CAP_* names of the bits set in mask, lowest first."""
    out = []
    nr = 0
    while mask:
        if mask & 1:
            out.append(name(nr))
        mask >>= 1
        nr += 1
    return out


def last_cap(path=LAST_CAP_PATH):
    """Highest capability number the running kernel knows."""
    try:
        with open(path, "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        pass
    # /proc may be missing (early in a container's init); the bounding set
    # query answers EINVAL past the last capability.
    nr = 0
    while True:
        try:
            libc.prctl(PR_CAPBSET_READ, nr + 1)
        except SysError:
            return nr
        nr += 1
