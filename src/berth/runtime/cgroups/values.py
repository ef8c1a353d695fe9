"""Checks shared by the controller modules. Each raises ConfigError naming
the field as linux.resources.<section>.<key>."""
from berth.errors import ConfigError
from berth.oci.fields import objects

PREFIX = "linux.resources"


def section(res, name):
    """resources[name] as a dict, or None if absent."""
    sec = res.get(name)
    if sec is None:
        return None
    if not isinstance(sec, dict):
        raise ConfigError(f"{PREFIX}.{name}: must be an object, not {type(sec).__name__}")
    return sec


def integer(sec, key, field, minimum=None):
    """sec[key] as an int, or None if absent; JSON true/false are refused."""
    v = sec.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{PREFIX}.{field}: {v!r} is not an integer")
    if minimum is not None and v < minimum:
        raise ConfigError(f"{PREFIX}.{field}: {v} is below the minimum {minimum}")
    return v


def cpu_list(sec, key, field):
    """A list like "0-3,5" (cpuset.cpus/mems syntax), or None if absent or
    empty. Checked here so a typo fails as a config error rather than as an
    EINVAL from the kernel."""
    v = sec.get(key)
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise ConfigError(f"{PREFIX}.{field}: {v!r} is not a string")
    for item in v.strip().split(","):
        lo, dash, hi = item.strip().partition("-")
        ok = lo.isdigit() and (not dash or hi.isdigit())
        if not ok or (dash and int(hi) < int(lo)):
            raise ConfigError(f"{PREFIX}.{field}: {v!r} is not a list like \"0-3,5\"")
    return v.strip()


def device_list(sec, key, field, value_key):
    """[(major, minor, value)] from a list of {major, minor, <value_key>}
    objects (blockIO's per-device entries)."""
    out = []
    for f, e in objects(sec.get(key), field, f"{PREFIX}."):
        major = integer(e, "major", f"{f}.major", minimum=0)
        minor = integer(e, "minor", f"{f}.minor", minimum=0)
        if major is None or minor is None:
            raise ConfigError(f"{PREFIX}.{f}: needs both major and minor")
        out.append((major, minor, e.get(value_key), e))
    return out


def not_on(v2, field, where_hint=None):
    """The error for a field one cgroup version has no file for."""
    ver = "v2" if v2 else "v1"
    return ConfigError(f"{PREFIX}.{field}: not supported on cgroup {ver}", hint=where_hint)
