"""berth.runtime.cgroups on the real kernel (root; hybrid, v1 or v2 host):
placement of a process, the freezer, resource files and removal."""
import itertools
import os
import sys
import secrets
import signal
import subprocess
import time

import pytest

from berth.errors import BerthError
from berth.runtime.cgroups import Cgroup, open_cgroup
from cgroup_cleanup import remove_cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

_n = itertools.count(1)


def _token(request):
    try:
        return request.getfixturevalue("session_token")
    except pytest.FixtureLookupError:
        return secrets.token_hex(3)


def _dirs_named(name):
    """Every directory under /sys/fs/cgroup whose path contains name."""
    found = []
    for top in os.listdir("/sys/fs/cgroup"):
        top = os.path.join("/sys/fs/cgroup", top)
        if os.path.islink(top) or not os.path.isdir(top):
            continue
        for dirpath, dirs, _ in os.walk(top):
            if name in dirpath:
                found.append(dirpath)
            elif dirpath.count("/") > 8:
                dirs[:] = []  # containers nest a few levels at most
    return found


def _force_remove(name):
    """Last-resort cleanup of anything a failed test left under this name."""
    remove_cgroups([d for d in _dirs_named(name) if os.path.basename(d) == name])


@pytest.fixture
def make_cg(request):
    """make_cg(path=None) -> (Cgroup, unique name). Names carry "berth-test";
    teardown destroys every cgroup and kills every child, also on failure."""
    made = []
    children = []
    token = _token(request)

    def make(path=None, cid=None):
        name = f"berth-test-{token}-cg{next(_n)}"
        cid = cid or name
        cg = open_cgroup(path.format(name=name) if path else None, cid)
        made.append((cg, name))
        return cg, name

    def spawn_sleeper():
        p = subprocess.Popen(["sleep", "300"])
        children.append(p)
        return p

    make.sleeper = spawn_sleeper
    yield make
    for p in children:
        if p.poll() is None:
            p.kill()
        p.wait()
    for cg, name in made:
        try:
            cg.destroy()
        except BerthError:
            pass
        _force_remove(name)
    left = [d for _, name in made for d in _dirs_named(name)]
    assert not left, f"cgroups left behind: {left}"


def own_cgroup_lines(pid):
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else ["unified"]:
                out[c] = path
    return out


def read(path):
    with open(path) as f:
        return f.read().strip()


def test_process_is_placed_listed_frozen_limited_and_removed(make_cg):
    cg, name = make_cg("/{name}")
    cg.create()
    for d in cg.paths.values():
        assert os.path.isdir(d), d
    child = make_cg.sleeper()
    cg.add(child.pid)

    assert cg.pids() == [child.pid]
    where = own_cgroup_lines(child.pid)
    for ctrl in ("memory", "pids"):
        if ctrl in cg.paths:
            assert where[ctrl] == f"/{name}", (ctrl, where)

    cg.freeze()
    assert cg.frozen()
    if "freezer" in cg.paths:
        assert read(f"{cg.paths['freezer']}/freezer.state") == "FROZEN"
    else:
        assert "frozen 1" in read(f"{cg.paths['unified']}/cgroup.events")
    # a frozen task is not running; v1 shows it in D or T state
    state = [ln for ln in open(f"/proc/{child.pid}/status") if ln.startswith("State:")][0]
    assert state.split()[1] in ("D", "T"), state
    cg.thaw()
    assert not cg.frozen()
    # thawed, the task sleeps again; on a loaded host it may take a moment
    # to leave the freezer's D state
    deadline = time.monotonic() + 5
    while True:
        state = [ln for ln in open(f"/proc/{child.pid}/status") if ln.startswith("State:")][0]
        if state.split()[1] == "S" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert state.split()[1] == "S", state

    cg.apply({"pids": {"limit": 17}, "memory": {"limit": 64 << 20}}, update=True)
    assert read(f"{cg.paths['pids']}/pids.max") == "17"
    mem = cg.paths["memory"]
    limit_file = "memory.max" if cg.pure_v2 else "memory.limit_in_bytes"
    assert int(read(f"{mem}/{limit_file}")) == 64 << 20

    # destroy from another process's view: the record in the state file
    Cgroup.from_dict(cg.to_dict()).destroy()
    assert child.wait(5) == -signal.SIGKILL
    for d in cg.paths.values():
        assert not os.path.exists(d), d
    assert _dirs_named(name) == []


def test_enter_self_from_a_forked_child(make_cg):
    cg, name = make_cg("/{name}")
    cg.create()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            cg.enter_self()
            os.write(w, b"ok")
        except BaseException as e:  # noqa: B902 -- report, never return into pytest
            os.write(w, repr(e).encode())
        os.close(w)
        time.sleep(300)
        os._exit(0)
    os.close(w)
    try:
        msg = os.read(r, 4096)
        os.close(r)
        assert msg == b"ok"
        assert cg.pids() == [pid]
        where = own_cgroup_lines(pid)
        assert all(p == f"/{name}" for p in where.values()), where
    finally:
        cg.destroy()
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert _dirs_named(name) == []


@pytest.mark.skipif(not os.path.exists("/sys/fs/cgroup/devices/devices.list"),
                    reason="needs the v1 devices controller")
def test_devices_are_denied_but_for_the_default_list(make_cg):
    cg, _ = make_cg("/{name}")
    cg.create()
    cg.apply({"devices": [{"allow": False, "access": "rwm"}]},
             devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])
    listed = set(read(f"{cg.paths['devices']}/devices.list").splitlines())
    assert "a *:* rwm" not in listed
    assert {"c 1:3 rwm", "c 1:9 rwm", "c 136:* rwm", "c 5:2 rwm"} <= listed
    # a node of linux.devices is no grant: the config's deny-all holds for it
    assert not any(line.startswith("c 10:229") for line in listed)
    # a process in the cgroup cannot open a device outside the list
    out = subprocess.run(
        ["sh", "-c", f"echo $$ > {cg.paths['devices']}/cgroup.procs && "
                     "head -c1 /dev/null && echo null-ok; "
                     "head -c1 /dev/kmsg 2>&1 >/dev/null; echo rc=$?"],
        capture_output=True, text=True, timeout=10)
    assert "null-ok" in out.stdout
    assert "Operation not permitted" in out.stdout and "rc=1" in out.stdout


def test_destroy_kills_a_frozen_cgroup_and_its_sub_cgroups(make_cg):
    cg, name = make_cg("/{name}")
    cg.create()
    a = make_cg.sleeper()
    cg.add(a.pid)
    # a sub-cgroup the container made for itself, with a process in it
    sub = os.path.join(cg.paths["pids"], "inner")
    os.mkdir(sub)
    b = make_cg.sleeper()
    cg.add(b.pid)
    with open(os.path.join(sub, "cgroup.procs"), "w") as f:
        f.write(str(b.pid))
    assert cg.pids() == sorted([a.pid, b.pid])
    cg.freeze()
    cg.destroy()
    assert a.wait(5) == -signal.SIGKILL and b.wait(5) == -signal.SIGKILL
    assert _dirs_named(name) == []
    cg.destroy()  # twice is fine


def test_nested_path_removes_the_parents_it_made(make_cg):
    cg, name = make_cg("/{name}/leaf")
    cg.create()
    assert all(d.endswith(f"/{name}/leaf") for d in cg.paths.values())
    cg.destroy()
    assert _dirs_named(name) == []


def test_default_path_is_under_berth(make_cg, request):
    cg, name = make_cg(None)
    assert all(d.endswith(f"/berth/{name}") for d in cg.paths.values())
    cg.create()
    cg.destroy()
    assert _dirs_named(name) == []


def test_relative_path_is_below_own_cgroup(make_cg):
    cg, name = make_cg("{name}")
    mine = own_cgroup_lines(os.getpid())
    for ctrl, d in cg.paths.items():
        if cg.pure_v2:
            break
        assert d.endswith(mine[ctrl].rstrip("/") + f"/{name}"), (ctrl, d)
    cg.create()
    child = make_cg.sleeper()
    cg.add(child.pid)
    assert cg.pids() == [child.pid]
    cg.destroy()
    assert _dirs_named(name) == []


def test_memory_limit_below_usage_names_file_and_value(make_cg):
    if not os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        pytest.skip("needs the v1 memory controller")
    cg, _ = make_cg("/{name}")
    cg.create()
    mem = cg.paths["memory"]
    # joins first, then touches 32 MiB: v1 charges pages where they are touched
    p = subprocess.Popen(
        ["sh", "-c", f"echo $$ > {mem}/cgroup.procs && exec {sys.executable} -c "
                     "\"import time; b = bytearray(32 << 20); print('up', flush=True); "
                     "time.sleep(300)\""], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"up\n"
        with pytest.raises(BerthError) as e:
            cg.apply({"memory": {"limit": 4096}}, update=True)
        msg = str(e.value)
        assert msg.startswith(f'linux.resources.memory.limit: cannot write "4096" to '
                              f'{mem}/memory.limit_in_bytes: Device or resource busy'), msg
    finally:
        p.kill()
        p.wait()
        cg.destroy()


# ---------------------------------------------------------------- cgroup2

UNIFIED = "/sys/fs/cgroup/unified"


def _v2_only(cg):
    """The same cgroup seen as on a pure v2 host: only its cgroup2 directory.
    On this hybrid machine that exercises the v2 code on the real kernel."""
    from berth.runtime.cgroups import Cgroup as C
    d = cg.to_dict()
    d["hierarchies"] = [h for h in d["hierarchies"] if h["type"] == "v2"]
    d["pureV2"] = True
    return C.from_dict(d)


@pytest.mark.skipif(not os.path.exists(f"{UNIFIED}/cgroup.procs"), reason="needs cgroup2")
def test_v2_device_program_lets_dev_null_open_and_refuses_a_block_device(make_cg):
    disk = next((f"/dev/{n}" for n in ("vda", "sda", "nvme0n1") if os.path.exists(f"/dev/{n}")),
                None)
    if disk is None:
        pytest.skip("no block device to try")
    cg, _ = make_cg("/{name}")
    cg.create()
    v2cg = _v2_only(cg)
    v2cg.apply({"devices": [{"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}]})
    d = v2cg.paths["unified"]
    out = subprocess.run(
        ["sh", "-c", f"echo $$ > {d}/cgroup.procs && head -c1 /dev/null && echo null-ok; "
                     f"head -c1 {disk} 2>&1 >/dev/null; echo rc=$?"],
        capture_output=True, text=True, timeout=10)
    assert "null-ok" in out.stdout, out
    assert "Operation not permitted" in out.stdout and "rc=1" in out.stdout, out
    # an update replaces the program instead of stacking another
    from berth.runtime.cgroups import ebpf
    v2cg.apply({"devices": []}, update=True)
    fd = os.open(d, os.O_RDONLY)
    try:
        assert len(ebpf.attached(fd)) == 1
    finally:
        os.close(fd)
    v2cg.destroy()


@pytest.mark.skipif("hugetlb" not in open(f"{UNIFIED}/cgroup.controllers").read().split()
                    if os.path.exists(f"{UNIFIED}/cgroup.controllers") else True,
                    reason="cgroup2 offers no free hugetlb controller")
def test_hybrid_moves_free_hugetlb_to_cgroup2_and_the_test_restores_it(make_cg):
    root_ctl = f"{UNIFIED}/cgroup.subtree_control"
    before = read(root_ctl).split()
    cg, name = make_cg("/{name}/leaf")
    cg.create()
    uni = cg.paths["unified"]
    try:
        cg.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}, update=True)
        assert int(read(f"{uni}/hugetlb.2MB.max")) == 4 << 20
        assert "hugetlb" in read(root_ctl).split()
        st = cg.stats()
        assert st["hugetlb"]["2MB"] == {"max": 4 << 20, "failcnt": 0}
    finally:
        cg.destroy()
        if "hugetlb" not in before:
            with open(root_ctl, "w") as f:
                f.write("-hugetlb")
    assert read(root_ctl).split() == before
