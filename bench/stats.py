"""Summary figures of timing samples, the same for every bench."""
import statistics


def summary(samples):
    """samples in seconds -> mean/stddev/min/median/max in ms and the count."""
    ms = [s * 1000 for s in samples]
    return {"mean_ms": statistics.fmean(ms),
            "stddev_ms": statistics.stdev(ms) if len(ms) > 1 else 0.0,
            "min_ms": min(ms), "median_ms": statistics.median(ms),
            "max_ms": max(ms), "runs": len(ms)}


def percentile(samples, q):
    """The q-th percentile (0-100) of samples in seconds, in ms, linear
    interpolation between the closest ranks (numpy's default)."""
    ms = sorted(s * 1000 for s in samples)
    if not ms:
        raise ValueError("no samples")
    k = (len(ms) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ms) - 1)
    return ms[lo] + (ms[hi] - ms[lo]) * (k - lo)


def load_average():
    """The host's 1-minute load average: how busy the shared machine was
    while a bench ran (its figures are only comparable at similar loads)."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])
