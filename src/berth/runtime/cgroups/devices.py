"""devices controller: linux.resources.devices plus the devices every
container gets.

The rule list always starts with "deny all", so a config without device
rules gets the default set rather than every host device (runc would leave
such a container with access to everything). The defaults come after the
config's rules, as in runc, so a config cannot take /dev/null away; a
default whose path linux.devices lists again is left out, as runc does (the
spec's node takes its place, with whatever rule the config gives it).

The nodes of linux.devices get no rule of their own: a device the config
does not allow stays denied even though its node exists (runc's rule, and
what an explicit deny in linux.resources.devices must mean).

cgroup2 has no device files: there the same list becomes a
BPF_CGROUP_DEVICE program (ebpf.py), built from all_rules()."""
from berth.errors import ConfigError
from berth.oci.fields import objects
from berth.runtime.cgroups.values import PREFIX

CONTROLLER = "devices"

# (node path or None, type, major, minor, access); None is the "*" wildcard
DEFAULTS = (
    # mknod of any node; using one still needs its own rule (runc and Docker
    # allow this too, and without CAP_MKNOD it is moot)
    (None, "c", None, None, "m"),
    (None, "b", None, None, "m"),
    ("/dev/null", "c", 1, 3, "rwm"),
    ("/dev/zero", "c", 1, 5, "rwm"),
    ("/dev/full", "c", 1, 7, "rwm"),
    ("/dev/random", "c", 1, 8, "rwm"),
    ("/dev/urandom", "c", 1, 9, "rwm"),
    ("/dev/tty", "c", 5, 0, "rwm"),
    (None, "c", 5, 1, "rwm"),     # /dev/console
    (None, "c", 5, 2, "rwm"),     # /dev/ptmx
    (None, "c", 136, None, "rwm"),  # /dev/pts/*
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


def default_rules(devices=None):
    """DEFAULTS as (type, major, minor, access), less those whose node
    linux.devices makes itself."""
    listed = {d.get("path") for d in devices or () if isinstance(d, dict)}
    return [r[1:] for r in DEFAULTS if r[0] is None or r[0] not in listed]


def all_rules(res, devices=None):
    """The effective list, [(allow, type, major, minor, access)], first
    rule deny-all; what v1 gets line by line and v2 as one program."""
    out = [(False, "a", None, None, "rwm")]
    out += parse_rules(res.get("devices"))
    out += [(True,) + d for d in default_rules(devices)]
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
    for typ, major, minor, access in default_rules(devices):
        out.append(("devices.allow", rule_line(typ, major, minor, access), "devices"))
    return out
