"""blkio (v1) / io (v2) controller: linux.resources.blockIO.

Weights go to whichever file the kernel offers: CFQ's blkio.weight on old
kernels, BFQ's blkio.bfq.weight (v1) or io.bfq.weight (v2) when BFQ is built
in, else v2's io.weight. A file named as a tuple is such a choice; the
manager writes the first one that exists. Weights only act on devices that
use BFQ (or CFQ); throttles act everywhere."""
from berth.errors import ConfigError
from berth.runtime.cgroups.values import PREFIX, device_list, not_on, section

CONTROLLER = "blkio"
V2_CONTROLLER = "io"

_THROTTLES = (
    ("throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps"),
    ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps"),
    ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops"),
    ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops"),
)


def weight_to_io(w):
    """blkio weight [10, 1000] onto io.weight [1, 10000], runc's map."""
    return 1 + ((w - 10) * 9999) // 990


def _weight(v, field):
    if v is None or v == 0:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 10 <= v <= 1000:
        raise ConfigError(f"{PREFIX}.{field}: {v!r} is outside 10..1000")
    return v


def writes(res, v2):
    sec = section(res, "blockIO")
    if sec is None:
        return []
    out = []
    weight = _weight(sec.get("weight"), "blockIO.weight")
    leaf = _weight(sec.get("leafWeight"), "blockIO.leafWeight")
    per_dev = []
    for major, minor, w, e in device_list(sec, "weightDevice", "blockIO.weightDevice", "weight"):
        i = len(per_dev)
        per_dev.append((major, minor, _weight(w, f"blockIO.weightDevice[{i}].weight"),
                        _weight(e.get("leafWeight"), f"blockIO.weightDevice[{i}].leafWeight")))
    throttles = []
    for key, v1file, v2key in _THROTTLES:
        for i, (major, minor, rate, _) in enumerate(device_list(sec, key, f"blockIO.{key}", "rate")):
            if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
                raise ConfigError(f"{PREFIX}.blockIO.{key}[{i}].rate: {rate!r} is not a "
                                  "non-negative integer")
            throttles.append((key, i, v1file, v2key, major, minor, rate))
    if v2:
        if leaf or any(d[3] for d in per_dev):
            raise not_on(True, "blockIO.leafWeight", "cgroup v2 has no leaf weights")
        if weight:
            out.append((("io.bfq.weight", "io.weight"),
                        (weight, f"default {weight_to_io(weight)}"), "blockIO.weight"))
        for i, (major, minor, w, _) in enumerate(per_dev):
            if w:
                out.append((("io.bfq.weight", "io.weight"),
                            (f"{major}:{minor} {w}", f"{major}:{minor} {weight_to_io(w)}"),
                            f"blockIO.weightDevice[{i}]"))
        for key, i, _, v2key, major, minor, rate in throttles:
            # 0 lifts a v1 throttle; "max" does on v2
            out.append(("io.max", f"{major}:{minor} {v2key}={rate or 'max'}",
                        f"blockIO.{key}[{i}]"))
        return out
    if weight:
        out.append((("blkio.weight", "blkio.bfq.weight"), weight, "blockIO.weight"))
    if leaf:
        out.append(("blkio.leaf_weight", leaf, "blockIO.leafWeight"))
    for i, (major, minor, w, lw) in enumerate(per_dev):
        if w:
            out.append((("blkio.weight_device", "blkio.bfq.weight_device"),
                        f"{major}:{minor} {w}", f"blockIO.weightDevice[{i}]"))
        if lw:
            out.append(("blkio.leaf_weight_device", f"{major}:{minor} {lw}",
                        f"blockIO.weightDevice[{i}].leafWeight"))
    for key, i, v1file, _, major, minor, rate in throttles:
        out.append((v1file, f"{major}:{minor} {rate}", f"blockIO.{key}[{i}]"))
    return out
