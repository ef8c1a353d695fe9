"""`update`: change a running container's resources (-r file or flags)."""
from berth.errors import BerthError, Conflict
from berth.oci import jsonio
from berth.runtime.container import Container

_INT = {"memory": ("memory", "limit"), "memory-swap": ("memory", "swap"),
        "memory-reservation": ("memory", "reservation"), "cpu-shares": ("cpu", "shares"),
        "cpu-period": ("cpu", "period"), "cpu-quota": ("cpu", "quota"),
        "cpu-rt-period": ("cpu", "realtimePeriod"), "cpu-rt-runtime": ("cpu", "realtimeRuntime"),
        "pids-limit": ("pids", "limit"), "blkio-weight": ("blockIO", "weight")}
_STR = {"cpuset-cpus": ("cpu", "cpus"), "cpuset-mems": ("cpu", "mems")}


def resources_from(opts):
    if opts.get("resources"):
        src = opts["resources"]
        return jsonio.load_file("/dev/stdin" if src == "-" else src, src)
    res = {}
    for flag, (group, key) in _INT.items():
        if flag in opts:
            try:
                res.setdefault(group, {})[key] = int(opts[flag])
            except ValueError:
                raise BerthError(f"--{flag}: {opts[flag]!r} is not a number") from None
    for flag, (group, key) in _STR.items():
        if flag in opts:
            res.setdefault(group, {})[key] = opts[flag]
    return res


def main(ctx, opts, args):
    c = Container.load(ctx.root, args[0])
    if c.status() in ("stopped", "creating"):
        raise Conflict(f"container {args[0]} is not running")
    res = resources_from(opts)
    # update=True keeps the device rules create wrote (linux.devices grants)
    c.cgroup().apply(res, update=True)
    merged = c.config.setdefault("linux", {}).setdefault("resources", {})
    for group, vals in res.items():
        if isinstance(vals, dict):
            merged.setdefault(group, {}).update(vals)
        else:
            merged[group] = vals
    c.save()
    return 0
