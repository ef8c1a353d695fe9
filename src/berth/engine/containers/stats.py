"""Resource views of a running container: stats (the runtime's cgroup
figures reshaped into Docker's stats JSON), top, and live update."""
import json
import os
import subprocess
import tempfile
import time

from berth.errors import BerthError, ConfigError, Conflict
from berth.engine.containers.record import now_rfc3339

_UPDATABLE = {"CpuShares": "cpu_shares", "Memory": "memory", "CpuPeriod": "cpu_period",
              "CpuQuota": "cpu_quota", "NanoCpus": "nano_cpus", "CpusetCpus": "cpuset_cpus",
              "CpusetMems": "cpuset_mems", "MemoryReservation": "memory_reservation",
              "MemorySwap": "memory_swap", "PidsLimit": "pids_limit"}
_IGNORED = {"RestartPolicy", "BlkioWeight", "KernelMemory", "KernelMemoryTCP"}


def _running(c):
    if not c.running or not c.state["Pid"]:
        raise Conflict(f"Container {c.id} is not running")


def update(cs, ref, body):
    c = cs.get(ref)
    if not isinstance(body, dict):
        raise ConfigError("request body: expected a JSON object")
    for k, v in body.items():
        if k not in _UPDATABLE and k not in _IGNORED and v not in (None, 0, "", [], {}):
            raise ConfigError(f"{k}: cannot be updated on a container")
    hc = dict(c.host_config)
    for k in _UPDATABLE:
        if body.get(k) not in (None,):
            hc[k] = body[k]
    if body.get("RestartPolicy"):
        hc["RestartPolicy"] = body["RestartPolicy"]
    if cs.e.config.rootless:
        from berth.engine.containers import rootless
        rootless.check(hc)
    from berth.engine.specgen import Host, RunOptions, linux
    kw = {opt: hc.get(k) for k, opt in _UPDATABLE.items() if hc.get(k) not in (None, "")}
    if kw.get("pids_limit") == 0:
        kw.pop("pids_limit")
    res = linux.resources(RunOptions(**kw), Host())
    res.pop("devices", None)
    if not c.running:
        _update_bundle(c, res)
    else:
        with tempfile.NamedTemporaryFile("w", dir=cs.paths.run, suffix=".json") as f:
            json.dump(res, f)
            f.flush()
            p = subprocess.run(cs.runtime_cmd(c, "update", "-r", f.name, c.id),
                               capture_output=True, text=True)
        if p.returncode != 0:
            raise BerthError(f"update {c.id[:12]}: {p.stderr.strip()}")
    with c.cond:
        c.data["HostConfig"] = hc
        c.save()
    cs.e.events.emit("container", "update", c.id, cs._attrs(c))
    return []


def _update_bundle(c, res):
    """A container that is not running gets the new limits at its next
    start, as with Docker: they go into its config.json."""
    from berth.oci import jsonio
    path = os.path.join(c.bundle, "config.json")
    spec = jsonio.load_file(path)
    cur = spec.setdefault("linux", {}).setdefault("resources", {})
    for k, v in res.items():
        if isinstance(v, dict) and isinstance(cur.get(k), dict):
            cur[k].update(v)
        else:
            cur[k] = v
    jsonio.write_atomic(path, spec)


def top(cs, ref, ps_args):
    c = cs.get(ref)
    _running(c)
    p = subprocess.run(cs.runtime_cmd(c, "ps", "-f", "json", c.id), capture_output=True, text=True)
    if p.returncode != 0:
        raise BerthError(f"top {c.id[:12]}: {p.stderr.strip()}")
    pids = {int(x) for x in json.loads(p.stdout or "[]")}
    args = ps_args.split()
    q = subprocess.run(["ps"] + args, capture_output=True, text=True)
    if q.returncode != 0:
        raise BerthError(f"ps {ps_args}: {q.stderr.strip()}")
    lines = q.stdout.splitlines()
    titles = lines[0].split()
    try:
        col = titles.index("PID")
    except ValueError:
        raise ConfigError(f"ps_args: {ps_args!r}: the output has no PID column")
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            procs.append(fields)
    return {"Titles": titles, "Processes": procs}


def _system_cpu():
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * (10**9 // os.sysconf("SC_CLK_TCK"))


def _net(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return None
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def sample(cs, c):
    p = subprocess.run(cs.runtime_cmd(c, "events", "--stats", c.id), capture_output=True, text=True)
    if p.returncode != 0:
        return None
    d = json.loads(p.stdout.splitlines()[0])["data"]
    cpu = d.get("cpu") or {}
    usage = cpu.get("usage") or {}
    thr = cpu.get("throttling") or {}
    mem = d.get("memory") or {}
    mu = mem.get("usage") or {}
    limit = mu.get("limit") or 0
    try:
        host_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        host_mem = 0
    if not limit or limit > host_mem:
        limit = host_mem
    pids = d.get("pids") or {}
    blk = d.get("blkio") or {}
    return {
        "read": now_rfc3339(),
        "pids_stats": {"current": pids.get("current", 0), **({"limit": pids["limit"]}
                                                              if pids.get("limit") else {})},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": e.get("major", 0), "minor": e.get("minor", 0),
             "op": (e.get("op") or "").lower(), "value": e.get("value", 0)}
            for e in blk.get("ioServiceBytesRecursive") or []] or None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": {"cpu_usage": {"total_usage": usage.get("total", 0),
                                    "percpu_usage": usage.get("percpu") or None,
                                    "usage_in_kernelmode": usage.get("kernel", 0),
                                    "usage_in_usermode": usage.get("user", 0)},
                      "system_cpu_usage": _system_cpu(), "online_cpus": os.cpu_count(),
                      "throttling_data": {"periods": thr.get("periods", 0),
                                          "throttled_periods": thr.get("throttledPeriods", 0),
                                          "throttled_time": thr.get("throttledTime", 0)}},
        "memory_stats": {"usage": mu.get("usage", 0), "max_usage": mu.get("max", 0),
                         "failcnt": mu.get("failcnt", 0), "stats": mem.get("stats") or {},
                         "limit": limit},
        "name": c.name, "id": c.id, "networks": _net(c.state["Pid"]),
    }


_EMPTY_CPU = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
              "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def stream(cs, c, one_shot, previous=True):
    """Yields JSON lines: one per second, or a single sample (with a
    previous one half a second earlier, so a CPU share can be computed,
    unless previous is false)."""
    prev = None
    if one_shot and previous and c.running:
        prev = sample(cs, c)
        time.sleep(0.5)
    while True:
        s = sample(cs, c) if c.running else None
        if s is None:
            s = {"read": now_rfc3339(), "name": c.name, "id": c.id, "pids_stats": {},
                 "blkio_stats": {}, "cpu_stats": dict(_EMPTY_CPU), "memory_stats": {},
                 "num_procs": 0, "storage_stats": {}}
        s["preread"] = prev["read"] if prev else "0001-01-01T00:00:00Z"
        s["precpu_stats"] = prev["cpu_stats"] if prev else dict(_EMPTY_CPU)
        yield json.dumps(s).encode() + b"\n"
        if one_shot or not c.running:
            return
        prev = s
        time.sleep(1.0)
