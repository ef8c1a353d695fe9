"""berth-runtime as Podman's OCI runtime (Debian's podman 4.3 and conmon):
`podman --runtime /path/to/berth-runtime run ...`. conmon drives the
runtime (create with --console-socket for -t, exec with --process, kill,
delete), so this is the path a Podman user takes.

Podman here is kept off the host's own state: storage (--root,
--runroot; overlay, or vfs when the tmp dir is itself on overlay), its
tmp dir (locks, exit files), the network config dir and containers.conf
are all in the test's tmp dir;
no network (--network none, CNI backend so nothing under
/run/containers/networks), no events log (--events-backend none), file
locks instead of /dev/shm/libpod_lock, cgroupfs with a cgroup parent
named berth-test-<session token>. Two things podman 4.3 cannot be told:
`podman load` writes containers/image's blob-info cache to
/var/lib/containers/cache (the load runs in a private mount namespace
with a tmpfs there), and conmon's exit command (`podman container
cleanup`, which deletes the runtime's state) gets no --runtime-flag, so
the runtimes keep their state in their default roots (/run/runc,
/run/berth-runtime); teardown removes what did not exist before."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgroup_cleanup import remove_cgroups
from shared_dir import FIXTURES

REPO = Path(__file__).resolve().parents[2]
# the podman set-up is bench/engine.py's too: bench/podman_isolation.py
# (appended, so nothing in bench/ shadows a test module)
sys.path.append(str(REPO / "bench"))
import podman_isolation  # noqa: E402
BERTH = os.environ.get("BERTH_RUNTIME") or str(REPO / "bin" / "berth-runtime")
RUNC = shutil.which("runc") or "/usr/sbin/runc"
RUNTIMES = {"berth": BERTH, "runc": RUNC}
# where each runtime keeps its state when podman gives it no --root
RUNTIME_ROOTS = {"berth": "/run/berth-runtime", "runc": "/run/runc"}
IMAGE = "docker.io/library/busybox:latest"
STATUS = "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; id"
CGROUP_ROOT = "/sys/fs/cgroup"
# containers.conf's [engine] has this too: podman hands runc (and now
# berth-runtime) --log-format=json --log FILE and reads the error from that file
ENGINE_CONF = 'runtime_supports_json = ["crun", "runc", "berth-runtime"]\n'
# host paths podman (or the runtimes under it) would write to by default;
# any that appears during the test is removed again
HOST_PATHS = ("/run/libpod", "/run/containers", "/var/lib/containers", "/etc/containers",
              "/etc/cni/net.d/87-podman-bridge.conflist", "/dev/shm/libpod_lock",
              *RUNTIME_ROOTS.values())

pytestmark = pytest.mark.skipif(
    shutil.which("podman") is None or shutil.which("conmon") is None,
    reason="podman comes with make deps (podman, conmon)")


def _kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(int(pid))
    return found


def _mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        mps = [line.split()[4] for line in f]
    return [mp for mp in mps if mp == path or mp.startswith(path + "/")]


class Podman:
    def __init__(self, work, token):
        self.work = work
        self.cgroup_name = f"berth-test-{token}-podman"
        self.cgroup_parent = "/" + self.cgroup_name
        self.driver, self.env, self.base = podman_isolation.setup(
            work, engine_conf=ENGINE_CONF)
        self.existed = {p: os.path.lexists(p) for p in HOST_PATHS}
        self.ids = set()

    def __call__(self, *args, timeout=60, prefix=()):
        return subprocess.run([*prefix, *self.base, *map(str, args)], env=self.env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def run(self, runtime, *args, timeout=60):
        """`podman run --runtime R --network none --cgroup-parent P ARGS`."""
        return self("run", "--runtime", RUNTIMES[runtime], "--network", "none",
                    "--cgroup-parent", self.cgroup_parent, *args, timeout=timeout)

    def load(self, tar):
        # in a mount namespace with a tmpfs for containers/image's cache
        return self("load", "-i", tar, prefix=podman_isolation.load_prefix())

    def note_ids(self):
        r = self("ps", "-a", "-q", "--no-trunc")
        self.ids |= set(r.stdout.split())

    # ------------------------------------------------------------ teardown

    def cleanup(self):
        problems = []
        self.note_ids()
        r = self("rm", "-a", "-f", "-t", "0")
        if r.returncode != 0:
            problems.append(f"podman rm -a -f: {r.stderr.strip()[-300:]}")
        # conmon and `podman container cleanup` carry our paths on their
        # command lines: none may outlive the test
        deadline = time.monotonic() + 5
        while (left := _processes_mentioning(str(self.work))) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            problems.append(f"processes left: {left}")
            _kill_pids(left)
        # runtime state of containers podman lost track of
        for name, root in RUNTIME_ROOTS.items():
            for cid in self.ids:
                if os.path.isdir(os.path.join(root, cid)):
                    problems.append(f"{name} state left: {root}/{cid}")
                    subprocess.run([RUNTIMES[name], "delete", "-f", cid],
                                   capture_output=True, timeout=15)
        cgroups = [os.path.join(CGROUP_ROOT, h, self.cgroup_name)
                   for h in os.listdir(CGROUP_ROOT)
                   if os.path.isdir(os.path.join(CGROUP_ROOT, h, self.cgroup_name))]
        # podman leaves the parent (and its conmon child) behind by design;
        # only container cgroups still in it are the test's problem
        for d in cgroups:
            busy = [c for c in os.listdir(d) if c.startswith("libpod-")]
            if busy:
                problems.append(f"container cgroups left in {d}: {busy}")
        remove_cgroups(cgroups)
        # containers/storage bind-mounts its overlay home on itself and the
        # last podman to shut down unmounts it, unless it raced another one
        # (conmon's exit command) over a layer's mount count: expected, so
        # just unmounted; a container's rootfs left mounted is a problem
        home = str(self.work / "root" / self.driver)
        for mp in sorted(_mounts_under(str(self.work)), key=len, reverse=True):
            if mp != home:
                problems.append(f"mount left: {mp}")
            subprocess.run(["umount", "-l", mp], capture_output=True)
        self._remove_new_host_paths(problems)
        return problems

    def _remove_new_host_paths(self, problems):
        for name, root in RUNTIME_ROOTS.items():
            if self.existed[root] or not os.path.isdir(root):
                continue
            # the runtime's default root, made by this test: its seccomp
            # cache and (emptied) container dirs go, the root itself only
            # if nothing else is in it
            shutil.rmtree(os.path.join(root, ".seccomp-cache"), ignore_errors=True)
            for cid in self.ids:
                shutil.rmtree(os.path.join(root, cid), ignore_errors=True)
            try:
                os.rmdir(root)
            except OSError:
                problems.append(f"{root} made during the test holds {os.listdir(root)}")
        for p in HOST_PATHS:
            if p in RUNTIME_ROOTS.values() or self.existed[p] or not os.path.lexists(p):
                continue
            problems.append(f"podman wrote {p}")
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)


@pytest.fixture(scope="module")
def podman(tmp_path_factory, session_token):
    if not os.path.exists(BERTH):
        pytest.fail(f"{BERTH} is missing: run `make build` in {REPO}")
    p = Podman(tmp_path_factory.mktemp("podman"), session_token)
    try:
        r = p.load(FIXTURES / "images" / "busybox-1.38.tar")
        assert r.returncode == 0, f"podman load: {r.stderr}"
        yield p
    finally:
        problems = p.cleanup()
    if problems:
        pytest.fail("podman test left behind:\n  " + "\n  ".join(problems))


def _ok(r):
    return r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"


def test_run_gives_what_runc_gives(podman):
    ours = podman.run("berth", "--rm", IMAGE, "sh", "-c", STATUS + "; exit 3")
    theirs = podman.run("runc", "--rm", IMAGE, "sh", "-c", STATUS + "; exit 3")
    assert theirs.returncode == 3, theirs.stderr
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), ours.stderr
    assert "Seccomp:\t2" in ours.stdout and "NoNewPrivs:\t0" in ours.stdout


def test_exit_code_propagates(podman):
    for code in (0, 1, 3, 42):
        r = podman.run("berth", "--rm", IMAGE, "sh", "-c", f"exit {code}")
        assert r.returncode == code, r.stderr


@pytest.mark.parametrize("runtime", ["berth", "runc"])
def test_detached_exec_stop_rm(podman, runtime):
    name = f"bg-{runtime}"
    r = podman.run(runtime, "-d", "--name", name, IMAGE, "sleep", "60")
    assert _ok(r)[0], _ok(r)[1]
    cid = r.stdout.strip()
    podman.ids.add(cid)
    # the container's init sits in the cgroup podman asked for, in every
    # v1 hierarchy (cgroupfs manager: <parent>/libpod-<id>)
    pid = int(podman("inspect", "-f", "{{.State.Pid}}", name).stdout)
    with open(f"/proc/{pid}/cgroup") as f:
        paths = {line.split(":", 2)[1]: line.strip().split(":", 2)[2] for line in f}
    want = f"{podman.cgroup_parent}/libpod-{cid}"
    assert paths["memory"] == want and paths["pids"] == want, paths
    r = podman("exec", name, "sh", "-c", "echo in; cat /proc/1/cmdline | tr '\\0' ' '")
    assert (r.returncode, r.stdout) == (0, "in\nsleep 60 "), r.stderr
    r = podman("exec", name, "sh", "-c", "exit 5")
    assert r.returncode == 5, r.stderr
    r = podman("stop", "-t", "1", name)
    assert _ok(r)[0], _ok(r)[1]
    assert podman("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "exited"
    r = podman("rm", name)
    assert _ok(r)[0], _ok(r)[1]
    assert not os.path.exists(os.path.join(RUNTIME_ROOTS[runtime], cid))
    assert not any(os.path.isdir(os.path.join(CGROUP_ROOT, h, want.lstrip("/")))
                   for h in os.listdir(CGROUP_ROOT))


def test_tty_through_conmons_console_socket(podman):
    # -t: conmon passes --console-socket to the runtime and reads the pty
    ours = podman.run("berth", "--rm", "-t", IMAGE, "sh", "-c", "tty; stty size")
    theirs = podman.run("runc", "--rm", "-t", IMAGE, "sh", "-c", "tty; stty size")
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.splitlines()[0] == "/dev/pts/0"
    assert ours.stdout == theirs.stdout


def test_exec_with_tty(podman):
    r = podman.run("berth", "-d", "--name", "tty-exec", IMAGE, "sleep", "60")
    assert _ok(r)[0], _ok(r)[1]
    podman.ids.add(r.stdout.strip())
    try:
        r = podman("exec", "-t", "tty-exec", "tty")
        assert (r.returncode, r.stdout.strip()) == (0, "/dev/pts/0"), r.stderr
    finally:
        assert podman("rm", "-f", "-t", "0", "tty-exec").returncode == 0


def test_start_errors_map_to_podmans_exit_codes(podman):
    """podman turns the runtime's error text into 127 (not found) or 126
    (not executable), for run and for exec: berth must say what runc says."""
    r = podman.run("berth", "-d", "--name", "errs", IMAGE, "sleep", "60")
    assert _ok(r)[0], _ok(r)[1]
    podman.ids.add(r.stdout.strip())
    try:
        for args, code in ((["/nonexistent"], 127), (["nosuchcmd"], 127), (["/etc/passwd"], 126)):
            for runtime in ("runc", "berth"):
                r = podman.run(runtime, "--rm", IMAGE, *args)
                assert r.returncode == code, f"{runtime} run {args}: {r.stderr}"
            r = podman("exec", "errs", *args)
            assert r.returncode == code, f"exec {args}: {r.stderr}"
        assert "executable file not found" in podman("exec", "errs", "nosuchcmd").stderr
    finally:
        assert podman("rm", "-f", "-t", "0", "errs").returncode == 0


def test_pause_update_restart(podman):
    r = podman.run("berth", "-d", "--name", "ops", IMAGE, "sleep", "60")
    assert _ok(r)[0], _ok(r)[1]
    podman.ids.add(r.stdout.strip())

    def status():
        return podman("inspect", "-f", "{{.State.Status}}", "ops").stdout.strip()
    try:
        assert _ok(podman("pause", "ops"))[0] and status() == "paused"
        assert _ok(podman("unpause", "ops"))[0] and status() == "running"
        r = podman("update", "--memory", "64m", "ops")
        assert _ok(r)[0], _ok(r)[1]
        r = podman("exec", "ops", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
        assert (r.returncode, r.stdout.strip()) == (0, str(64 << 20)), r.stderr
        r = podman("restart", "-t", "0", "ops")
        assert _ok(r)[0], _ok(r)[1]
        assert status() == "running"
        assert podman("exec", "ops", "true").returncode == 0
    finally:
        assert podman("rm", "-f", "-t", "0", "ops").returncode == 0
