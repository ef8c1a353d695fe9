"""cpu controller: linux.resources.cpu.shares, quota and period. (cpus and
mems belong to the cpuset controller, in cpuset.py.)"""
from berth.errors import ConfigError
from berth.runtime.cgroups.values import PREFIX, integer, section

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
    if v2:
        if quota or period:
            text = str(quota) if quota and quota > 0 else "max"
            if period:
                text += f" {period}"
            out.append(("cpu.max", text, "cpu.quota" if quota else "cpu.period"))
    else:
        # period first: a quota is checked against the period in force
        if period:
            out.append(("cpu.cfs_period_us", period, "cpu.period"))
        if quota:
            out.append(("cpu.cfs_quota_us", quota, "cpu.quota"))
    return out
