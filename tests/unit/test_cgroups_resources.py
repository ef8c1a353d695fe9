"""The full linux.resources set on fake cgroup trees: every controller's
files on v1 and v2, hybrid fallback to cgroup2, update's undo, the device
program's decisions (run through a small BPF interpreter), stats in runc's
shape, and the update/events flag parsers."""
import os
import struct

import pytest

from berth.errors import BerthError, ConfigError
from berth.runtime.cgroups import ebpf, fs, open_cgroup, stats
from berth.runtime.cgroups.blkio import weight_to_io
from berth.runtime.verbs.events import duration
from berth.runtime.verbs.update import resources_from, size

from test_cgroups import HYBRID, V2_ONLY, fake_host, touch_controls


@pytest.fixture
def writes(monkeypatch):
    log = []
    real = fs.write

    def rec(path, value, field=None):
        log.append((os.path.basename(path), str(value)))
        real(path, value, field)
    monkeypatch.setattr(fs, "write", rec)
    return log


def made(tmp_path, layout, files, controllers=""):
    root = fake_host(tmp_path, layout)
    if controllers:
        for m in layout["mounts"]:
            if m[1] == "cgroup2":
                (root / m[0].lstrip("/") / "cgroup.controllers").write_text(controllers)
                (root / m[0].lstrip("/") / "cgroup.subtree_control").write_text("")
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    touch_controls(cg, files)
    return cg


V1 = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
      "memory.swappiness", "memory.oom_control", "memory.kmem.tcp.limit_in_bytes",
      "cpu.rt_period_us", "cpu.rt_runtime_us", "cpu.cfs_burst_us", "cpu.idle",
      "blkio.bfq.weight", "blkio.bfq.weight_device", "blkio.throttle.read_bps_device",
      "blkio.throttle.write_iops_device", "pids.max"]
V2 = ["memory.max", "memory.swap.max", "memory.low", "io.weight", "io.max", "cpu.max.burst",
      "hugetlb.2MB.max", "memory.high", "pids.max"]


def test_v1_memory_full(tmp_path, writes):
    cg = made(tmp_path, HYBRID, V1)
    with open(cg.paths["memory"] + "/memory.limit_in_bytes", "w") as f:
        f.write("1000000000")
    del writes[:]
    cg.apply({"memory": {"limit": 1 << 20, "swap": 2 << 20, "reservation": 1 << 19,
                         "swappiness": 10, "disableOOMKiller": True, "kernel": 5 << 20}},
             update=True)
    # lowering: memory before memsw; kernel (kmem) is ignored as runc 1.1 does
    assert writes == [("memory.limit_in_bytes", str(1 << 20)),
                      ("memory.memsw.limit_in_bytes", str(2 << 20)),
                      ("memory.soft_limit_in_bytes", str(1 << 19)),
                      ("memory.swappiness", "10"), ("memory.oom_control", "1")]


def test_v1_raising_memory_writes_memsw_first(tmp_path, writes):
    cg = made(tmp_path, HYBRID, V1)
    with open(cg.paths["memory"] + "/memory.limit_in_bytes", "w") as f:
        f.write(str(1 << 20))
    del writes[:]
    cg.apply({"memory": {"limit": 8 << 20, "swap": 16 << 20}}, update=True)
    assert [w[0] for w in writes] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_v2_memory_swap_is_the_difference(tmp_path, writes, monkeypatch):
    monkeypatch.setattr(ebpf, "install", lambda d, r: None)
    cg = made(tmp_path, V2_ONLY, V2)
    del writes[:]
    cg.apply({"memory": {"limit": 100, "swap": 300, "reservation": 50}}, update=True)
    assert writes == [("memory.max", "100"), ("memory.swap.max", "200"), ("memory.low", "50")]


@pytest.mark.parametrize("res,field", [
    ({"memory": {"limit": 10, "swap": 5}}, "memory.swap"),
    ({"memory": {"swappiness": 101}}, "memory.swappiness"),
    ({"memory": {"disableOOMKiller": "yes"}}, "memory.disableOOMKiller"),
    ({"cpu": {"realtimeRuntime": 2000, "realtimePeriod": 1000}}, "cpu.realtimeRuntime"),
    ({"cpu": {"idle": 2}}, "cpu.idle"),
    ({"blockIO": {"weight": 5}}, "blockIO.weight"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}},
     "blockIO.throttleReadBpsDevice[0]"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": -1}]}},
     "blockIO.throttleReadBpsDevice[0].rate"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, "hugepageLimits[0].pageSize"),
    ({"unified": {"cgroup.procs": "1"}}, "unified['cgroup.procs']"),
    ({"unified": {"../x": "1"}}, "unified['../x']"),
    ({"unified": {"memory.high": 5}}, "unified['memory.high']"),
])
def test_bad_values_are_named_and_nothing_is_written(tmp_path, writes, res, field):
    cg = made(tmp_path, HYBRID, V1, controllers="hugetlb")
    del writes[:]
    with pytest.raises(ConfigError) as e:
        cg.apply(dict(res, pids={"limit": 9}), update=True)
    assert str(e.value).startswith(f"linux.resources.{field}:"), str(e.value)
    assert writes == []


def test_v1_cpu_realtime_burst_idle_and_parents_get_the_rt_budget(tmp_path, writes):
    cg = made(tmp_path, HYBRID, V1)
    parent = os.path.dirname(cg.paths["cpu"])
    open(f"{parent}/cpu.rt_runtime_us", "w").write("0")
    del writes[:]
    cg.apply({"cpu": {"realtimePeriod": 100000, "realtimeRuntime": 5000, "burst": 1000,
                      "idle": 1}}, update=True)
    assert writes == [("cpu.rt_runtime_us", "5000"),  # the parent, first
                      ("cpu.rt_period_us", "100000"), ("cpu.rt_runtime_us", "5000"),
                      ("cpu.cfs_burst_us", "1000"), ("cpu.idle", "1")]


def test_v2_refuses_realtime_and_v1_only_fields(tmp_path, monkeypatch):
    monkeypatch.setattr(ebpf, "install", lambda d, r: None)
    cg = made(tmp_path, V2_ONLY, V2)
    for res, field in (({"cpu": {"realtimeRuntime": 10}}, "cpu.realtimeRuntime"),
                       ({"memory": {"swappiness": 3}}, "memory.swappiness"),
                       ({"network": {"classID": 3}}, "network")):
        with pytest.raises(ConfigError, match=f"linux.resources.{field}: not supported on "
                                              "cgroup v2"):
            cg.apply(res, update=True)


def test_v1_blkio_uses_the_bfq_files_the_kernel_has(tmp_path, writes):
    cg = made(tmp_path, HYBRID_BLKIO, V1)
    del writes[:]
    cg.apply({"blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 50}],
                          "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                          "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 10}]}},
             update=True)
    assert writes == [("blkio.bfq.weight", "300"), ("blkio.bfq.weight_device", "8:0 50"),
                      ("blkio.throttle.read_bps_device", "8:0 1048576"),
                      ("blkio.throttle.write_iops_device", "8:16 10")]


HYBRID_BLKIO = {"mounts": HYBRID["mounts"] + [("/sys/fs/cgroup/blkio", "cgroup", "rw,blkio")],
                "cgroup": HYBRID["cgroup"] + ["7:blkio:/"]}


def test_v2_io_weight_and_max(tmp_path, writes, monkeypatch):
    monkeypatch.setattr(ebpf, "install", lambda d, r: None)
    cg = made(tmp_path, V2_ONLY, V2)
    del writes[:]
    cg.apply({"blockIO": {"weight": 500, "throttleWriteBpsDevice": [
        {"major": 8, "minor": 0, "rate": 0}]}}, update=True)
    assert writes == [("io.weight", f"default {weight_to_io(500)}"), ("io.max", "8:0 wbps=max")]


def test_hybrid_hugetlb_goes_to_cgroup2_and_is_enabled_down_the_path(tmp_path, writes):
    cg = made(tmp_path, HYBRID, V1, controllers="hugetlb misc")
    uni = cg.paths["unified"]
    open(f"{uni}/hugetlb.2MB.max", "a").close()
    open(f"{os.path.dirname(uni)}/cgroup.subtree_control", "a").close()
    del writes[:]
    cg.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}, update=True)
    assert writes == [("cgroup.subtree_control", "+hugetlb"),
                      ("cgroup.subtree_control", "+hugetlb"),
                      ("hugetlb.2MB.max", str(4 << 20))]


def test_hybrid_unified_map_refuses_a_v1_bound_controller(tmp_path):
    cg = made(tmp_path, HYBRID, V1, controllers="hugetlb")
    with pytest.raises(ConfigError, match=r"unified\['memory.high'\]: the memory controller is "
                                          "bound to a v1 hierarchy"):
        cg.apply({"unified": {"memory.high": "100"}}, update=True)


def test_v2_unified_map_written_after_typed_fields(tmp_path, writes, monkeypatch):
    monkeypatch.setattr(ebpf, "install", lambda d, r: None)
    cg = made(tmp_path, V2_ONLY, V2)
    del writes[:]
    cg.apply({"unified": {"memory.high": "1000"}, "memory": {"limit": 2000}}, update=True)
    assert writes == [("memory.max", "2000"), ("memory.high", "1000")]


def test_missing_controller_on_hybrid_is_named(tmp_path):
    cg = made(tmp_path, HYBRID, V1)  # cgroup2 offers nothing
    with pytest.raises(BerthError, match="linux.resources.hugepageLimits.0.|hugetlb cgroup "
                                         "controller is not mounted"):
        cg.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}, update=True)


def test_update_undoes_earlier_writes_when_the_kernel_refuses_one(tmp_path, monkeypatch):
    cg = made(tmp_path, HYBRID, V1)
    pids_max = cg.paths["pids"] + "/pids.max"
    open(pids_max, "w").write("100")
    real = fs.write

    def refuse_memory(path, value, field=None):
        if path.endswith("memory.limit_in_bytes"):
            raise fs.SysError(f"{field}: cannot write", errno=16)
        real(path, value, field)
    monkeypatch.setattr(fs, "write", refuse_memory)
    with pytest.raises(BerthError) as e:
        cg.apply({"pids": {"limit": 5}, "memory": {"limit": 4096}}, update=True)
    assert "linux.resources.memory.limit" in str(e.value)
    assert "1 change(s) made before it were undone" in str(e.value)
    assert open(pids_max).read() == "100"


# ---------------------------------------------------------------- device program

def run_bpf(code, typ, major, minor, access):
    """Interprets the opcodes ebpf.compile_rules emits."""
    insns = [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]
    ctx = (ACCESS[access] << 16 | {"b": 1, "c": 2}[typ], major, minor)
    r = [0] * 11
    pc = 0
    while True:
        op, regs, off, imm = insns[pc]
        dst, src = regs & 0xF, regs >> 4
        pc += 1
        if op == 0x61:
            r[dst] = ctx[off // 4]
        elif op == 0x54:
            r[dst] = (r[dst] & imm) & 0xFFFFFFFF
        elif op == 0x74:
            r[dst] = (r[dst] & 0xFFFFFFFF) >> imm
        elif op == 0xbc:
            r[dst] = r[src] & 0xFFFFFFFF
        elif op == 0xb7:
            r[dst] = imm
        elif op == 0x55:
            if r[dst] != imm:
                pc += off
        elif op == 0x15:
            if r[dst] == imm:
                pc += off
        elif op == 0x95:
            return r[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")


ACCESS = {"m": 1, "r": 2, "w": 4, "rw": 6, "rwm": 7}


def test_device_program_decisions():
    from berth.runtime.cgroups.devices import all_rules
    rules = all_rules({"devices": [{"allow": True, "type": "b", "major": 8, "minor": 0,
                                    "access": "r"},
                                   {"allow": False, "type": "c", "major": 1, "minor": 9,
                                    "access": "w"}]},
                      devices=[{"type": "c", "major": 10, "minor": 229}])
    code = ebpf.compile_rules(rules)
    assert run_bpf(code, "c", 1, 3, "rw") == 1            # /dev/null
    assert run_bpf(code, "c", 136, 7, "rw") == 1          # /dev/pts/7
    assert run_bpf(code, "b", 8, 0, "r") == 1             # the config's read grant
    assert run_bpf(code, "b", 8, 0, "w") == 0
    assert run_bpf(code, "b", 8, 16, "r") == 0            # other disks
    assert run_bpf(code, "b", 8, 16, "m") == 1            # mknod of any node
    assert run_bpf(code, "c", 10, 229, "rw") == 0         # a linux.devices node is no grant
    assert run_bpf(code, "c", 4, 1, "r") == 0             # a tty
    # the defaults come after the config's deny: /dev/urandom stays usable
    assert run_bpf(code, "c", 1, 9, "w") == 1


def test_device_program_allow_all_then_deny():
    code = ebpf.compile_rules([(True, "a", None, None, "rwm"),
                               (False, "b", 8, None, "rwm")])
    assert run_bpf(code, "b", 8, 3, "r") == 0
    assert run_bpf(code, "c", 1, 3, "r") == 1


# ---------------------------------------------------------------- stats

def test_v1_stats_in_runcs_shape(tmp_path):
    cg = made(tmp_path, HYBRID, [])
    p = cg.paths
    files = {
        (p["cpuacct"], "cpuacct.usage"): "3000",
        (p["cpuacct"], "cpuacct.usage_percpu"): "1000 2000 ",
        (p["cpuacct"], "cpuacct.usage_all"): "cpu user system\n0 600 400\n1 2000 0\n",
        (p["cpuacct"], "cpuacct.stat"): "user 1\nsystem 2\n",
        (p["cpu"], "cpu.stat"): "nr_periods 5\nnr_throttled 2\nthrottled_time 77\n",
        (p["memory"], "memory.limit_in_bytes"): "4096",
        (p["memory"], "memory.usage_in_bytes"): "100",
        (p["memory"], "memory.max_usage_in_bytes"): "200",
        (p["memory"], "memory.failcnt"): "0",
        (p["memory"], "memory.stat"): "rss 7\ncache 3\n",
        (p["pids"], "pids.current"): "4",
        (p["pids"], "pids.max"): "max",
        (p["cpuset"], "cpuset.cpus"): "0-2,5",
    }
    for (d, n), text in files.items():
        with open(f"{d}/{n}", "w") as f:
            f.write(text)
    s = stats.collect(cg)
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert s["cpu"] == {"usage": {"total": 3000, "percpu": [1000, 2000],
                                  "percpu_kernel": [400, 0], "percpu_user": [600, 2000],
                                  "kernel": 2 * tick, "user": tick},
                        "throttling": {"periods": 5, "throttled_periods": 2,
                                       "throttled_time": 77}}
    assert s["memory"]["cache"] == 3
    assert s["memory"]["usage"] == {"limit": 4096, "usage": 100, "max": 200, "failcnt": 0}
    assert s["memory"]["raw"] == {"cache": 3, "rss": 7}
    assert list(s["memory"]["raw"]) == ["cache", "rss"]  # sorted, as Go prints a map
    assert s["pids"] == {"current": 4}
    assert s["cpuset"]["cpus"] == [0, 1, 2, 5]
    assert list(s) == ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
                       "network_interfaces"]
    assert s["network_interfaces"] is None


# ---------------------------------------------------------------- flags

@pytest.mark.parametrize("text,want", [("1024", 1024), ("512m", 512 << 20), ("1g", 1 << 30),
                                       ("2GiB", 2 << 30), ("1.5k", 1536), ("-1", -1),
                                       ("100MB", 100 << 20)])
def test_sizes_like_runc(text, want):
    assert size("memory", text) == want


@pytest.mark.parametrize("text", ["", "abc", "1x", "-5", "m"])
def test_bad_sizes_name_the_flag(text):
    with pytest.raises(ConfigError, match="--memory: "):
        size("memory", text)


def test_update_flags_map_onto_resources():
    res = resources_from({"memory": "64m", "memory-swap": "-1", "cpu-quota": "50000",
                          "cpuset-cpus": "0", "pids-limit": "9", "blkio-weight": "300",
                          "kernel-memory-tcp": "1m"})
    assert res == {"memory": {"limit": 64 << 20, "swap": -1, "kernelTCP": 1 << 20},
                   "cpu": {"quota": 50000, "cpus": "0"}, "pids": {"limit": 9},
                   "blockIO": {"weight": 300}}
    with pytest.raises(ConfigError, match="--l3-cache-schema: intel RDT"):
        resources_from({"l3-cache-schema": "L3:0=f"})


@pytest.mark.parametrize("text,want", [("5s", 5.0), ("250ms", 0.25), ("1m30s", 90.0),
                                       ("1.5s", 1.5)])
def test_event_intervals(text, want):
    assert duration(text) == pytest.approx(want)


@pytest.mark.parametrize("text", ["0", "5", "-1s", "s", ""])
def test_bad_event_intervals(text):
    with pytest.raises(BerthError, match="--interval"):
        duration(text)


def test_a_default_device_listed_again_in_linux_devices_loses_its_default_rule():
    # runc's rule: the spec's node replaces the default one, rule included
    from berth.runtime.cgroups.devices import all_rules
    rules = all_rules({}, devices=[{"path": "/dev/tty", "type": "c", "major": 5, "minor": 0}])
    assert (True, "c", 5, 0, "rwm") not in rules
    assert (True, "c", 1, 3, "rwm") in rules


def test_cpu_quota_goes_first_when_the_period_shrinks_under_an_old_quota():
    from berth.runtime.cgroups import cpu
    ws = cpu.writes({"cpu": {"period": 10000, "quota": 3000}}, v2=False)
    now = {"/cg/cpu.cfs_period_us": "1000000", "/cg/cpu.cfs_quota_us": "500000"}
    # period first would leave 500000/10000 (5000%) in force for a moment
    assert [w[0] for w in cpu.arrange(ws, "/cg", now.get)] == ["cpu.cfs_quota_us",
                                                                "cpu.cfs_period_us"]
    none = {"/cg/cpu.cfs_period_us": "100000", "/cg/cpu.cfs_quota_us": "-1"}
    assert [w[0] for w in cpu.arrange(ws, "/cg", none.get)] == ["cpu.cfs_period_us",
                                                                 "cpu.cfs_quota_us"]


def test_no_memory_limit_lifts_the_memsw_limit_first():
    from berth.runtime.cgroups import memory
    ws = memory.writes({"memory": {"limit": -1}}, v2=False)
    with_swap = {"/cg/memory.memsw.limit_in_bytes": "96468992"}
    assert memory.arrange(ws, "/cg", with_swap.get) == [
        ("memory.memsw.limit_in_bytes", -1, "memory.limit"),
        ("memory.limit_in_bytes", -1, "memory.limit")]
    assert memory.arrange(ws, "/cg", {}.get) == ws  # no swap accounting on the host
