"""`update`: change a running container's resources, from runc's flags or
from -r FILE (an OCI linux.resources object; "-" is stdin).

All or nothing from the user's view: every value is checked before the
first write (Cgroup.apply plans first), and a write the kernel refuses
undoes the ones before it; the error names the field, file and value.
Only then is the new config saved, so `state` never shows limits the
kernel does not have."""
from berth.errors import BerthError, ConfigError, Conflict
from berth.oci import jsonio
from berth.runtime.container import Container

# flag -> (section, key); sizes take k/m/g suffixes as runc's do
_SIZE = {"memory": ("memory", "limit"), "memory-swap": ("memory", "swap"),
         "memory-reservation": ("memory", "reservation"),
         "kernel-memory-tcp": ("memory", "kernelTCP")}
# runc's flag is --cpu-share; --cpu-shares is Docker's spelling
_INT = {"cpu-share": ("cpu", "shares"), "cpu-shares": ("cpu", "shares"),
        "cpu-period": ("cpu", "period"),
        "cpu-quota": ("cpu", "quota"), "cpu-rt-period": ("cpu", "realtimePeriod"),
        "cpu-rt-runtime": ("cpu", "realtimeRuntime"), "pids-limit": ("pids", "limit"),
        "blkio-weight": ("blockIO", "weight")}
_STR = {"cpuset-cpus": ("cpu", "cpus"), "cpuset-mems": ("cpu", "mems")}
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def size(flag, text):
    """"512m", "1.5g", "1024", "-1" (no limit) -> bytes; binary units as
    runc's parser (docker/go-units RAMInBytes)."""
    t = text.strip()
    if t == "-1":
        return -1
    low = t.lower()
    for tail in ("ib", "b"):
        if low.endswith(tail) and len(low) > len(tail):
            low = low[:-len(tail)]
            break
    unit = low[-1:] if low[-1:] in "kmgtp" and low[-1:] else ""
    num = low[:len(low) - len(unit)].strip()
    try:
        value = float(num)
        if not num or value < 0 or num.startswith(("+", "-")):
            raise ValueError
    except ValueError:
        raise ConfigError(f"--{flag}: {text!r} is not a size",
                          hint='like "512m", "2g" or a number of bytes') from None
    return int(value * _UNITS[unit])


def resources_from(opts, warn=None):
    if opts.get("resources"):
        src = opts["resources"]
        res = jsonio.load_file("/dev/stdin" if src == "-" else src, src)
        if not isinstance(res, dict):
            raise ConfigError(f"{src}: must hold a linux.resources object")
        return res
    for flag in ("l3-cache-schema", "mem-bw-schema"):
        if opts.get(flag):
            raise ConfigError(f"--{flag}: intel RDT is not supported by berth-runtime")
    if opts.get("kernel-memory") and warn:
        warn("--kernel-memory is deprecated by the kernel and ignored")
    res = {}
    for flag, (group, key) in _SIZE.items():
        if flag in opts:
            res.setdefault(group, {})[key] = size(flag, opts[flag])
    for flag, (group, key) in _INT.items():
        if flag in opts:
            try:
                res.setdefault(group, {})[key] = int(opts[flag])
            except ValueError:
                raise ConfigError(f"--{flag}: {opts[flag]!r} is not a number") from None
    for flag, (group, key) in _STR.items():
        if flag in opts:
            res.setdefault(group, {})[key] = opts[flag]
    return res


def merge(current, res):
    """The container's recorded resources with res laid over them: objects
    key by key, lists and scalars replaced."""
    for group, vals in res.items():
        if isinstance(vals, dict) and isinstance(current.get(group), dict):
            current[group].update(vals)
        else:
            current[group] = vals
    return current


def main(ctx, opts, args):
    c = Container.load(ctx.root, args[0])
    st = c.status()
    if st in ("stopped", "creating"):
        raise Conflict(f"container {args[0]} is {st}, not running",
                       hint="update works on created, running and paused containers")
    res = resources_from(opts, warn=ctx.warn)
    cg = c.cgroup()
    if cg is None:
        raise BerthError(f"container {args[0]} has no cgroup on record")
    linux = c.config.setdefault("linux", {})
    # update=True keeps the device rules create wrote unless res carries
    # devices; then the defaults are written after them again
    cg.apply(res, devices=linux.get("devices"), update=True)
    merge(linux.setdefault("resources", {}), res)
    c.save()
    return 0
