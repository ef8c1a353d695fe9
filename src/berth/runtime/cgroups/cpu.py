"""cpu controller: linux.resources.cpu.shares, quota, period, burst, idle
and the realtime budget (v1 only: cgroup2 has no realtime group
scheduling). cpus and mems belong to the cpuset controller, in cpuset.py."""
from berth.errors import ConfigError
from berth.runtime.cgroups.values import PREFIX, integer, not_on, section

CONTROLLER = "cpu"


def shares_to_weight(shares):
    """v1 shares [2, 262144] onto v2 weight [1, 10000], the same linear map
    runc and crun use, so a value means the same under either runtime."""
    return 1 + ((shares - 2) * 9999) // 262142


def writes(res, v2):
    sec = section(res, "cpu")
    if sec is None:
        return []
    out = []
    shares = integer(sec, "shares", "cpu.shares", minimum=0)
    if shares:
        if shares < 2 or shares > 262144:
            raise ConfigError(f"{PREFIX}.cpu.shares: {shares} is outside 2..262144")
        if v2:
            out.append(("cpu.weight", shares_to_weight(shares), "cpu.shares"))
        else:
            out.append(("cpu.shares", shares, "cpu.shares"))
    quota = integer(sec, "quota", "cpu.quota")
    period = integer(sec, "period", "cpu.period", minimum=0)
    if quota is not None and quota < -1:
        raise ConfigError(f"{PREFIX}.cpu.quota: {quota} is neither a time in µs nor -1 (no limit)")
    if period and not 1000 <= period <= 1000000:
        raise ConfigError(f"{PREFIX}.cpu.period: {period} is outside 1000..1000000 µs")
    burst = integer(sec, "burst", "cpu.burst", minimum=0)
    idle = integer(sec, "idle", "cpu.idle")
    if idle is not None and idle not in (0, 1):
        raise ConfigError(f"{PREFIX}.cpu.idle: {idle} is neither 0 nor 1")
    rt_runtime = integer(sec, "realtimeRuntime", "cpu.realtimeRuntime")
    rt_period = integer(sec, "realtimePeriod", "cpu.realtimePeriod", minimum=0)
    if rt_runtime is not None and rt_runtime < -1:
        raise ConfigError(f"{PREFIX}.cpu.realtimeRuntime: {rt_runtime} is neither a time in µs "
                          "nor -1 (no limit)")
    if rt_runtime and rt_period and rt_runtime > rt_period:
        raise ConfigError(f"{PREFIX}.cpu.realtimeRuntime: {rt_runtime} exceeds "
                          f"cpu.realtimePeriod {rt_period}")
    if v2 and (rt_runtime or rt_period):
        raise not_on(True, "cpu.realtimeRuntime" if rt_runtime else "cpu.realtimePeriod",
                     "cgroup v2 has no realtime group scheduling")
    if v2:
        if quota or period:
            text = str(quota) if quota and quota > 0 else "max"
            if period:
                text += f" {period}"
            out.append(("cpu.max", text, "cpu.quota" if quota else "cpu.period"))
    else:
        # period first; arrange() swaps them where that would break the
        # parent's limit for a moment
        if period:
            out.append(("cpu.cfs_period_us", period, "cpu.period"))
        if quota:
            out.append(("cpu.cfs_quota_us", quota, "cpu.quota"))
        if rt_period:
            out.append(("cpu.rt_period_us", rt_period, "cpu.realtimePeriod"))
        if rt_runtime:
            out.append(("cpu.rt_runtime_us", rt_runtime, "cpu.realtimeRuntime"))
    if burst is not None:
        out.append(("cpu.max.burst" if v2 else "cpu.cfs_burst_us", burst, "cpu.burst"))
    if idle is not None:
        out.append(("cpu.idle", idle, "cpu.idle"))
    return out


def arrange(ws, d, read):
    """v1 checks quota/period against the parent's at each write, so the
    state between the two writes must fit too: (old quota, new period) when
    the period goes first, (new quota, old period) otherwise. The one with
    the smaller share goes first (runc retries in the other order instead)."""
    names = [w[0] for w in ws]
    if "cpu.cfs_period_us" not in names or "cpu.cfs_quota_us" not in names:
        return ws
    ip, iq = names.index("cpu.cfs_period_us"), names.index("cpu.cfs_quota_us")
    new_p, new_q = int(ws[ip][1]), int(ws[iq][1])
    try:
        old_p = int(read(f"{d}/cpu.cfs_period_us") or 100000)
        old_q = int(read(f"{d}/cpu.cfs_quota_us") or -1)
    except ValueError:
        return ws

    def share(q, p):
        return 0 if q < 0 else q / p  # no quota: nothing to exceed
    if share(new_q, old_p) < share(old_q, new_p):
        ws = list(ws)
        ws[ip], ws[iq] = ws[iq], ws[ip]
    return ws
