"""Capabilities, seccomp, no_new_privileges, LSM options, masked paths."""
import os

from berth.errors import ConfigError
from berth.sys import caps as captab

# Docker's default 14 minus CAP_NET_RAW (ping works through
# net.ipv4.ping_group_range instead; raw sockets allow ARP/IP spoofing on
# the bridge) and CAP_MKNOD (the device cgroup already refuses new nodes;
# the capability only widens what a breakout can do).
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL", "CAP_AUDIT_WRITE", "CAP_SETFCAP",
)

# moby's oci defaults (which runc 1.2's `spec` follows); /proc/interrupts
# joined moby's list in 2025 (per-CPU interrupt counts are a side channel)
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_PROFILE_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "seccomp_default.json")
_profile = None


def _cap(name, field):
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{field}: {name!r} is not a capability name")
    up = name.upper()
    if up == "ALL":
        return "ALL"
    full = up if up.startswith("CAP_") else "CAP_" + up
    if captab.number(full) is None:
        raise ConfigError(f"{field}: unknown capability {name!r}",
                          hint="use names like NET_ADMIN or CAP_NET_ADMIN, or ALL")
    return full


def all_caps(host):
    return [n for n in captab.NAMES if captab.number(n) <= host.last_cap and n in host.bounding]


def capabilities(opts, host):
    """Docker's order of precedence: privileged gives everything; ALL in
    cap_add gives everything but cap_drop; ALL in cap_drop keeps only
    cap_add; otherwise defaults - cap_drop + cap_add."""
    if opts.privileged:
        return all_caps(host)
    add = [_cap(c, f"cap_add[{i}]") for i, c in enumerate(opts.cap_add or ())]
    drop = [_cap(c, f"cap_drop[{i}]") for i, c in enumerate(opts.cap_drop or ())]
    if "ALL" in add:
        keep = [c for c in all_caps(host) if c not in drop]
    elif "ALL" in drop:
        keep = [c for c in add if c != "ALL"]
    else:
        keep = [c for c in DEFAULT_CAPS if c not in drop] + add
    for c in keep:
        if captab.number(c) > host.last_cap:
            raise ConfigError(f"cap_add: {c} is not supported by this kernel")
        if c not in host.bounding:
            raise ConfigError(f"cap_add: {c} is not in this host's bounding set",
                              hint="the engine itself runs without it, so cannot grant it")
    out = []
    for c in keep:
        if c not in out:
            out.append(c)
    return out


def paths(asked, default, field):
    """The request's list when it gives one (also an empty one), else Docker's."""
    if asked is None:
        return list(default)
    if not isinstance(asked, (list, tuple)) or not all(isinstance(p, str) and p.startswith("/")
                                                       for p in asked):
        raise ConfigError(f"{field}: must be a list of absolute paths")
    return list(asked)


def parse_security_opt(opts, host):
    """-> {"no_new_privileges": bool, "seccomp": None|"unconfined"|dict}"""
    out = {"no_new_privileges": True, "seccomp": None}
    for i, item in enumerate(opts.security_opt or ()):
        field = f"security_opt[{i}]"
        if not isinstance(item, str):
            raise ConfigError(f"{field}: must be a string")
        # Docker accepts both "key=value" and the older "key:value"
        key, sep, value = item.partition("=")
        if not sep:
            key, sep, value = item.partition(":")
        if key == "no-new-privileges":
            if not sep or value == "true":
                out["no_new_privileges"] = True
            elif value == "false":
                out["no_new_privileges"] = False
            else:
                raise ConfigError(f"{field}: {item!r}: no-new-privileges takes true or false")
        elif key == "seccomp" and sep:
            out["seccomp"] = _seccomp_opt(value, field)
        elif key == "apparmor" and sep:
            # asking for no confinement is what this host gives anyway
            if value != "unconfined" and not host.apparmor:
                raise ConfigError(f"{field}: {item!r}: not available on this host: no AppArmor")
            if value != "unconfined":
                raise ConfigError(f"{field}: {item!r}: AppArmor profiles are not supported yet")
        elif key == "label" and sep:
            if value != "disable" and not host.selinux:
                raise ConfigError(f"{field}: {item!r}: not available on this host: SELinux disabled")
            if value != "disable":
                raise ConfigError(f"{field}: {item!r}: SELinux labels are not supported yet")
        else:
            raise ConfigError(f"{field}: unknown security option {item!r}",
                              hint="no-new-privileges[:true|false], seccomp=unconfined|<file>, "
                                   "apparmor=..., label=...")
    return out


def _seccomp_opt(value, field):
    from berth.oci import jsonio
    if value == "unconfined":
        return "unconfined"
    if not value:
        raise ConfigError(f"{field}: seccomp= needs \"unconfined\" or a profile")
    if value.lstrip().startswith("{"):
        # the Engine API carries the profile's JSON itself
        profile = jsonio.loads(value, what=f"{field} seccomp profile")
    else:
        profile = jsonio.load_file(value, what=f"{field}: seccomp profile {value}")
    if not isinstance(profile, dict):
        raise ConfigError(f"{field}: seccomp profile must be a JSON object")
    return profile


def default_profile():
    global _profile
    if _profile is None:
        from berth.oci import jsonio
        if not os.path.exists(_PROFILE_PATH):
            from berth.errors import NotFound
            raise NotFound(f"default seccomp profile {_PROFILE_PATH} is not installed",
                           hint="run make build, or pass security_opt seccomp=<file>")
        _profile = jsonio.load_file(_PROFILE_PATH)
    return _profile


def seccomp(choice, caps, opts, host):
    """OCI linux.seccomp or None. Privileged means no filter (Docker)
    unless a profile was given explicitly."""
    from berth.oci.seccomp_profile import from_docker_profile
    if choice == "unconfined":
        return None
    if choice is None:
        if opts.privileged:
            return None
        choice = default_profile()
    import copy
    out = from_docker_profile(choice, caps, arch=host.arch, kernel=host.kernel,
                              field="seccomp profile")
    # the result shares "args" objects with the cached profile; a caller
    # editing its spec must not edit the next container's
    return copy.deepcopy(out)
