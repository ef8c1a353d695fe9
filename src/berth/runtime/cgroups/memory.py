"""memory controller: linux.resources.memory.

OCI's swap is memory plus swap (v1's memsw); cgroup2 counts swap alone, so
there memory.swap.max gets swap - limit, as runc and crun write it.
kernel (kmem) limits are deprecated by the kernel and ignored, as runc 1.1
ignores them; kernelTCP still has a file on v1."""
from berth.errors import ConfigError
from berth.runtime.cgroups.values import PREFIX, integer, not_on, section

CONTROLLER = "memory"
_F = f"{PREFIX}.memory"


def _size(sec, key):
    v = integer(sec, key, f"memory.{key}")
    if v is not None and v < -1:
        raise ConfigError(f"{_F}.{key}: {v} is neither a size in bytes nor -1 (no limit)")
    return v or None  # 0 means "not set", as in runc


def writes(res, v2):
    sec = section(res, "memory")
    if sec is None:
        return []
    out = []
    limit = _size(sec, "limit")
    swap = _size(sec, "swap")
    reservation = _size(sec, "reservation")
    tcp = _size(sec, "kernelTCP")
    swappiness = integer(sec, "swappiness", "memory.swappiness")
    if swappiness is not None and not 0 <= swappiness <= 100:
        # runc's Go type is uint64, so a -1 from a C client arrives as 2^64-1
        if swappiness != (1 << 64) - 1:
            raise ConfigError(f"{_F}.swappiness: {swappiness} is outside 0..100")
        swappiness = None
    oom_off = sec.get("disableOOMKiller")
    if oom_off is not None and not isinstance(oom_off, bool):
        raise ConfigError(f"{_F}.disableOOMKiller: must be true or false, not {oom_off!r}")
    hier = sec.get("useHierarchy")
    if hier is not None and not isinstance(hier, bool):
        raise ConfigError(f"{_F}.useHierarchy: must be true or false, not {hier!r}")
    if swap and swap > 0 and limit and limit > 0 and swap < limit:
        raise ConfigError(f"{_F}.swap: {swap} is below memory.limit {limit}",
                          hint="swap counts memory plus swap, so it must be at least the limit")
    if v2:
        if limit:
            out.append(("memory.max", "max" if limit == -1 else limit, "memory.limit"))
        if swap:
            if swap == -1:
                out.append(("memory.swap.max", "max", "memory.swap"))
            elif not limit or limit == -1:
                raise ConfigError(f"{_F}.swap: a swap limit on cgroup v2 needs a memory.limit",
                                  hint="swap is memory plus swap; cgroup v2 needs the difference")
            else:
                out.append(("memory.swap.max", swap - limit, "memory.swap"))
        if reservation:
            out.append(("memory.low", "max" if reservation == -1 else reservation,
                        "memory.reservation"))
        if swappiness is not None:
            raise not_on(True, "memory.swappiness", "cgroup v2 has one system-wide swappiness")
        if oom_off:
            raise not_on(True, "memory.disableOOMKiller",
                         "cgroup v2 cannot turn the OOM killer off; see memory.oom.group")
        if tcp:
            raise not_on(True, "memory.kernelTCP", "cgroup v2 counts socket memory in memory.max")
        return out
    if limit:
        out.append(("memory.limit_in_bytes", limit, "memory.limit"))
    if swap:
        out.append(("memory.memsw.limit_in_bytes", swap, "memory.swap"))
    if reservation:
        out.append(("memory.soft_limit_in_bytes", reservation, "memory.reservation"))
    if tcp:
        out.append(("memory.kmem.tcp.limit_in_bytes", tcp, "memory.kernelTCP"))
    if swappiness is not None:
        out.append(("memory.swappiness", swappiness, "memory.swappiness"))
    if oom_off is not None:
        out.append(("memory.oom_control", 1 if oom_off else 0, "memory.disableOOMKiller"))
    if hier is not None:
        out.append(("memory.use_hierarchy", 1 if hier else 0, "memory.useHierarchy"))
    return out


def arrange(ws, d, read):
    """v1 keeps memsw >= memory at every moment: when the limit goes up,
    memsw has to go up first; when it goes down, memory first."""
    names = [w[0] for w in ws]
    if "memory.limit_in_bytes" not in names:
        return ws
    new = int(ws[names.index("memory.limit_in_bytes")][1])
    if "memory.memsw.limit_in_bytes" not in names:
        # no limit on memory means none on memory+swap either (runc's rule);
        # else the old memsw limit would refuse the -1
        if new == -1 and read(f"{d}/memory.memsw.limit_in_bytes", None) is not None:
            return [("memory.memsw.limit_in_bytes", -1, "memory.limit")] + list(ws)
        return ws
    try:
        cur = int(read(f"{d}/memory.limit_in_bytes") or 0)
    except ValueError:
        cur = 0
    if new == -1 or new > cur:
        i = names.index("memory.memsw.limit_in_bytes")
        ws = [ws[i]] + ws[:i] + ws[i + 1:]
    return ws
