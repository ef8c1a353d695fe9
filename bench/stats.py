"""Summary figures of timing samples, the same for every bench."""
import statistics


def summary(samples):
    """samples in seconds -> mean/stddev/min/median/max in ms and the count."""
    ms = [s * 1000 for s in samples]
    return {"mean_ms": statistics.fmean(ms),
            "stddev_ms": statistics.stdev(ms) if len(ms) > 1 else 0.0,
            "min_ms": min(ms), "median_ms": statistics.median(ms),
            "max_ms": max(ms), "runs": len(ms)}
