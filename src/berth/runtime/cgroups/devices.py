"""devices controller: linux.resources.devices plus the devices every
container gets.

The rule list always starts with "deny all", so a config without device
rules gets the default set rather than every host device (runc would leave
such a container with access to everything). The defaults come after the
config's rules, as in runc, so a config cannot take /dev/null away.

cgroup2 has no device files: there the same list becomes a
BPF_CGROUP_DEVICE program (ebpf.py), built from all_rules()."""
from berth.errors import ConfigError
from berth.oci.fields import objects
from berth.runtime.cgroups.values import PREFIX

CONTROLLER = "devices"

# (type, major, minor, access); None is the "*" wildcard
DEFAULTS = (
    # mknod of any node; using one still needs its own rule (runc and Docker
    # allow this too, and without CAP_MKNOD it is moot)
    ("c", None, None, "m"),
    ("b", None, None, "m"),
    ("c", 1, 3, "rwm"),     # /dev/null
    ("c", 1, 5, "rwm"),     # /dev/zero
    ("c", 1, 7, "rwm"),     # /dev/full
    ("c", 1, 8, "rwm"),     # /dev/random
    ("c", 1, 9, "rwm"),     # /dev/urandom
    ("c", 5, 0, "rwm"),     # /dev/tty
    ("c", 5, 1, "rwm"),     # /dev/console
    ("c", 5, 2, "rwm"),     # /dev/ptmx
    ("c", 136, None, "rwm"),  # /dev/pts/*
)


def _num(v, field):
    if v is None or v == -1:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(f"{field}: {v!r} is not a device number")
    return v


def rule_line(typ, major, minor, access):
    """The text the v1 devices.allow/deny files take."""
    if typ == "a":
        return "a"
    return f"{typ} {'*' if major is None else major}:{'*' if minor is None else minor} {access}"


def parse_rules(rules):
    """linux.resources.devices -> [(allow, type, major, minor, access)]."""
    out = []
    for f, r in objects(rules, f"{PREFIX}.devices"):
        allow = r.get("allow")
        if not isinstance(allow, bool):
            raise ConfigError(f"{f}.allow: must be true or false, not {allow!r}")
        typ = r.get("type") or "a"
        if typ not in ("a", "b", "c"):
            raise ConfigError(f"{f}.type: {typ!r} is not one of a, b, c")
        access = r.get("access") or "rwm"
        if not isinstance(access, str) or access.strip("rwm") or len(set(access)) != len(access):
            raise ConfigError(f"{f}.access: {access!r} is not a combination of r, w and m")
        out.append((allow, typ, _num(r.get("major"), f"{f}.major"),
                    _num(r.get("minor"), f"{f}.minor"), access))
    return out


def node_rules(devices):
    """linux.devices: the runtime creates these nodes, so the container may
    use them. Fifos ("p") need no rule; "u" is an unbuffered char device."""
    out = []
    for i, d in enumerate(devices or ()):
        if not isinstance(d, dict):
            continue  # spec.validate reports malformed entries
        typ = d.get("type")
        if typ == "p":
            continue
        if typ == "u":
            typ = "c"
        if typ not in ("b", "c"):
            continue
        out.append((True, typ, _num(d.get("major"), f"linux.devices[{i}].major"),
                    _num(d.get("minor"), f"linux.devices[{i}].minor"), "rwm"))
    return out


def all_rules(res, devices=None):
    """The effective list, [(allow, type, major, minor, access)], first
    rule deny-all; what v1 gets line by line and v2 as one program."""
    out = [(False, "a", None, None, "rwm")]
    out += parse_rules(res.get("devices"))
    out += [(True,) + d for d in DEFAULTS]
    out += node_rules(devices)
    return out


def writes(res, v2, devices=None):
    """[(file, value, field)] for v1; the full rule set, first line deny-all."""
    rules = parse_rules(res.get("devices"))
    if v2:
        return []
    out = [("devices.deny", "a", "devices")]
    for i, (allow, typ, major, minor, access) in enumerate(rules):
        out.append(("devices.allow" if allow else "devices.deny",
                    rule_line(typ, major, minor, access), f"devices[{i}]"))
    for typ, major, minor, access in DEFAULTS:
        out.append(("devices.allow", rule_line(typ, major, minor, access), "devices"))
    for allow, typ, major, minor, access in node_rules(devices):
        out.append(("devices.allow", rule_line(typ, major, minor, access), "devices"))
    return out
