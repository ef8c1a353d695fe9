"""Cgroup placement and resource writers against fake cgroup trees: a
tmp_path with proc/self/{mountinfo,cgroup} and the mount point directories
of a v1-only, a v2-only or a hybrid host."""
import errno
import os

import pytest

from berth.errors import BerthError, ConfigError, SysError
from berth.runtime import cgroups
from berth.runtime.cgroups import Cgroup, fs, open_cgroup
from berth.runtime.cgroups.cpu import shares_to_weight

V1_ONLY = {
    "mounts": [
        ("/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
        ("/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
        ("/sys/fs/cgroup/pids", "cgroup", "rw,pids"),
        ("/sys/fs/cgroup/devices", "cgroup", "rw,devices"),
        ("/sys/fs/cgroup/freezer", "cgroup", "rw,freezer"),
        ("/sys/fs/cgroup/cpuset", "cgroup", "rw,cpuset,clone_children"),
        ("/sys/fs/cgroup/systemd", "cgroup", "rw,xattr,name=systemd"),
    ],
    "cgroup": ["7:name=systemd:/user.slice/session-1.scope", "6:cpuset:/",
               "5:freezer:/", "4:devices:/user.slice", "3:pids:/user.slice/session-1.scope",
               "2:memory:/user.slice/session-1.scope", "1:cpu,cpuacct:/user.slice",
               "0::/user.slice/session-1.scope"],
}

V2_ONLY = {
    "mounts": [("/sys/fs/cgroup", "cgroup2", "rw,nsdelegate,memory_recursiveprot")],
    "cgroup": ["0::/user.slice/user-0.slice/session-3.scope"],
}

# the layout of the machine these tests were written on
HYBRID = {
    "mounts": [
        ("/sys/fs/cgroup/cpu", "cgroup", "rw,cpu"),
        ("/sys/fs/cgroup/cpuacct", "cgroup", "rw,cpuacct"),
        ("/sys/fs/cgroup/cpuset", "cgroup", "rw,cpuset"),
        ("/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
        ("/sys/fs/cgroup/devices", "cgroup", "rw,devices"),
        ("/sys/fs/cgroup/freezer", "cgroup", "rw,freezer"),
        ("/sys/fs/cgroup/pids", "cgroup", "rw,pids"),
        ("/sys/fs/cgroup/systemd", "cgroup", "rw,name=systemd"),
        ("/sys/fs/cgroup/unified", "cgroup2", "rw"),
    ],
    "cgroup": ["9:name=systemd:/", "8:pids:/", "6:freezer:/", "5:devices:/",
               "4:memory:/process_api/abc", "3:cpuset:/", "2:cpuacct:/", "1:cpu:/", "0::/"],
}


def fake_host(tmp_path, layout):
    """Writes the proc files and mount points; returns the fake root."""
    root = tmp_path / "host"
    (root / "proc/self").mkdir(parents=True)
    lines = ["23 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw",
             "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755"]
    for n, (mp, fstype, opts) in enumerate(layout["mounts"]):
        lines.append(f"{40 + n} 31 0:{30 + n} / {mp} rw,nosuid,relatime shared:{n} - "
                     f"{fstype} cgroup {opts}")
        (root / mp.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / "proc/self/mountinfo").write_text("\n".join(lines) + "\n")
    (root / "proc/self/cgroup").write_text("\n".join(layout["cgroup"]) + "\n")
    return root


def S(root, path):
    return f"{root}{path}"


@pytest.fixture
def writes(monkeypatch):
    """Records every control-file write (path, value) and still performs it,
    so a write to a file the fake tree lacks fails as on a real host."""
    log = []
    real = fs.write

    def rec(path, value, field=None):
        log.append((path, str(value)))
        real(path, value, field)
    monkeypatch.setattr(fs, "write", rec)
    return log


def touch_controls(cg, names):
    """Control files a real kernel would show in the new cgroup dirs."""
    for d in set(cg.paths.values()):
        for n in names:
            open(os.path.join(d, n), "a").close()


# ---------------------------------------------------------------- placement


def test_hybrid_default_path_is_berth_id_in_every_hierarchy(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    cg = open_cgroup(None, "c1", root=str(root))
    base = S(root, "/sys/fs/cgroup")
    assert cg.paths == {
        "cpu": f"{base}/cpu/berth/c1", "cpuacct": f"{base}/cpuacct/berth/c1",
        "cpuset": f"{base}/cpuset/berth/c1", "memory": f"{base}/memory/berth/c1",
        "devices": f"{base}/devices/berth/c1", "freezer": f"{base}/freezer/berth/c1",
        "pids": f"{base}/pids/berth/c1", "name=systemd": f"{base}/systemd/berth/c1",
        "unified": f"{base}/unified/berth/c1"}
    assert not cg.pure_v2


def test_empty_string_is_the_default_too(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    assert open_cgroup("", "c1", root=str(root)).paths["pids"].endswith("/pids/berth/c1")


def test_hybrid_relative_path_follows_own_cgroup_per_hierarchy(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    cg = open_cgroup("ctrs/c1", "c1", root=str(root))
    base = S(root, "/sys/fs/cgroup")
    assert cg.paths["memory"] == f"{base}/memory/process_api/abc/ctrs/c1"
    assert cg.paths["pids"] == f"{base}/pids/ctrs/c1"
    assert cg.paths["unified"] == f"{base}/unified/ctrs/c1"


def test_v1_only_comounted_and_named_hierarchies(tmp_path):
    root = fake_host(tmp_path, V1_ONLY)
    cg = open_cgroup("/a/b", "c1", root=str(root))
    base = S(root, "/sys/fs/cgroup")
    assert cg.paths["cpu"] == cg.paths["cpuacct"] == f"{base}/cpu,cpuacct/a/b"
    assert cg.paths["name=systemd"] == f"{base}/systemd/a/b"
    # "0::/..." is listed by the kernel, but no cgroup2 is mounted
    assert "unified" not in cg.paths
    assert len(cg.hierarchies) == 6 + 1


def test_v1_only_relative_path(tmp_path):
    root = fake_host(tmp_path, V1_ONLY)
    cg = open_cgroup("x", "c1", root=str(root))
    base = S(root, "/sys/fs/cgroup")
    assert cg.paths["cpu"] == f"{base}/cpu,cpuacct/user.slice/x"
    assert cg.paths["pids"] == f"{base}/pids/user.slice/session-1.scope/x"
    assert cg.paths["cpuset"] == f"{base}/cpuset/x"


def test_v2_only(tmp_path):
    root = fake_host(tmp_path, V2_ONLY)
    cg = open_cgroup(None, "c1", root=str(root))
    assert cg.paths == {"unified": S(root, "/sys/fs/cgroup/berth/c1")}
    assert cg.pure_v2


def test_v2_only_relative_path_goes_next_to_own_cgroup(tmp_path):
    # own cgroup has processes, so controllers cannot be enabled below it
    root = fake_host(tmp_path, V2_ONLY)
    cg = open_cgroup("x/c1", "c1", root=str(root))
    assert cg.paths == {"unified": S(root, "/sys/fs/cgroup/user.slice/user-0.slice/x/c1")}


def test_named_v1_hierarchy_on_a_v2_host_stays_v2(tmp_path):
    layout = {"mounts": V2_ONLY["mounts"] + [("/sys/fs/cgroup/systemd", "cgroup", "rw,name=systemd")],
              "cgroup": ["1:name=systemd:/", "0::/"]}
    root = fake_host(tmp_path, layout)
    cg = open_cgroup(None, "c1", root=str(root))
    assert cg.pure_v2
    assert set(cg.paths) == {"unified", "name=systemd"}


def test_systemd_syntax_is_one_relative_name_like_runc_cgroupfs(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    cg = open_cgroup("system.slice:docker:c1", "c1", root=str(root))
    assert cg.paths["pids"] == S(root, "/sys/fs/cgroup/pids/system.slice:docker:c1")


@pytest.mark.parametrize("path,want", [
    ("../../etc/x", "/etc/x"),
    ("/../../x", "/x"),
    ("/a//b/./c/", "/a/b/c"),
])
def test_paths_cannot_climb_out(tmp_path, path, want):
    root = fake_host(tmp_path, HYBRID)
    cg = open_cgroup(path, "c1", root=str(root))
    assert cg.paths["pids"] == S(root, "/sys/fs/cgroup/pids" + want)


@pytest.mark.parametrize("path", ["/", ".", "a/..", "/.."])
def test_root_or_own_cgroup_is_refused(tmp_path, path):
    root = fake_host(tmp_path, HYBRID)
    with pytest.raises(ConfigError, match="linux.cgroupsPath"):
        open_cgroup(path, "c1", root=str(root))


def test_non_string_path_is_refused(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    with pytest.raises(ConfigError, match="linux.cgroupsPath: must be a string"):
        open_cgroup(["a"], "c1", root=str(root))


def test_escaped_mount_point(tmp_path):
    root = tmp_path / "host"
    (root / "proc/self").mkdir(parents=True)
    (root / "cg v2").mkdir()
    (root / "proc/self/mountinfo").write_text(
        "30 23 0:26 / /cg\\040v2 rw shared:4 - cgroup2 cgroup2 rw\n")
    (root / "proc/self/cgroup").write_text("0::/\n")
    cg = open_cgroup("/x", "c1", root=str(root))
    assert cg.paths == {"unified": f"{root}/cg v2/x"}


def test_subtree_mount_without_cgroupns(tmp_path):
    # a container's view: the hierarchy's /docker/abc is mounted at the top
    root = tmp_path / "host"
    (root / "proc/self").mkdir(parents=True)
    (root / "sys/fs/cgroup").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(
        "30 23 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    (root / "proc/self/cgroup").write_text("0::/docker/abc/init\n")
    cg = open_cgroup("sub", "c1", root=str(root))
    # relative: next to our own cgroup (v2-only), inside the mounted subtree
    assert cg.paths == {"unified": f"{root}/sys/fs/cgroup/sub"}


def test_top_of_a_subtree_mount_is_refused(tmp_path):
    root = tmp_path / "host"
    (root / "proc/self").mkdir(parents=True)
    (root / "sys/fs/cgroup").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(
        "30 23 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    (root / "proc/self/cgroup").write_text("0::/docker/abc/init\n")
    with pytest.raises(ConfigError, match="linux.cgroupsPath: '/docker/abc' is the top"):
        open_cgroup("/docker/abc", "c1", root=str(root))


def test_no_cgroups_mounted(tmp_path):
    root = tmp_path / "host"
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text("1 0 0:1 / / rw - ext4 /dev/sda rw\n")
    (root / "proc/self/cgroup").write_text("0::/\n")
    with pytest.raises(SysError, match="no cgroup hierarchy is mounted"):
        open_cgroup(None, "c1", root=str(root))


# ---------------------------------------------------------------- create/destroy


def test_create_records_only_what_it_made_and_destroy_removes_only_that(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    pre = root / "sys/fs/cgroup/pids/other"
    pre.mkdir()  # somebody else's parent, there before us
    cg = open_cgroup("/other/c1", "c1", root=str(root))
    cg.create()
    for d in cg.paths.values():
        assert os.path.isdir(d)
    rec = {h["mount"]: h["made"] for h in cg.hierarchies}
    assert rec[S(root, "/sys/fs/cgroup/pids")] == [S(root, "/sys/fs/cgroup/pids/other/c1")]
    assert rec[S(root, "/sys/fs/cgroup/memory")] == [S(root, "/sys/fs/cgroup/memory/other"),
                                                      S(root, "/sys/fs/cgroup/memory/other/c1")]
    # a cgroup the container made for itself goes too
    os.mkdir(os.path.join(cg.paths["memory"], "inner"))
    # destroy in another process: from the record in the state file
    again = Cgroup.from_dict(cg.to_dict())
    again.destroy()
    assert pre.is_dir() and not any(pre.iterdir())
    assert not (root / "sys/fs/cgroup/memory/other").exists()
    for d in cg.paths.values():
        assert not os.path.exists(d)
    again.destroy()  # twice is fine


def test_default_parent_goes_with_the_last_container_whoever_made_it(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    (root / "sys/fs/cgroup/pids/berth").mkdir()  # made by a container gone since
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    Cgroup.from_dict(cg.to_dict()).destroy()
    assert not (root / "sys/fs/cgroup/pids/berth").exists()
    assert not (root / "sys/fs/cgroup/memory/berth").exists()


def test_destroy_keeps_a_parent_another_container_still_uses(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    a = open_cgroup(None, "a", root=str(root))
    a.create()
    b = open_cgroup(None, "b", root=str(root))
    b.create()
    a.destroy()
    assert os.path.isdir(b.paths["memory"])
    b.destroy()
    assert not (root / "sys/fs/cgroup/memory/berth").exists() or \
        not any((root / "sys/fs/cgroup/memory/berth").iterdir())


def test_a_leaf_that_existed_before_goes_with_the_container(tmp_path):
    # it is the container's cgroup all the same: runc removes it too
    root = fake_host(tmp_path, V2_ONLY)
    leaf = root / "sys/fs/cgroup/mine"
    leaf.mkdir()
    cg = open_cgroup("/mine", "c1", root=str(root))
    cg.create()
    cg.destroy()
    assert not leaf.exists()


def test_v1_cpuset_is_inherited_so_tasks_can_join(tmp_path, writes, monkeypatch):
    root = fake_host(tmp_path, HYBRID)
    real_mkdir = fs.mkdir

    def kernel_mkdir(path):
        # like cgroupfs: a new cpuset has the files, empty
        made = real_mkdir(path)
        if "/cpuset/" in path:
            for n in ("cpuset.cpus", "cpuset.mems"):
                open(os.path.join(path, n), "w").close()
        return made
    monkeypatch.setattr(fs, "mkdir", kernel_mkdir)
    top = root / "sys/fs/cgroup/cpuset"
    (top / "cpuset.cpus").write_text("0-3\n")
    (top / "cpuset.mems").write_text("0\n")
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    leaf = cg.paths["cpuset"]
    assert open(f"{leaf}/cpuset.cpus").read() == "0-3"
    assert open(f"{leaf}/cpuset.mems").read() == "0"
    assert open(f"{top}/berth/cpuset.cpus").read() == "0-3"


def test_v2_create_enables_controllers_down_the_path(tmp_path):
    root = fake_host(tmp_path, V2_ONLY)
    top = root / "sys/fs/cgroup"
    (top / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (top / "cgroup.subtree_control").write_text("memory\n")
    (top / "berth").mkdir()
    (top / "berth/cgroup.controllers").write_text("cpu memory pids\n")
    (top / "berth/cgroup.subtree_control").write_text("")
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    assert (top / "cgroup.subtree_control").read_text() == "+cpuset +cpu +io +pids"
    assert (top / "berth/cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_enter_self_and_add_write_every_hierarchy(tmp_path, writes):
    root = fake_host(tmp_path, HYBRID)
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    touch_controls(cg, ["cgroup.procs"])
    cg.enter_self()
    cg.add(1234)
    dirs = {h["dir"] for h in cg.hierarchies}
    assert {p for p, v in writes if v == "0"} == {f"{d}/cgroup.procs" for d in dirs}
    assert {p for p, v in writes if v == "1234"} == {f"{d}/cgroup.procs" for d in dirs}


def test_pids_are_collected_recursively_across_hierarchies(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    mem = cg.paths["memory"]
    os.mkdir(f"{mem}/sub")
    open(f"{mem}/cgroup.procs", "w").write("10\n12\n")
    open(f"{mem}/sub/cgroup.procs", "w").write("11\n")
    open(f"{cg.paths['pids']}/cgroup.procs", "w").write("12\n13\n")
    assert cg.pids() == [10, 11, 12, 13]


def test_pids_of_a_removed_cgroup_is_empty(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    assert open_cgroup(None, "c1", root=str(root)).pids() == []


def test_state_record_round_trip(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    cg = open_cgroup(None, "c1", root=str(root))
    from berth.oci import jsonio
    back = Cgroup.from_dict(jsonio.loads(jsonio.dumps(cg.to_dict())))
    assert back.paths == cg.paths and back.to_dict() == cg.to_dict()


def test_malformed_record(tmp_path):
    with pytest.raises(BerthError, match="malformed cgroup record"):
        Cgroup.from_dict({"path": "/x"})


# ---------------------------------------------------------------- freezer


def test_v1_freeze_thaw(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    state = os.path.join(cg.paths["freezer"], "freezer.state")
    open(state, "w").write("THAWED\n")
    assert not cg.frozen()
    cg.freeze()
    assert open(state).read() == "FROZEN" and cg.frozen()
    cg.thaw()
    assert open(state).read() == "THAWED" and not cg.frozen()


def test_v2_freeze_thaw(tmp_path):
    root = fake_host(tmp_path, V2_ONLY)
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    d = cg.paths["unified"]
    open(f"{d}/cgroup.freeze", "w").write("0\n")
    # the fake kernel has already done it
    open(f"{d}/cgroup.events", "w").write("populated 1\nfrozen 1\n")
    cg.freeze()
    assert open(f"{d}/cgroup.freeze").read() == "1" and cg.frozen()
    open(f"{d}/cgroup.events", "w").write("populated 1\nfrozen 0\n")
    cg.thaw()
    assert not cg.frozen()


def test_v2_freeze_that_never_completes_is_undone(tmp_path, monkeypatch):
    from berth.runtime.cgroups import v2
    root = fake_host(tmp_path, V2_ONLY)
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    d = cg.paths["unified"]
    open(f"{d}/cgroup.freeze", "w").write("0\n")
    open(f"{d}/cgroup.events", "w").write("populated 1\nfrozen 0\n")
    real = v2.set_frozen
    monkeypatch.setattr(v2, "set_frozen", lambda d, on: real(d, on, deadline_s=0.05))
    with pytest.raises(BerthError, match="did not freeze"):
        cg.freeze()
    assert open(f"{d}/cgroup.freeze").read() == "0"


def test_frozen_of_a_removed_cgroup_is_false(tmp_path):
    root = fake_host(tmp_path, HYBRID)
    assert not open_cgroup(None, "c1", root=str(root)).frozen()


# ---------------------------------------------------------------- resources

V1_FILES = ["devices.allow", "devices.deny", "pids.max", "memory.limit_in_bytes", "cpu.shares",
            "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpuset.cpus", "cpuset.mems"]
V2_FILES = ["pids.max", "memory.max", "cpu.weight", "cpu.max", "cpuset.cpus", "cpuset.mems"]

RES = {"pids": {"limit": 100}, "memory": {"limit": 1 << 30},
       "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"}}


def made(tmp_path, layout, files):
    root = fake_host(tmp_path, layout)
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    touch_controls(cg, files)
    return cg


def test_v1_writers(tmp_path, writes):
    cg = made(tmp_path, HYBRID, V1_FILES)
    del writes[:]
    cg.apply(RES)
    p = cg.paths
    got = [(w[0], w[1]) for w in writes if "/devices." not in w[0]]
    assert got == [
        (f"{p['pids']}/pids.max", "100"),
        (f"{p['memory']}/memory.limit_in_bytes", str(1 << 30)),
        (f"{p['cpu']}/cpu.shares", "512"),
        (f"{p['cpu']}/cpu.cfs_period_us", "100000"),
        (f"{p['cpu']}/cpu.cfs_quota_us", "50000"),
        (f"{p['cpuset']}/cpuset.mems", "0"),
        (f"{p['cpuset']}/cpuset.cpus", "0-1"),
    ]


def test_v1_devices_default_list_after_deny_all(tmp_path, writes):
    cg = made(tmp_path, HYBRID, V1_FILES)
    del writes[:]
    cg.apply({"devices": [{"allow": False, "access": "rwm"},
                          {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rw"}]},
             devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
                      {"path": "/dev/fifo", "type": "p"}])
    d = cg.paths["devices"]
    dev = [(os.path.basename(p), v) for p, v in writes if p.startswith(d)]
    assert dev[0] == ("devices.deny", "a")
    assert dev[1] == ("devices.deny", "a")  # the config's own deny-all
    assert dev[2] == ("devices.allow", "c 10:200 rw")
    allowed = {v for n, v in dev[3:] if n == "devices.allow"}
    assert allowed == {"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",
                       "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm",
                       "c 136:* rwm"}
    assert all(n == "devices.allow" for n, _ in dev[3:])


def test_v1_devices_are_locked_down_even_without_resources(tmp_path, writes):
    cg = made(tmp_path, HYBRID, V1_FILES)
    del writes[:]
    cg.apply(None)
    assert (f"{cg.paths['devices']}/devices.deny", "a") in writes
    assert (f"{cg.paths['devices']}/devices.allow", "c 1:3 rwm") in writes


def test_update_leaves_devices_alone_unless_given(tmp_path, writes):
    cg = made(tmp_path, HYBRID, V1_FILES)
    del writes[:]
    cg.apply({"pids": {"limit": 5}}, update=True)
    assert writes == [(f"{cg.paths['pids']}/pids.max", "5")]


@pytest.fixture
def bpf(monkeypatch):
    """Records the device programs apply would attach on cgroup2."""
    from berth.runtime.cgroups import ebpf
    log = []
    monkeypatch.setattr(ebpf, "install", lambda d, rules: log.append((d, rules)))
    return log


def test_v2_writers(tmp_path, writes, bpf):
    cg = made(tmp_path, V2_ONLY, V2_FILES)
    del writes[:]
    cg.apply(RES)
    d = cg.paths["unified"]
    assert [(os.path.basename(p), v) for p, v in writes] == [
        ("pids.max", "100"), ("memory.max", str(1 << 30)),
        ("cpu.weight", str(shares_to_weight(512))), ("cpu.max", "50000 100000"),
        ("cpuset.mems", "0"), ("cpuset.cpus", "0-1")]
    assert all(p.startswith(d + "/") for p, _ in writes)


@pytest.mark.parametrize("res,v1,v2", [
    ({"pids": {"limit": -1}}, [("pids.max", "max")], [("pids.max", "max")]),
    ({"pids": {"limit": 0}}, [], []),
    ({"memory": {"limit": -1}}, [("memory.limit_in_bytes", "-1")], [("memory.max", "max")]),
    ({"cpu": {"quota": -1, "period": 50000}},
     [("cpu.cfs_period_us", "50000"), ("cpu.cfs_quota_us", "-1")], [("cpu.max", "max 50000")]),
    ({"cpu": {"quota": 20000}}, [("cpu.cfs_quota_us", "20000")], [("cpu.max", "20000")]),
])
def test_unlimited_and_unset_values(tmp_path, writes, res, v1, v2):
    cg1 = made(tmp_path / "a", HYBRID, V1_FILES)
    del writes[:]
    cg1.apply(res, update=True)
    assert [(os.path.basename(p), v) for p, v in writes] == v1
    cg2 = made(tmp_path / "b", V2_ONLY, V2_FILES)
    del writes[:]
    cg2.apply(res, update=True)
    assert [(os.path.basename(p), v) for p, v in writes] == v2


def test_shares_map_onto_weight_range():
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(262144) == 10000


@pytest.mark.parametrize("res,field", [
    ({"pids": {"limit": "10"}}, "linux.resources.pids.limit"),
    ({"pids": {"limit": True}}, "linux.resources.pids.limit"),
    ({"pids": 5}, "linux.resources.pids"),
    ({"memory": {"limit": -5}}, "linux.resources.memory.limit"),
    ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares"),
    ({"cpu": {"quota": 1.5}}, "linux.resources.cpu.quota"),
    ({"cpu": {"period": 10}}, "linux.resources.cpu.period"),
    ({"cpu": {"cpus": "0-"}}, "linux.resources.cpu.cpus"),
    ({"cpu": {"mems": "3-1"}}, "linux.resources.cpu.mems"),
    ({"devices": [{"allow": True}, {"allow": True, "access": "rwx"}]},
     "linux.resources.devices[1].access"),
    ({"devices": [{"allow": "yes"}]}, "linux.resources.devices[0].allow"),
    ({"devices": [{"allow": True, "type": "x"}]}, "linux.resources.devices[0].type"),
    ({"devices": [{"allow": True, "type": "c", "major": -3}]}, "linux.resources.devices[0].major"),
])
def test_bad_values_name_the_field_and_write_nothing(tmp_path, writes, res, field):
    cg = made(tmp_path, HYBRID, V1_FILES)
    del writes[:]
    res = dict(res, pids=res.get("pids", {"limit": 7}))  # a good value, not written either
    with pytest.raises(ConfigError) as e:
        cg.apply(res)
    assert str(e.value).startswith(field + ":")
    assert writes == []


def test_resources_must_be_an_object(tmp_path):
    cg = made(tmp_path, HYBRID, V1_FILES)
    with pytest.raises(ConfigError, match="linux.resources: must be an object"):
        cg.apply([])


def test_missing_controller_is_named(tmp_path):
    layout = {"mounts": [m for m in V1_ONLY["mounts"] if "pids" not in m[2]],
              "cgroup": [c for c in V1_ONLY["cgroup"] if ":pids:" not in c]}
    root = fake_host(tmp_path, layout)
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    touch_controls(cg, V1_FILES)
    with pytest.raises(BerthError, match="linux.resources.pids.limit: the pids cgroup controller "
                                         "is not mounted"):
        cg.apply({"pids": {"limit": 5}})


def test_v1_host_without_devices_hierarchy_is_refused(tmp_path):
    layout = {"mounts": [m for m in V1_ONLY["mounts"] if "devices" not in m[2]],
              "cgroup": V1_ONLY["cgroup"]}
    root = fake_host(tmp_path, layout)
    cg = open_cgroup(None, "c1", root=str(root))
    cg.create()
    with pytest.raises(BerthError, match="devices cgroup controller is not mounted"):
        cg.apply(None)


def test_v2_devices_become_one_program_and_no_file_writes(tmp_path, writes, bpf):
    cg = made(tmp_path, V2_ONLY, V2_FILES)
    del writes[:]
    cg.apply({"devices": [{"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}]},
             devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])
    assert writes == []
    [(d, rules)] = bpf
    assert d == cg.paths["unified"]
    assert rules[0] == (False, "a", None, None, "rwm")
    assert rules[1] == (True, "b", 8, 0, "r")
    assert (True, "c", 1, 3, "rwm") in rules
    assert not any(r[2] == 10 for r in rules)  # a linux.devices node is no grant


def test_missing_control_file_names_file_value_and_field(tmp_path):
    cg = made(tmp_path, HYBRID, [])
    with pytest.raises(SysError) as e:
        cg.apply({"pids": {"limit": 9}}, update=True)
    msg = str(e.value)
    assert msg.startswith(f'linux.resources.pids.limit: cannot write "9" to '
                          f'{cg.paths["pids"]}/pids.max: No such file or directory')
    assert e.value.errno == errno.ENOENT


@pytest.mark.parametrize("code,hint", [(errno.EBUSY, "below current usage"),
                                       (errno.EINVAL, "rejected the value")])
def test_kernel_refusals_keep_errno_file_and_value(tmp_path, monkeypatch, code, hint):
    cg = made(tmp_path, HYBRID, V1_FILES)

    def refuse(fd, data):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(fs.os, "write", refuse)
    with pytest.raises(SysError) as e:
        cg.apply({"memory": {"limit": 4096}}, update=True)
    monkeypatch.undo()
    assert e.value.errno == code
    msg = str(e.value)
    assert f'cannot write "4096" to {cg.paths["memory"]}/memory.limit_in_bytes' in msg
    assert os.strerror(code) in msg and hint in msg


def test_package_exports():
    assert cgroups.open_cgroup is open_cgroup and cgroups.Cgroup is Cgroup
