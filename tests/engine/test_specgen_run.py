"""Specs from engine/specgen run under berth-runtime and runc, and the
container sees what the spec promised: capabilities, no_new_privs,
seccomp, the ping sysctl, the named user, a read-only root."""
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from berth.engine.specgen import RunOptions, generate
from berth.engine.specgen.security import DEFAULT_CAPS
from berth.oci import jsonio
from berth.sys import caps as captab

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

REPO = Path(__file__).resolve().parents[2]
RUNTIMES = {"berth": str(REPO / "bin" / "berth-runtime"), "runc": "runc"}
APPLETS = ("sh", "cat", "grep", "id", "touch", "unshare", "mount", "echo", "hostname", "true")
IMAGE = {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"}


@pytest.fixture(scope="module")
def rootfs_src(tmp_path_factory):
    """Debian's busybox, its applets, root and a user 'app' (uid 1000)."""
    root = tmp_path_factory.mktemp("specgen-rootfs") / "rootfs"
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "mnt", "home/app"):
        (root / d).mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for name in APPLETS:
        (root / "bin" / name).symlink_to("busybox")
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
    return root


@pytest.fixture(params=sorted(RUNTIMES))
def run(request, tmp_path, rootfs_src, session_token):
    """run(opts, script) -> (exit code, stdout, stderr, id) of one container."""
    binary = RUNTIMES[request.param]
    state = tmp_path / "state"
    # a parent of our own: runtimes remove the container's cgroup on
    # delete but leave its parent, which teardown then removes
    parent = f"berth-test-{session_token}-specgen-{request.param}"
    made = []

    def _run(opts, script):
        cid = f"berth-test-{session_token}-specgen-{secrets.token_hex(3)}"
        bundle = tmp_path / cid
        bundle.mkdir()
        subprocess.run(["cp", "-a", str(rootfs_src), str(bundle / "rootfs")], check=True)
        opts.container_id = cid
        opts.cgroup_parent = "/" + parent
        opts.cmd = ["sh", "-c", script]
        spec = generate(IMAGE, opts, str(bundle / "rootfs"))
        (bundle / "config.json").write_text(jsonio.dumps(spec))
        made.append(cid)
        p = subprocess.run([binary, "--root", str(state), "run", "--bundle", str(bundle), cid],
                           capture_output=True, text=True, timeout=20,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr, cid

    yield _run
    for cid in made:
        subprocess.run([binary, "--root", str(state), "delete", "-f", cid],
                       capture_output=True, timeout=20)
    for d in cgroup_dirs(parent):
        os.rmdir(d)


def cgroup_dirs(name):
    """name at the top of each hierarchy and, where runc nests v1 memory
    cgroups, under this process's own cgroup; deepest first."""
    found = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(top) == name:
            found.append(top)
            dirs[:] = []
        elif top.count("/") > 7:
            dirs[:] = []
    return sorted(found, key=len, reverse=True)


def host_bounding():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)


def mask(names):
    m = 0
    for n in names:
        m |= 1 << captab.number(n)
    return m


def fields(out):
    """"key: value" lines of the container's report."""
    return {k.strip(): v.strip() for k, _, v in
            (line.partition(":") for line in out.splitlines()) if k}


SCRIPT_DEFAULTS = (
    "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; "
    "unshare -U true 2>/dev/null; echo unshare: $?; "
    "mount -t tmpfs none /mnt 2>/dev/null; echo mount: $?; "
    "echo ping: $(cat /proc/sys/net/ipv4/ping_group_range); "
    "echo ports: $(cat /proc/sys/net/ipv4/ip_unprivileged_port_start); "
    "echo host: $(hostname); echo uid: $(id -u)"
)


def test_defaults_inside(run):
    code, out, err, cid = run(RunOptions(), SCRIPT_DEFAULTS)
    assert code == 0, err
    f = fields(out)
    expected = mask(DEFAULT_CAPS)
    assert int(f["CapEff"], 16) == expected
    assert int(f["CapBnd"], 16) == expected
    assert not int(f["CapEff"], 16) & mask(["CAP_NET_RAW", "CAP_MKNOD", "CAP_SYS_ADMIN"])
    assert f["NoNewPrivs"] == "1"
    assert f["Seccomp"] == "2"
    assert f["unshare"] != "0"
    assert f["mount"] != "0"
    assert f["ping"].split() == ["0", "2147483647"]
    assert f["ports"] == "0"
    assert f["host"] == cid[:12]
    assert f["uid"] == "0"


def test_cap_add_and_nnp_off(run):
    opts = RunOptions(cap_add=["NET_RAW"], cap_drop=["CAP_CHOWN"],
                      security_opt=["no-new-privileges:false"])
    code, out, err, _ = run(opts, "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status")
    assert code == 0, err
    f = fields(out)
    want = mask([c for c in DEFAULT_CAPS if c != "CAP_CHOWN"] + ["CAP_NET_RAW"])
    assert int(f["CapEff"], 16) == want
    assert f["NoNewPrivs"] == "0"


def test_named_user_and_read_only_root(run):
    opts = RunOptions(user="app", read_only=True)
    code, out, err, _ = run(opts, "echo id: $(id -u):$(id -g):$(id -G); "
                               "touch /newfile 2>/dev/null; echo touch: $?; "
                               "touch /dev/shm/ok; echo shm: $?; "
                               "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status")
    assert code == 0, err
    f = fields(out)
    uid, gid, groups = f["id"].split(":")
    assert (uid, gid) == ("1000", "1000")
    assert "50" in groups.split()
    assert f["touch"] != "0"
    assert f["shm"] == "0"
    assert int(f["CapEff"], 16) == 0
    assert f["NoNewPrivs"] == "1"


def test_default_pids_limit_and_memory_limit(run):
    opts = RunOptions(memory=64 << 20)
    code, out, err, _ = run(opts, "echo pids: $(cat /sys/fs/cgroup/pids/pids.max); "
                                  "echo mem: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)")
    assert code == 0, err
    f = fields(out)
    assert f["pids"] == "4096"
    assert f["mem"] == str(64 << 20)


def test_privileged(run):
    code, out, err, _ = run(RunOptions(privileged=True),
                            "grep -E '^(CapEff|Seccomp):' /proc/self/status; "
                            "mount -t tmpfs none /mnt; echo mount: $?")
    assert code == 0, err
    f = fields(out)
    # everything the host itself holds (it may lack e.g. CAP_SYS_RESOURCE)
    assert int(f["CapEff"], 16) == host_bounding()
    assert f["Seccomp"] == "0"
    assert f["mount"] == "0"
