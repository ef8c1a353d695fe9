"""A container's resource usage in the shape runc 1.1 prints for `events`
(its types/events.go): the same keys, the same units (nanoseconds, bytes)
and the same omissions (Go's omitempty drops zero numbers and empty lists,
so a field missing here is a zero there). Read from the control files of
whichever hierarchy holds each controller, v1 or cgroup2; only `events`
imports this."""
import os

from berth.runtime.cgroups import fs

UNLIMITED_V1 = 9223372036854771712  # what v1 prints for "no limit"
MAX_U64 = (1 << 64) - 1             # runc's value for cgroup2's "max"


def _int(text, default=0):
    text = (text or "").strip()
    if text == "max":
        return MAX_U64
    try:
        return int(text)
    except ValueError:
        return default


def _kv(text):
    out = {}
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if k:
            out[k] = _int(v)
    return out


def _nz(d):
    """Go's omitempty on numbers and lists."""
    return {k: v for k, v in d.items() if v not in (0, None, [], {})}


def expand_list(text):
    """"0-2,5" -> [0, 1, 2, 5]."""
    out = []
    for item in (text or "").strip().split(","):
        if not item:
            continue
        lo, _, hi = item.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def collect(cg):
    p = cg.paths
    uni = p.get("unified") if cg.pure_v2 else None

    def where(ctrl):
        if ctrl in p:
            return p[ctrl], False
        return uni, uni is not None

    return {"cpu": cpu(p, uni), "cpuset": cpuset(*where("cpuset")),
            "memory": memory(*where("memory")), "pids": pids(*where("pids")),
            "blkio": blkio(p.get("blkio"), uni), "hugetlb": hugetlb(p, uni),
            "intel_rdt": {}, "network_interfaces": None}


def cpu(p, uni):
    usage = {}
    throttling = {}
    if uni is not None:
        st = _kv(fs.read_or(f"{uni}/cpu.stat"))
        usage = {"total": st.get("usage_usec", 0) * 1000,
                 "kernel": st.get("system_usec", 0) * 1000,
                 "user": st.get("user_usec", 0) * 1000}
        throttling = {"periods": st.get("nr_periods", 0),
                      "throttled_periods": st.get("nr_throttled", 0),
                      "throttled_time": st.get("throttled_usec", 0) * 1000}
    else:
        acct = p.get("cpuacct")
        if acct:
            per_user, per_sys = [], []
            for line in fs.read_or(f"{acct}/cpuacct.usage_all").splitlines()[1:]:
                f = line.split()
                if len(f) == 3:
                    per_user.append(int(f[1]))
                    per_sys.append(int(f[2]))
            tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
            st = _kv(fs.read_or(f"{acct}/cpuacct.stat"))
            usage = {"total": _int(fs.read_or(f"{acct}/cpuacct.usage")),
                     "percpu": [int(x) for x in fs.read_or(f"{acct}/cpuacct.usage_percpu").split()],
                     "percpu_kernel": per_sys, "percpu_user": per_user,
                     "kernel": st.get("system", 0) * tick, "user": st.get("user", 0) * tick}
        if p.get("cpu"):
            st = _kv(fs.read_or(f"{p['cpu']}/cpu.stat"))
            throttling = {"periods": st.get("nr_periods", 0),
                          "throttled_periods": st.get("nr_throttled", 0),
                          "throttled_time": st.get("throttled_time", 0)}
    u = _nz(usage)
    u["kernel"] = usage.get("kernel", 0)
    u["user"] = usage.get("user", 0)
    return {"usage": u, "throttling": _nz(throttling)}


def cpuset(d, v2):
    if d is None:
        return {}
    r = lambda n: fs.read_or(f"{d}/cpuset.{n}")  # noqa: E731
    if v2:
        return _nz({"cpus": expand_list(r("cpus.effective")),
                    "mems": expand_list(r("mems.effective"))})
    out = {"cpus": expand_list(r("cpus")), "cpu_exclusive": _int(r("cpu_exclusive")),
           "mems": expand_list(r("mems"))}
    for k in ("mem_hardwall", "mem_exclusive", "memory_migrate", "memory_spread_page",
              "memory_spread_slab", "memory_pressure", "sched_load_balance",
              "sched_relax_domain_level"):
        out[k] = _int(r(k))
    if not out["cpus"]:
        del out["cpus"]
    if not out["mems"]:
        del out["mems"]
    return out


def _entry(limit, usage, peak, failcnt):
    e = {"limit": limit, "usage": usage, "max": peak, "failcnt": failcnt}
    return {k: v for k, v in e.items() if v or k in ("limit", "failcnt")}


def memory(d, v2):
    if d is None:
        return {}
    r = lambda n: fs.read_or(f"{d}/memory.{n}")  # noqa: E731
    raw = dict(sorted(_kv(r("stat")).items()))  # Go prints map keys sorted
    if v2:
        events = _kv(r("events"))
        out = {"cache": raw.get("file", 0),
               "usage": _entry(_int(r("max")), _int(r("current")), _int(r("peak")),
                               events.get("max", 0)),
               "swap": _entry(_int(r("swap.max")), _int(r("swap.current")),
                              _int(r("swap.peak")), 0),
               "kernel": {"limit": 0, "failcnt": 0}, "kernelTCP": {"limit": 0, "failcnt": 0},
               "raw": raw}
    else:
        def entry(prefix):
            return _entry(_int(r(f"{prefix}limit_in_bytes")), _int(r(f"{prefix}usage_in_bytes")),
                          _int(r(f"{prefix}max_usage_in_bytes")), _int(r(f"{prefix}failcnt")))
        out = {"cache": raw.get("cache", 0), "usage": entry(""), "swap": entry("memsw."),
               "kernel": entry("kmem."), "kernelTCP": entry("kmem.tcp."), "raw": raw}
    if not out["cache"]:
        del out["cache"]
    if not out["raw"]:
        del out["raw"]
    return out


def pids(d, _v2):
    if d is None:
        return {}
    return _nz({"current": _int(fs.read_or(f"{d}/pids.current")),
                "limit": 0 if fs.read_or(f"{d}/pids.max") == "max"
                else _int(fs.read_or(f"{d}/pids.max"))})


def _blk_entries(text):
    out = []
    for line in (text or "").splitlines():
        f = line.split()
        if len(f) != 3 or ":" not in f[0]:
            continue  # "Total N" lines, as runc skips them
        major, _, minor = f[0].partition(":")
        out.append(_nz({"major": int(major), "minor": int(minor), "op": f[1],
                        "value": _int(f[2])}))
    return out


def blkio(d, uni):
    if uni is not None:
        sb, sv = [], []
        for line in fs.read_or(f"{uni}/io.stat").splitlines():
            f = line.split()
            if not f or ":" not in f[0]:
                continue
            major, _, minor = f[0].partition(":")
            kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
            dev = {"major": int(major), "minor": int(minor)}
            for key, op, lst in (("rbytes", "Read", sb), ("wbytes", "Write", sb),
                                 ("rios", "Read", sv), ("wios", "Write", sv)):
                lst.append(_nz(dict(dev, op=op, value=_int(kv.get(key)))))
        return _nz({"ioServiceBytesRecursive": sb, "ioServicedRecursive": sv})
    if d is None:
        return {}
    # CFQ's files where the kernel has them, else BFQ's, else the throttle
    # layer's, which counts every device (runc's order)
    for prefix in ("blkio.", "blkio.bfq.", "blkio.throttle."):
        if os.path.exists(f"{d}/{prefix}io_service_bytes_recursive"):
            break
    else:
        return {}
    out = {"ioServiceBytesRecursive": _blk_entries(
        fs.read_or(f"{d}/{prefix}io_service_bytes_recursive")),
        "ioServicedRecursive": _blk_entries(fs.read_or(f"{d}/{prefix}io_serviced_recursive"))}
    if prefix == "blkio.":
        for key, name in (("ioQueueRecursive", "io_queued_recursive"),
                          ("ioServiceTimeRecursive", "io_service_time_recursive"),
                          ("ioWaitTimeRecursive", "io_wait_time_recursive"),
                          ("ioMergedRecursive", "io_merged_recursive"),
                          ("ioTimeRecursive", "time_recursive"),
                          ("sectorsRecursive", "sectors_recursive")):
            out[key] = _blk_entries(fs.read_or(f"{d}/blkio.{name}"))
    return _nz(out)


def _page_sizes():
    out = []
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return out
    for n in sorted(names, key=lambda s: int(s.split("-")[1].rstrip("kB") or 0)):
        kb = int(n.split("-")[1].rstrip("kB"))
        for unit, size in (("GB", 1 << 20), ("MB", 1 << 10), ("KB", 1)):
            if kb % size == 0:
                out.append(f"{kb // size}{unit}")
                break
    return out


def hugetlb(p, uni):
    d = p.get("hugetlb")
    v2 = False
    if d is None:
        u = uni or p.get("unified")
        if u is None:
            return {}
        d, v2 = u, True
    out = {}
    for size in _page_sizes():
        base = f"{d}/hugetlb.{size}"
        if v2:
            if not os.path.exists(f"{base}.current"):
                continue
            out[size] = _nz({"usage": _int(fs.read_or(f"{base}.current")),
                             "max": _int(fs.read_or(f"{base}.max"))})
            out[size]["failcnt"] = _kv(fs.read_or(f"{base}.events")).get("max", 0)
        else:
            out[size] = _nz({"usage": _int(fs.read_or(f"{base}.usage_in_bytes")),
                             "max": _int(fs.read_or(f"{base}.max_usage_in_bytes"))})
            out[size]["failcnt"] = _int(fs.read_or(f"{base}.failcnt"))
    return out
