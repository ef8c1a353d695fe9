"""The same scenario against runc and berth-runtime: what the process inside
sees must match. Each test states the expected result explicitly (so it can
fail against runc too); `parity` additionally compares berth with runc."""
import os

import pytest

import bundle as bundles
from shared_dir import SECCOMP_PROFILE

# capability numbers (linux/capability.h) for the sets the tests use
CAP = {"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10,
       "CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_AUDIT_WRITE": 29}
STATUS_KEYS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
               "NoNewPrivs", "Seccomp")
NO_PIDNS = [{"type": "mount"}, {"type": "uts"}, {"type": "ipc"},
            {"type": "network"}]
SECCOMP_ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
TMPFS_TMP = {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]}


def mask(names):
    return f"{sum(1 << CAP[n] for n in names):016x}"


def out(res):
    """(exit code, stdout) of a foreground run; the pair users compare."""
    return res.returncode, res.stdout


def run_in(rt, make, args, changes=None):
    return rt.run_bundle(make(args=args, changes=changes))


def with_namespace(kind):
    spec = bundles.base_spec()
    return spec["linux"]["namespaces"] + [{"type": kind}]


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize("script,code", [("exit 7", 7), ("true", 0),
                                         ("exit 255", 255)])
def test_exit_code(parity, busybox_bundle, script, code):
    got = parity(lambda rt: out(run_in(rt, busybox_bundle, ["sh", "-c", script])))
    assert got == (code, "")


def test_exit_code_missing_executable(parity, busybox_bundle):
    rc, stdout = parity(lambda rt: out(run_in(rt, busybox_bundle, ["/bin/nope"])))
    assert rc != 0 and stdout == ""


@pytest.mark.parametrize("sig,code", [("KILL", 137), ("TERM", 143)])
def test_killed_by_own_signal(parity, busybox_bundle, sig, code):
    # without a pid namespace the shell is not init, so its own signal kills it
    got = parity(lambda rt: out(run_in(
        rt, busybox_bundle, ["sh", "-c", f"kill -{sig} $$; sleep 5"],
        {"linux.namespaces": NO_PIDNS})))
    assert got == (code, "")


def test_killed_from_outside(parity, busybox_bundle):
    def scenario(rt):
        cid = rt.new_id("sigkill")
        fg = rt.spawn(["run", "--bundle", busybox_bundle(args=["sleep", "60"]), cid])
        rt.wait_status(cid, "running")
        rt.run(["kill", cid, "KILL"])
        return fg.wait().returncode
    assert parity(scenario) == 137


def test_signal_reaches_init_handler(parity, busybox_bundle):
    script = 'trap "exit 3" TERM; echo ready; while :; do sleep 0.05; done'

    def scenario(rt):
        cid = rt.new_id("sigterm")
        fg = rt.spawn(["run", "--bundle",
                       busybox_bundle(args=["sh", "-c", script]), cid])
        rt.wait_status(cid, "running")
        # the trap exists once the shell has printed
        for _ in range(200):
            if fg.out.read_text():
                break
            import time
            time.sleep(0.01)
        rt.run(["kill", cid, "TERM"])
        return out(fg.wait())
    assert parity(scenario) == (3, "ready\n")


# ---------------------------------------------------------------- credentials


def status_lines(rt, make, changes=None):
    res = run_in(rt, make, ["cat", "/proc/self/status"], changes)
    assert res.returncode == 0, res
    wanted = {}
    for line in res.stdout.splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_KEYS:
            wanted[key] = value.strip()
    return wanted


def test_capabilities_default_spec(parity, busybox_bundle):
    got = parity(lambda rt: status_lines(rt, busybox_bundle))
    default = mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
    # runc spec lists ambient caps but no inheritable ones: the kernel
    # refuses ambient caps that are not inheritable, so none are raised
    assert got == {"CapInh": "0" * 16, "CapPrm": default, "CapEff": default,
                   "CapBnd": default, "CapAmb": "0" * 16,
                   "NoNewPrivs": "1", "Seccomp": "0"}


def test_capabilities_modified(parity, busybox_bundle):
    full = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
    changes = {"process.capabilities": {
        "bounding": full, "permitted": full, "effective": ["CAP_CHOWN", "CAP_KILL"],
        "inheritable": ["CAP_CHOWN"], "ambient": ["CAP_CHOWN"]},
        "process.noNewPrivileges": False}
    got = parity(lambda rt: status_lines(rt, busybox_bundle, changes))
    # execve as uid 0 raises effective to the whole permitted set
    assert got == {"CapInh": mask(["CAP_CHOWN"]), "CapPrm": mask(full),
                   "CapEff": mask(full),
                   "CapBnd": mask(full), "CapAmb": mask(["CAP_CHOWN"]),
                   "NoNewPrivs": "0", "Seccomp": "0"}


def test_capabilities_none(parity, busybox_bundle):
    changes = {"process.capabilities": {}}
    got = parity(lambda rt: status_lines(rt, busybox_bundle, changes))
    zero = "0" * 16
    assert got == {"CapInh": zero, "CapPrm": zero, "CapEff": zero,
                   "CapBnd": zero, "CapAmb": zero, "NoNewPrivs": "1",
                   "Seccomp": "0"}


def test_id_root(parity, busybox_bundle):
    got = parity(lambda rt: out(run_in(rt, busybox_bundle, ["id"])))
    assert got == (0, "uid=0(root) gid=0(root)\n")


def test_user_and_additional_gids(parity, busybox_bundle):
    changes = {"process.user": {"uid": 1000, "gid": 1000,
                                "additionalGids": [10, 100]}}
    got = parity(lambda rt: out(run_in(
        rt, busybox_bundle, ["sh", "-c", "id -u; id -g; id -G; id -un"], changes)))
    assert got == (0, "1000\n1000\n1000 10 100\nuser\n")


def test_non_root_user_has_no_capabilities(parity, busybox_bundle):
    changes = {"process.user": {"uid": 1000, "gid": 1000}}
    got = parity(lambda rt: status_lines(rt, busybox_bundle, changes))
    assert got["CapEff"] == "0" * 16 and got["CapPrm"] == "0" * 16
    assert got["CapBnd"] == mask(["CAP_AUDIT_WRITE", "CAP_KILL",
                                  "CAP_NET_BIND_SERVICE"])


@pytest.mark.parametrize("maps,expected", [
    ([(0, 100000, 65536)], [("0", "100000", "65536")]),
    ([(0, 100000, 1), (1, 200000, 999), (1000, 300000, 1)],
     [("0", "100000", "1"), ("1", "200000", "999"), ("1000", "300000", "1")]),
], ids=["single", "multi"])
def test_user_namespace_maps(parity, busybox_bundle, maps, expected):
    m = [{"containerID": c, "hostID": h, "size": s} for c, h, s in maps]
    changes = {"linux.namespaces": with_namespace("user"),
               "linux.uidMappings": m, "linux.gidMappings": m}

    def scenario(rt):
        res = run_in(rt, busybox_bundle, ["sh", "-c",
                     "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; "
                     "echo --; id -u"], changes)
        uid, _, rest = res.stdout.partition("--\n")
        gid, _, me = rest.partition("--\n")
        return (res.returncode, [tuple(l.split()) for l in uid.splitlines()],
                [tuple(l.split()) for l in gid.splitlines()], me)
    assert parity(scenario) == (0, expected, expected, "0\n")


def test_user_namespace_host_view(parity, busybox_bundle):
    """The container's root is host uid 100000 seen from outside."""
    m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    changes = {"linux.namespaces": with_namespace("user"),
               "linux.uidMappings": m, "linux.gidMappings": m}

    def scenario(rt):
        cid = rt.new_id("userns")
        b = busybox_bundle(args=["sleep", "60"], changes=changes)
        rt.run(["run", "-d", "--bundle", b, cid])
        pid = rt.state(cid)["pid"]
        with open(f"/proc/{pid}/status") as f:
            ids = {l.split(":")[0]: l.split()[1:] for l in f
                   if l.startswith(("Uid:", "Gid:"))}
        rt.run(["delete", "-f", cid])
        return ids
    assert parity(scenario) == {"Uid": ["100000"] * 4, "Gid": ["100000"] * 4}


# ---------------------------------------------------------------- names, env


def test_hostname(parity, busybox_bundle):
    got = parity(lambda rt: out(run_in(rt, busybox_bundle, ["hostname"],
                                       {"hostname": "berth-box"})))
    assert got == (0, "berth-box\n")


def test_env(parity, busybox_bundle):
    env = ["PATH=/bin", "FOO=bar baz", "EMPTY=", "X=a=b"]

    def scenario(rt):
        res = run_in(rt, busybox_bundle, ["env"], {"process.env": env})
        return res.returncode, sorted(res.stdout.splitlines())
    # HOME comes from /etc/passwd when the spec does not set it
    assert parity(scenario) == (0, sorted(env + ["HOME=/root"]))


def test_env_home_of_user(parity, busybox_bundle):
    def scenario(rt):
        res = run_in(rt, busybox_bundle, ["env"],
                     {"process.env": ["PATH=/bin"],
                      "process.user": {"uid": 1000, "gid": 1000}})
        return res.returncode, sorted(res.stdout.splitlines())
    assert parity(scenario) == (0, ["HOME=/home/user", "PATH=/bin"])


@pytest.mark.parametrize("cwd", ["/etc", "/made/by/runtime"])
def test_cwd(parity, busybox_bundle, cwd):
    got = parity(lambda rt: out(run_in(rt, busybox_bundle, ["pwd"],
                                       {"process.cwd": cwd})))
    assert got == (0, cwd + "\n")


def test_rlimits(parity, busybox_bundle):
    changes = {"process.rlimits": [
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
        {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400}]}
    got = parity(lambda rt: out(run_in(
        rt, busybox_bundle, ["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u"],
        changes)))
    assert got == (0, "512\n1000\n300\n")


@pytest.mark.parametrize("umask,shown", [(None, "0022"), (0o027, "0027"),
                                         (0o077, "0077")])
def test_umask(parity, busybox_bundle, umask, shown):
    changes = {} if umask is None else {"process.user.umask": umask}
    got = parity(lambda rt: out(run_in(rt, busybox_bundle, ["sh", "-c", "umask"],
                                       changes)))
    assert got == (0, shown + "\n")


def test_sysctl_in_network_namespace(parity, busybox_bundle):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_before = f.read()
    got = parity(lambda rt: out(run_in(
        rt, busybox_bundle, ["cat", "/proc/sys/net/ipv4/ip_forward"],
        {"linux.sysctl": {"net.ipv4.ip_forward": "1"}})))
    assert got == (0, "1\n")
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host_before


def test_sysctl_default_untouched(parity, busybox_bundle):
    # a new network namespace starts from the host's IPv4 settings
    # (devconf_inherit_init_net=0); the runtime must not change them
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host = f.read()
    got = parity(lambda rt: out(run_in(
        rt, busybox_bundle, ["cat", "/proc/sys/net/ipv4/ip_forward"])))
    assert got == (0, host)


# ---------------------------------------------------------------- filesystem


def normalised_mounts(text):
    """[(mount point, "ro|rw[,nosuid][,nodev][,noexec]")] sorted."""
    rows = []
    for line in text.splitlines():
        f = line.split()
        opts = f[5].split(",")
        flags = ["ro" if "ro" in opts else "rw"]
        flags += [o for o in ("nosuid", "nodev", "noexec") if o in opts]
        rows.append((f[4], ",".join(flags)))
    return sorted(rows)


def _berth_cgroup_differences(mounts):
    """berth's two deliberate differences from runc 1.1 under a v1/hybrid
    host, undone so the rest compares exactly: the /sys/fs/cgroup tmpfs is
    read-only too (runc leaves it writable), and on hybrid hosts the
    container's own cgroup2 directory is there as /sys/fs/cgroup/unified."""
    table = dict(mounts)
    assert table.get("/sys/fs/cgroup") == "ro,nosuid,nodev,noexec", table.get("/sys/fs/cgroup")
    out = [(p, "rw,nosuid,nodev,noexec" if p == "/sys/fs/cgroup" else o)
           for p, o in mounts if p != "/sys/fs/cgroup/unified"]
    if os.path.isdir("/sys/fs/cgroup/unified"):
        assert table.get("/sys/fs/cgroup/unified") == "ro,nosuid,nodev,noexec"
    return out


def test_mounts(parity, runtime, busybox_bundle):
    def scenario(rt):
        res = run_in(rt, busybox_bundle, ["cat", "/proc/self/mountinfo"])
        mounts = normalised_mounts(res.stdout)
        if rt.name == "berth":
            mounts = _berth_cgroup_differences(mounts)
        return res.returncode, mounts
    rc, mounts = parity(scenario)
    assert rc == 0
    table = dict(mounts)
    assert table["/"] == "ro"
    # runc spec's options, mount by mount
    assert table["/proc"] == "rw"
    assert table["/dev"] == "rw,nosuid"
    assert table["/dev/pts"] == "rw,nosuid,noexec"
    assert table["/dev/shm"] == "rw,nosuid,nodev,noexec"
    assert table["/dev/mqueue"] == "rw,nosuid,nodev,noexec"
    assert table["/sys"] == "ro,nosuid,nodev,noexec"
    assert table["/sys/fs/cgroup/memory"] == "ro,nosuid,nodev,noexec"
    # readonly and masked paths show up as mounts of their own
    for path in ("/proc/sys", "/proc/irq", "/proc/bus", "/sys/firmware"):
        assert table[path] == "ro", path
    assert "/proc/timer_list" in table


def test_mounts_extra_bind_and_tmpfs(parity, busybox_bundle, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(exist_ok=True)
    (shared / "hello").write_text("hi\n")
    changes = {"mounts": bundles.base_spec()["mounts"] + [
        {"destination": "/data", "type": "bind", "source": str(shared),
         "options": ["rbind", "ro"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "noexec", "size=1m"]}]}

    def scenario(rt):
        res = run_in(rt, busybox_bundle, ["sh", "-c",
                     "cat /data/hello; grep -E ' /(data|scratch) ' /proc/self/mountinfo"],
                     changes)
        first, _, rest = res.stdout.partition("\n")
        return res.returncode, first, normalised_mounts(rest)
    assert parity(scenario) == (0, "hi", [("/data", "ro"),
                                          ("/scratch", "rw,nosuid,noexec")])


def test_ps_inside(parity, busybox_bundle):
    def scenario(rt):
        res = run_in(rt, busybox_bundle, ["ps", "-o", "pid,comm"])
        return res.returncode, [l.split() for l in res.stdout.splitlines()]
    assert parity(scenario) == (0, [["PID", "COMMAND"], ["1", "ps"]])


def test_masked_paths(parity, busybox_bundle):
    script = ("wc -c < /proc/timer_list; stat -c %t:%T /proc/timer_list; "
              "ls -A /sys/firmware | wc -l; "
              "test -e /proc/kcore && wc -c < /proc/kcore || echo absent")
    got = parity(lambda rt: out(run_in(rt, busybox_bundle, ["sh", "-c", script])))
    kcore = "0" if os.path.exists("/proc/kcore") else "absent"
    assert got == (0, f"0\n1:3\n0\n{kcore}\n")


def test_readonly_paths(parity, busybox_bundle):
    script = "echo x > /proc/sys/kernel/domainname; echo rc=$?"

    def scenario(rt):
        res = run_in(rt, busybox_bundle, ["sh", "-c", script])
        return res.returncode, res.stdout, "Read-only file system" in res.stderr
    assert parity(scenario) == (0, "rc=1\n", True)


@pytest.mark.parametrize("readonly", [True, False])
def test_readonly_rootfs(parity, busybox_bundle, readonly):
    def scenario(rt):
        res = run_in(rt, busybox_bundle, ["touch", "/newfile"],
                     {"root.readonly": readonly})
        return res.returncode, "Read-only file system" in res.stderr
    assert parity(scenario) == ((1, True) if readonly else (0, False))


# ---------------------------------------------------------------- seccomp


@pytest.mark.parametrize("errno_ret,message", [
    (None, "Operation not permitted"), (13, "Permission denied")])
def test_seccomp_blocks_mkdir(parity, busybox_bundle, errno_ret, message):
    rule = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}
    if errno_ret is not None:
        rule["errnoRet"] = errno_ret
    changes = {
        "mounts": bundles.base_spec()["mounts"] + [TMPFS_TMP],
        "linux.seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                          "architectures": SECCOMP_ARCHES, "syscalls": [rule]}}
    script = ("mkdir /tmp/d; echo rc=$?; touch /tmp/f && echo touched; "
              "grep '^Seccomp:' /proc/self/status")

    def scenario(rt):
        res = run_in(rt, busybox_bundle, ["sh", "-c", script], changes)
        return res.returncode, res.stdout, message in res.stderr
    assert parity(scenario) == (0, "rc=1\ntouched\nSeccomp:\t2\n", True)


def test_seccomp_default_errno(parity, busybox_bundle):
    """An allow-list profile: everything not named fails with EPERM."""
    import json
    with open(SECCOMP_PROFILE) as f:
        docker = json.load(f)
    names = sorted({n for s in docker["syscalls"] if s["action"] == "SCMP_ACT_ALLOW"
                    for n in s["names"]} - {"mkdir", "mkdirat"})
    changes = {
        "mounts": bundles.base_spec()["mounts"] + [TMPFS_TMP],
        "linux.seccomp": {"defaultAction": "SCMP_ACT_ERRNO",
                          "architectures": SECCOMP_ARCHES,
                          "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}}

    def scenario(rt):
        res = run_in(rt, busybox_bundle, ["sh", "-c", "mkdir /tmp/d; echo rc=$?"],
                     changes)
        return res.returncode, res.stdout, "Operation not permitted" in res.stderr
    assert parity(scenario) == (0, "rc=1\n", True)


# ---------------------------------------------------------------- images


def test_alpine_image(parity, image_bundle):
    def scenario(rt):
        b = image_bundle(args=["sh", "-c", "cat /etc/alpine-release; "
                               "touch /root/x && ls /root"],
                         changes={"root.readonly": False})
        return out(rt.run_bundle(b))
    rc, stdout = parity(scenario)
    release, listing = stdout.splitlines()
    assert rc == 0 and release.startswith("3.20.") and listing == "x"


def test_images_run(parity, image_bundle):
    def scenario(rt):
        results = {}
        for image in ("alpine-3.10", "alpine-3.20", "busybox-1.38"):
            b = image_bundle(args=["sh", "-c", "echo $PATH; id -u; ls /bin | wc -l"],
                             image=image, changes={"root.readonly": False})
            results[image] = out(rt.run_bundle(b))
        return results
    got = parity(scenario)
    for image, (rc, stdout) in got.items():
        path, uid, count = stdout.splitlines()
        assert rc == 0 and uid == "0" and "/bin" in path, (image, stdout)
        assert int(count) > 10, (image, stdout)


def test_cgroup_namespace_view(parity, busybox_bundle):
    # with a cgroup namespace the container's own cgroup is its root, and
    # /sys/fs/cgroup shows its own limits, not the host's
    changes = {"linux.namespaces": with_namespace("cgroup"),
               "linux.resources": {"pids": {"limit": 20}}}
    got = parity(lambda rt: out(run_in(rt, busybox_bundle, ["sh", "-c",
                 "grep -E '^[0-9]+:pids:' /proc/self/cgroup; cat /sys/fs/cgroup/pids/pids.max"],
                 changes)))
    assert got[0] == 0
    assert got[1].split("\n")[0].endswith(":pids:/")
    assert got[1].split("\n")[1] == "20"
