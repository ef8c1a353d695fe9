"""`events`: a running container's resource stats and OOM kills as JSON
lines, in runc's shape: {"type":"stats","id":ID,"data":{...}} every
--interval (default 5s), {"type":"oom","id":ID} as OOM kills happen, until
the container stops. --stats prints one stats line and exits."""
import os

from berth.errors import BerthError, Conflict
from berth.oci import jsonio
from berth.runtime.container import Container

_UNITS = (("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0),
          ("m", 60.0), ("h", 3600.0))


def duration(text):
    """Go's time.ParseDuration subset runc accepts: "5s", "250ms", "1m30s"."""
    s = text.strip()
    if s in ("0",):
        raise BerthError(f"--interval: {text!r} must be above zero")
    total = 0.0
    i = 0
    if not s:
        raise BerthError("--interval: empty duration", hint='like "5s" or "500ms"')
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        k = j
        while k < len(s) and not (s[k].isdigit() or s[k] == "."):
            k += 1
        num, unit = s[i:j], s[j:k]
        scale = dict(_UNITS).get(unit)
        try:
            value = float(num)
        except ValueError:
            value = None
        if value is None or scale is None:
            raise BerthError(f"--interval: {text!r} is not a duration", hint='like "5s" or "500ms"')
        total += value * scale
        i = k
    if total <= 0:
        raise BerthError(f"--interval: {text!r} must be above zero")
    return total


def _emit(obj):
    os.write(1, (jsonio.dumps(obj) + "\n").encode())


def _load(ctx, cid):
    c = Container.load(ctx.root, cid)
    if c.status() in ("stopped", "creating"):
        raise Conflict(f"container with id {cid} is not running")
    cg = c.cgroup()
    if cg is None:
        raise BerthError(f"container {cid} has no cgroup on record")
    return c, cg


def main(ctx, opts, args):
    cid = args[0]
    interval = duration(opts.get("interval") or "5s")
    c, cg = _load(ctx, cid)
    if opts.get("stats"):
        _emit({"type": "stats", "id": cid, "data": cg.stats()})
        return 0
    import select
    import time
    from berth.runtime.cgroups.oom import OomWatch
    watch = OomWatch(cg)
    poller = select.poll()
    if watch.fileno() is not None:
        poller.register(watch.fileno(), watch.poll_mask())
    next_stats = time.monotonic() + interval
    try:
        while True:
            now = time.monotonic()
            # wake at least once a second to notice the container stopping
            wait = max(0.0, min(next_stats - now, 1.0))
            ready = poller.poll(wait * 1000)
            if ready:
                n = watch.read()
                if n is None:
                    return 0  # the cgroup is gone: so is the container
                for _ in range(n):
                    _emit({"type": "oom", "id": cid})
            if not c.alive():
                return 0
            if time.monotonic() >= next_stats:
                next_stats += interval
                try:
                    _emit({"type": "stats", "id": cid, "data": cg.stats()})
                except BerthError as e:
                    ctx.warn(f"stats of {cid}: {e}")
    finally:
        watch.close()
