"""Namespaces beyond the defaults, on both runtimes: a time namespace with
offsets, joining another container's namespaces by path, ipc isolation,
user namespaces with a non-root process or without root mapped,
--no-pivot; and process.rlimits that lower or (without CAP_SYS_RESOURCE)
try to raise limits."""
import ctypes
import os
import resource
import secrets
import subprocess

import pytest

import bundle as bundles

SLEEP = ["sleep", "60"]
USERNS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def namespaces(replace=None, add=(), drop=()):
    """runc spec's namespace list with entries replaced by type, added or
    dropped."""
    out = []
    for ns in bundles.base_spec()["linux"]["namespaces"]:
        if ns["type"] in drop:
            continue
        out.append((replace or {}).get(ns["type"], ns))
    return out + [dict(n) for n in add]


def _patch_config(bundle, changes):
    bundles.write_config(bundle, bundles.patch(bundles.read_config(bundle), changes))


def out(res):
    return res.returncode, res.stdout


# ---------------------------------------------------------------- time


def test_time_namespace_offsets(runtime, busybox_bundle):
    if runtime.name == "runc":
        # runc 1.1 knows no time namespace ("namespace {"time" ""} does not exist")
        pytest.skip("runc 1.1 has no time namespace support")
    week, ten_days = 7 * 86400, 10 * 86400
    b = busybox_bundle(
        args=["sh", "-c", "cat /proc/self/timens_offsets; cat /proc/uptime"],
        changes={"linux.namespaces": namespaces(add=[{"type": "time"}]),
                 "linux.timeOffsets": {"monotonic": {"secs": week},
                                       "boottime": {"secs": ten_days}}})
    before = _host_uptime()
    res = runtime.run_bundle(b)
    after = _host_uptime()
    assert res.returncode == 0, res
    lines = res.stdout.splitlines()
    offsets = {l.split()[0]: l.split()[1:] for l in lines[:2]}
    assert offsets == {"monotonic": [str(week), "0"], "boottime": [str(ten_days), "0"]}
    # /proc/uptime counts boottime, so it moved by the boottime offset
    inside = float(lines[2].split()[0])
    assert before + ten_days - 1 <= inside <= after + ten_days + 1, (before, inside, after)


def test_time_offsets_without_time_namespace(runtime, busybox_bundle):
    """Offsets only mean something in a time namespace of the container's
    own: runc 1.1 ignores them, berth refuses the config."""
    b = busybox_bundle(args=["cat", "/proc/uptime"],
                       changes={"linux.timeOffsets": {"boottime": {"secs": 86400}}})
    before = _host_uptime()
    res = runtime.run_bundle(b)
    after = _host_uptime()
    if runtime.name == "runc":
        assert res.returncode == 0, res
        inside = float(res.stdout.split()[0])
        assert before - 1 <= inside <= after + 1, (before, inside, after)
    else:
        assert res.returncode != 0 and res.stdout == ""
        assert "linux.timeOffsets" in res.stderr, res.stderr
        assert "time namespace" in res.stderr, res.stderr


def _host_uptime():
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


# ---------------------------------------------------------------- joining


def test_join_network_and_uts_by_path(parity, busybox_bundle):
    probe = ("readlink /proc/self/ns/net; readlink /proc/self/ns/uts; hostname; "
             "cat /sys/class/net/lo/flags")

    def scenario(rt):
        first = rt.new_id("first")
        rt.run(["run", "-d", "--bundle",
                busybox_bundle(args=SLEEP, changes={"hostname": "first-box"}), first])
        pid = rt.state(first)["pid"]
        # lo starts down in a new network namespace; bring it up from the
        # host so the second container can only see "up" through the join
        subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "link",
                        "set", "lo", "up"], check=True, capture_output=True)
        joined = namespaces(replace={
            "network": {"type": "network", "path": f"/proc/{pid}/ns/net"},
            "uts": {"type": "uts", "path": f"/proc/{pid}/ns/uts"}})
        b = busybox_bundle(args=["sh", "-c", probe],
                           changes={"linux.namespaces": joined,
                                    "hostname": bundles.DELETE})
        res = rt.run_bundle(b)
        expected = [os.readlink(f"/proc/{pid}/ns/net"), os.readlink(f"/proc/{pid}/ns/uts")]
        pid_ns_differs = os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
        rt.run(["delete", "-f", first])
        lines = res.stdout.splitlines()
        return (res.returncode, lines[:2] == expected, lines[2:], pid_ns_differs)
    # IFF_UP|IFF_LOOPBACK: the first container's loopback as the host left
    # it (a namespace of its own would show 0x8, down)
    assert parity(scenario) == (0, True, ["first-box", "0x9"], True)


def test_join_missing_namespace_path_fails(runtime, busybox_bundle):
    ghost = f"/proc/{_unused_pid()}/ns/net"
    b = busybox_bundle(args=["true"], changes={"linux.namespaces": namespaces(
        replace={"network": {"type": "network", "path": ghost}})})
    res = runtime.run_bundle(b)
    assert res.returncode != 0
    if runtime.name == "berth":
        assert ghost in res.stderr, res.stderr


def _unused_pid():
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read()) - 1
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


# ---------------------------------------------------------------- ipc


class _HostIpc:
    """A SysV shared memory segment and a POSIX message queue of the host's
    ipc namespace, removed again in teardown."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.mq_open.restype = ctypes.c_int
        self.key = 0x5be70000 | secrets.randbits(16)
        self.shmid = self.libc.shmget(ctypes.c_int(self.key), ctypes.c_size_t(4096),
                                      ctypes.c_int(0o1000 | 0o2000 | 0o600))
        if self.shmid < 0:
            raise OSError(ctypes.get_errno(), "shmget")
        self.mq = f"berth-test-{secrets.token_hex(4)}"
        O_CREAT, O_EXCL, O_RDWR = 0o100, 0o200, 0o2
        self.mqd = self.libc.mq_open(f"/{self.mq}".encode(),
                                     ctypes.c_int(O_CREAT | O_EXCL | O_RDWR),
                                     ctypes.c_uint(0o600), None)
        if self.mqd < 0:
            err = ctypes.get_errno()
            self.close()
            raise OSError(err, "mq_open")

    def close(self):
        IPC_RMID = 0
        if self.shmid >= 0:
            self.libc.shmctl(self.shmid, IPC_RMID, None)
            self.shmid = -1
        if getattr(self, "mqd", -1) >= 0:
            self.libc.mq_close(self.mqd)
            self.libc.mq_unlink(f"/{self.mq}".encode())
            self.mqd = -1


@pytest.fixture
def host_ipc():
    ipc = _HostIpc()
    yield ipc
    ipc.close()


@pytest.mark.parametrize("own_ipc", [True, False], ids=["ipcns", "host-ipc"])
def test_ipc_namespace_isolation(parity, busybox_bundle, host_ipc, own_ipc):
    key = f"{host_ipc.key}"
    script = (f"grep -c '^ *{key} ' /proc/sysvipc/shm; "
              f"ls /dev/mqueue | grep -c '^{host_ipc.mq}$'")
    changes = {} if own_ipc else {"linux.namespaces": namespaces(drop=["ipc"])}
    got = parity(lambda rt: out(rt.run_bundle(
        busybox_bundle(args=["sh", "-c", script], changes=changes))))
    # the last grep's status is the exit code: 1 when nothing matched
    assert got == ((1, "0\n0\n") if own_ipc else (0, "1\n1\n"))


# ---------------------------------------------------------------- user


def test_user_namespace_binds_sources_its_root_cannot_read(runtime, busybox_bundle, tmp_path):
    # the runtime opens them before the namespace exists, as runc does; a
    # relative source is the bundle's
    b = busybox_bundle(args=["sh", "-c", "cat /mnt/a/foo /mnt/b/foo"], changes={
        "linux.namespaces": namespaces(add=[{"type": "user"}]),
        "linux.uidMappings": USERNS_MAP, "linux.gidMappings": USERNS_MAP})
    spec = bundles.read_config(b)
    for name in ("a", "b"):
        d = b / f"private-{name}" / "dir"
        d.mkdir(parents=True)
        (d / "foo").write_text(name)
        os.chmod(d.parent, 0o700)
        (b / "rootfs" / "mnt" / name).mkdir(parents=True)  # its root cannot make them
        spec["mounts"].append({"source": f"private-{name}/dir", "destination": f"/mnt/{name}",
                               "options": ["bind"]})
    bundles.write_config(b, spec)
    res = runtime.run_bundle(b)
    assert res.returncode == 0 and res.stdout == "ab", res


def test_user_namespace_non_root_process(parity, busybox_bundle):
    changes = {"linux.namespaces": namespaces(add=[{"type": "user"}]),
               "linux.uidMappings": USERNS_MAP, "linux.gidMappings": USERNS_MAP,
               "process.user": {"uid": 1000, "gid": 1000}}

    def scenario(rt):
        cid = rt.new_id("usernr")
        rt.run(["run", "-d", "--bundle", busybox_bundle(args=SLEEP, changes=changes), cid])
        pid = rt.state(cid)["pid"]
        with open(f"/proc/{pid}/status") as f:
            host_view = {l.split(":")[0]: l.split()[1:] for l in f
                         if l.startswith(("Uid:", "Gid:", "CapEff:"))}
        inside = rt.run(["exec", cid, "sh", "-c",
                         "id -u; id -g; cat /proc/self/uid_map; "
                         "stat -c %u /bin/busybox; touch /bin/x"], check=False)
        rt.run(["delete", "-f", cid])
        lines = inside.stdout.splitlines()
        return (host_view, lines[:2], lines[2].split(), lines[3], inside.returncode)
    assert parity(scenario) == (
        {"Uid": ["101000"] * 4, "Gid": ["101000"] * 4, "CapEff": ["0" * 16]},
        ["1000", "1000"], ["0", "100000", "65536"],
        # host root owns the rootfs and is not mapped: it shows as nobody
        "65534", 1)


def test_user_namespace_without_root_mapped_is_refused(runtime, busybox_bundle, host):
    only_1000 = [{"containerID": 1000, "hostID": 101000, "size": 1}]
    b = busybox_bundle(args=["id", "-u"], changes={
        "linux.namespaces": namespaces(add=[{"type": "user"}]),
        "linux.uidMappings": only_1000, "linux.gidMappings": only_1000,
        "process.user": {"uid": 1000, "gid": 1000}})
    cid = runtime.new_id("noroot")
    res = runtime.run(["create", "--bundle", b, cid], check=False)
    # the container's mounts and files are made by its root; without root
    # in the map there is nobody to make them. runc: "User namespaces
    # enabled, but no user mapping found."
    assert res.returncode != 0
    assert runtime.run(["state", cid], check=False).returncode != 0
    assert host.cgroup_dirs(cid) == []
    if runtime.name == "berth":
        assert "linux.uidMappings" in res.stderr, res.stderr


# ---------------------------------------------------------------- no pivot


def test_no_pivot(parity, busybox_bundle):
    def scenario(rt):
        b = busybox_bundle()
        # the bundle's own path exists on the host, not in the container
        script = ("head -n1 /proc/self/mountinfo; "
                  "ls -A /; echo --; ls -A /../../..; echo --; ls -A /proc/1/root/; "
                  f"echo --; ls -d /work {b} 2>&1 | sed 's|{b}|BUNDLE|'")
        _patch_config(b, {"process.args": ["sh", "-c", script]})
        res = rt.run_bundle(b, extra=["--no-pivot"])
        first, rest = res.stdout.split("\n", 1)
        root, under_root, proc1_root, host = rest.split("--\n")
        fields = first.split()
        return {"rc": res.returncode,
                # the root mount is the bundle's rootfs, moved onto /
                "root mount": (fields[4], fields[3] == str(b / "rootfs")),
                "/..": under_root == root, "/proc/1/root": proc1_root == root,
                "/ is the rootfs": sorted(root.split()) == sorted(os.listdir(b / "rootfs")),
                "host paths": sorted(host.splitlines())}
    assert parity(scenario) == {
        "rc": 0, "root mount": ("/", True), "/..": True, "/proc/1/root": True,
        "/ is the rootfs": True,
        "host paths": ["ls: /work: No such file or directory",
                       "ls: BUNDLE: No such file or directory"]}


def test_no_pivot_leaves_no_bare_proc_to_mount(runtime, busybox_bundle):
    # a new user and mount namespace may mount proc only where a full,
    # uncovered one is in reach: the host's, were it left in the namespace
    b = busybox_bundle(args=["unshare", "-mrpf", "sh", "-c",
                             "mount -t proc none /proc && echo MOUNTED"])
    spec = bundles.read_config(b)
    for k in ("bounding", "permitted"):
        spec["process"]["capabilities"][k].append("CAP_SETFCAP")  # to write uid_map
    bundles.write_config(b, spec)
    res = runtime.run_bundle(b, extra=["--no-pivot"])
    assert "MOUNTED" not in res.stdout, res
    assert res.returncode != 0 and "permission denied" in res.stderr.lower(), res


# ---------------------------------------------------------------- rlimits


def test_rlimit_above_host_hard_limit_fails(runtime, busybox_bundle, host):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    b = busybox_bundle(args=["true"], changes={"process.rlimits": [
        {"type": "RLIMIT_NOFILE", "soft": hard, "hard": hard + 1}]})
    cid = runtime.new_id("rlimit")
    res = runtime.run(["create", "--bundle", b, cid], check=False)
    assert res.returncode != 0
    assert runtime.run(["state", cid], check=False).returncode != 0
    assert host.cgroup_dirs(cid) == []
    if runtime.name == "berth":
        # runc: "error setting rlimit type 7: operation not permitted"
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert "process.rlimits" in lines[0] and "RLIMIT_NOFILE" in lines[0], lines[0]
        assert "CAP_SYS_RESOURCE" in lines[0], lines[0]
        assert str(hard) in lines[0], lines[0]


def test_rlimits_lowered(parity, busybox_bundle):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    changes = {"process.rlimits": [
        {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_STACK", "soft": 4 << 20, "hard": 8 << 20}]}
    got = parity(lambda rt: out(rt.run_bundle(busybox_bundle(
        args=["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c; ulimit -Hc; ulimit -s; "
              "ulimit -n 201 2>/dev/null; echo raise=$?"],
        changes=changes))))
    assert got == (0, "100\n200\n0\n0\n4096\nraise=1\n")
    assert hard > 200  # else the test would not lower anything
