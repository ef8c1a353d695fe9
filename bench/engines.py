"""The engines bench/engine.py (and net.py, escapes.py) measure: a berthd,
a dockerd+containerd and Debian's podman of our own under a temporary
directory, each driven through the docker CLI (podman through its own),
and the helpers that find their processes, memory, mounts and cgroups."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
PYTHON = REPO / ".venv" / "bin" / "python"
BERTHD = REPO / "bin" / "berthd"
sys.path[:0] = [str(HERE), str(REPO / "tests")]
from image_load import Dockerd  # noqa: E402
import podman_isolation  # noqa: E402
from procutil import alive, children, ppid, stop  # noqa: E402
from shared_dir import FIXTURES  # noqa: E402
from retry import START_TIMEOUTS  # noqa: E402

ALPINE = FIXTURES / "images" / "alpine-3.20.tar"
IMAGE = "alpine"  # the fixture loads as alpine:latest
ENGINES = ["docker", "podman", "berth"]
CGROUP_ROOT = "/sys/fs/cgroup"
BERTH_CGROUP = f"/berth-bench-{os.getpid()}"
DOCKER_CGROUP = f"/berth-bench-{os.getpid()}-docker"
PODMAN_CGROUP = f"/berth-bench-{os.getpid()}-podman"
# host paths podman (or the runtimes under it) writes by default; any entry
# that appears during the bench is removed again (see PodmanEngine.cleanup)
PODMAN_HOST_PATHS = ("/run/libpod", "/run/containers", "/var/lib/containers", "/etc/containers",
                     "/etc/cni/net.d", "/dev/shm/libpod_lock")
# where the OCI runtimes keep their state: conmon's exit command (`podman
# container cleanup`) gets no runtime flags, so podman 4.3 leaves the default
PODMAN_RUNTIME_ROOTS = ("/run/crun", "/run/runc")
PODMAN_ENGINE_CONF = 'runtime = "runc"  # crun 1.8 refuses hybrid cgroups ("drop all controllers")\n'
# the goals: (the peer, the most berth may take of it)
GOALS = {"run": ("docker", 0.25), "exec": ("docker", 0.5), "shim PSS": ("podman", 1.0)}
LABEL = "berth-bench=1"


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


# -- small helpers -----------------------------------------------------------

class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=120):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def api(sock, method, path, body=None, timeout=120):
    """(status, parsed JSON or raw bytes) of one request over a Unix socket."""
    conn = UnixHTTP(str(sock), timeout)
    try:
        headers = {}
        if body is not None:
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data) if data.strip() else None
        except ValueError:
            return resp.status, data
    finally:
        conn.close()


def mem(pid):
    """{"rss", "pss", "uss"} in KiB from /proc/<pid>/smaps_rollup, or None."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except OSError:
        return None
    kb = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            kb[key] = int(rest.split()[0])
    return {"rss": kb.get("Rss", 0), "pss": kb.get("Pss", 0),
            "uss": kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)}


def mem_sum(pids):
    out = {"rss": 0, "pss": 0, "uss": 0}
    for pid in pids:
        m = mem(pid) or {}
        for k in out:
            out[k] += m.get(k, 0)
    return out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def tree(pid):
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def kill_pids(pids, timeout=5):
    """SIGTERM, then SIGKILL what is left: only pids found as ours."""
    pids = [p for p in pids if alive(p)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in pids if alive(p)]
            if not pids:
                return
            time.sleep(0.05)


def unmount_under(root):
    root = str(Path(root).resolve())
    for _ in range(3):
        points = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if mp == root or mp.startswith(root + "/"):
                    points.append(mp)
        if not points:
            return
        for mp in sorted(set(points), key=len, reverse=True):
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)


def remove_cgroup(parent):
    """Kill whatever is left in /sys/fs/cgroup/*/<parent> (ours only: the name
    must start with berth-bench) and remove it, children first."""
    name = parent.strip("/")
    if not name.startswith("berth-bench"):
        raise ValueError(f"refusing to remove cgroup {parent}")
    dirs = []
    for hier in os.listdir(CGROUP_ROOT):
        top = os.path.join(CGROUP_ROOT, hier, name)
        if os.path.isdir(top):
            dirs += [d for d, _, _ in os.walk(top)]
    dirs.sort(key=len, reverse=True)
    for d in dirs:
        for f, v in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            try:
                with open(os.path.join(d, f), "w") as fh:
                    fh.write(v)
            except OSError:
                pass
    for d in dirs:
        for _ in range(100):
            try:
                with open(os.path.join(d, "cgroup.procs")) as fh:
                    for pid in fh.read().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except (ProcessLookupError, ValueError):
                            pass
            except OSError:
                pass
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


# -- the engines ---------------------------------------------------------------

class Engine:
    """What the scenarios need of either engine: the docker CLI pointed at it,
    the daemon's processes, and its shims."""
    name = "?"
    cli = shutil.which("docker") or "docker"

    def docker_argv(self, *args):
        return [self.cli, *map(str, args)]

    def docker(self, *args, timeout=300, check=True):
        r = subprocess.run(self.docker_argv(*args), env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            last = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
            raise RuntimeError(f"{self.name}: {Path(self.cli).name} "
                               f"{' '.join(map(str, args))}: {last[:300]}")
        return r

    def timed(self, *args):
        """Seconds one command took; a command that fails is run once more
        (a loaded host drops the odd one), and only a success is timed."""
        for attempt in (1, 2):
            t0 = time.perf_counter()
            try:
                self.docker(*args)
                return time.perf_counter() - t0
            except (RuntimeError, subprocess.TimeoutExpired):
                if attempt == 2:
                    raise
                time.sleep(1)

    def containers(self):
        r = self.docker("ps", "-aq", "--no-trunc", check=False, timeout=60)
        return r.stdout.split() if r.returncode == 0 else []

    def remove_all(self):
        ids = self.containers()
        for i in range(0, len(ids), 50):
            self.docker("rm", "-f", *ids[i:i + 50], check=False, timeout=300)


class BerthEngine(Engine):
    """A berthd of our own under `work` (also bench/net.py's, with its own
    cgroup parent)."""
    name = "berth"

    def __init__(self, work, cgroup_parent=None, monitor=""):
        self.work = Path(work)
        self.cgroup_parent = cgroup_parent or BERTH_CGROUP
        self.monitor = monitor   # berthd's --monitor: "" its default, "none" the Python shim
        self.sock = self.work / "berth.sock"
        self.log = self.work / "berthd.log"
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                        DOCKER_CONFIG=str(self.work / "cli"))
        for k in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            self.env.pop(k, None)
        self.proc = None

    def start(self, timeout=START_TIMEOUTS[0]):
        for d in ("etc", "cli"):
            (self.work / d).mkdir(parents=True, exist_ok=True)
        argv = [str(BERTHD), "-H", f"unix://{self.sock}", "--data-root", str(self.work / "lib"),
                "--exec-root", str(self.work / "run"), "--config-dir", str(self.work / "etc"),
                "--group", "root", "--cgroup-parent", self.cgroup_parent]
        if self.monitor:
            argv += ["--monitor", self.monitor]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berthd exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if api(self.sock, "GET", "/_ping", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"berthd did not answer in {timeout}s: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self):
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-3:])[-600:]
        except OSError:
            return "(no log)"

    def daemon_pids(self):
        return [self.proc.pid] if self.proc else []

    def shim_pids(self):
        """Each container's monitor: berth-monitor, exec'd by a fork of the
        shim zygote (berth-shim with --monitor none), the zygote's child
        while berthd runs and init's after, found by a path under our exec
        root in its argv; the zygote itself, berthd's child, is not one."""
        run = str(self.work / "run") + "/"
        out = []
        for pid in all_pids():
            argv = cmdline(pid)
            if any(a.endswith(("berth-shim", "berth-monitor")) for a in argv[:3]) and \
                    any(a.startswith(run) for a in argv) and alive(pid) and \
                    ppid(pid) != (self.proc.pid if self.proc else None):
                out.append(pid)
        return out

    def stop(self):
        if self.proc is None:
            return
        stop(self.proc, 20)
        self.proc = None


class DockerEngine(Engine):
    name = "docker"

    def __init__(self, work):
        self.d = Dockerd(work, extra_args=["--cgroup-parent", DOCKER_CGROUP])
        self.work = self.d.work
        self.sock = self.d.sock
        self.env = dict(self.d.env, DOCKER_HOST=f"unix://{self.sock}")
        for k in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            self.env.pop(k, None)

    def start(self, timeout=START_TIMEOUTS[0]):
        self.d.start(timeout=timeout)

    def containerd_pid(self):
        try:
            return int((self.work / "exec" / "containerd" / "containerd.pid").read_text())
        except (OSError, ValueError):
            return None

    def daemon_pids(self):
        pids = [self.d.proc.pid] if self.d.proc else []
        ctr = self.containerd_pid()
        if ctr and ctr not in pids:
            pids.append(ctr)
        return pids

    def shim_pids(self):
        """containerd-shim-runc-v2 of our containerd: reparented to init, so
        found by cmdline: namespace moby and our containerd's address."""
        addr = str(self.work / "exec") + "/"
        out = []
        for pid in all_pids():
            argv = cmdline(pid)
            if argv and argv[0].endswith("containerd-shim-runc-v2") and "moby" in argv and \
                    any(a.startswith(addr) for a in argv) and alive(pid):
                out.append(pid)
        return out

    def stop(self):
        self.d.stop()


def _tree_entries(path):
    """Every path under `path` (itself included), or an empty set."""
    if not os.path.lexists(path):
        return set()
    out = {path}
    for d, subdirs, files in os.walk(path):
        out |= {os.path.join(d, n) for n in subdirs + files}
    return out


class PodmanEngine(Engine):
    """Debian's podman with everything it would write kept under `work`, as
    tests/runtime/test_dropin_podman.py runs it. No daemon: every command is
    a fresh podman process, each container has its own conmon."""
    name = "podman"
    cli = shutil.which("podman") or "podman"

    def __init__(self, work):
        self.work = Path(work)
        self.ids = set()
        self.problems = []
        self.host_before = {}
        self.runtime_before = {}

    @staticmethod
    def missing():
        """Why podman cannot be measured here, or None."""
        for tool in ("podman", "conmon"):
            if not shutil.which(tool):
                return f"{tool} is not installed (make deps installs podman and conmon)"
        return None

    def start(self, timeout=None):
        # what exists on the host before podman first runs: only what
        # appears afterwards is ours to remove (a second try keeps the first)
        for p in PODMAN_HOST_PATHS:
            self.host_before.setdefault(p, _tree_entries(p))
        for p in PODMAN_RUNTIME_ROOTS:
            self.runtime_before.setdefault(p, os.path.lexists(p))
        self.driver, self.env, self.base = podman_isolation.setup(
            self.work, engine_conf=PODMAN_ENGINE_CONF, cli=self.cli)

    def docker_argv(self, *args):
        """The docker command line the scenarios give, as podman's: --cgroup-parent
        on run, `rm -f` with -t 0 (docker's rm -f kills at once; podman's would
        wait 10 s for a `sleep` that ignores SIGTERM as pid 1)."""
        args = [str(a) for a in args]
        if args[:1] == ["run"]:
            args[1:1] = ["--cgroup-parent", PODMAN_CGROUP]
        elif args[:1] == ["rm"] and "-f" in args:
            args[1:1] = ["-t", "0"]
        elif args[:1] == ["load"]:
            # in a mount namespace with a tmpfs for containers/image's cache
            return [*podman_isolation.load_prefix(), *self.base, *args]
        return [*self.base, *args]

    def docker(self, *args, **kw):
        r = super().docker(*args, **kw)
        if str(args[0]) == "run" and "-d" in map(str, args) and r.returncode == 0:
            self.ids.add(r.stdout.strip())
        return r

    def containers(self):
        ids = super().containers()
        self.ids |= set(ids)
        return ids

    def remove_all(self):
        self.containers()
        self.docker("rm", "-a", "-f", check=False, timeout=600)

    def daemon_pids(self):
        return []  # no daemon

    def shim_pids(self):
        """conmon of our containers: reparented to init, found by the paths
        of our temp dir on their command line."""
        w = str(self.work) + "/"
        out = []
        for pid in all_pids():
            argv = cmdline(pid)
            if argv and argv[0].endswith("conmon") and any(w in a for a in argv) \
                    and alive(pid):
                out.append(pid)
        return out

    def version(self):
        r = subprocess.run([self.cli, "--version"], capture_output=True, text=True)
        return r.stdout.strip().rpartition(" ")[2] if r.returncode == 0 else "?"

    def stop(self):
        """No daemon. What podman leaves is removed by cleanup()."""

    def cleanup(self):
        """After remove_all: conmons and `podman container cleanup` still
        around (by PID), the runtimes' state of our containers, our overlay
        mounts, host paths podman made. Returns what had to be removed."""
        problems = []
        w = str(self.work)
        deadline = time.monotonic() + 5
        while True:
            left = [p for p in all_pids() if p != os.getpid() and alive(p)
                    and any(w in a for a in cmdline(p))]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if left:
            problems.append(f"processes left: {left}")
            kill_pids(left)
        for root in PODMAN_RUNTIME_ROOTS:
            for cid in self.ids:
                d = os.path.join(root, cid)
                if os.path.isdir(d):
                    problems.append(f"runtime state left: {d}")
                    runtime = shutil.which(os.path.basename(root))
                    if runtime:
                        subprocess.run([runtime, "--root", root, "delete", "-f", cid],
                                       capture_output=True, timeout=15)
                    shutil.rmtree(d, ignore_errors=True)
            if not self.runtime_before.get(root, True) and os.path.isdir(root):
                try:
                    os.rmdir(root)
                except OSError:
                    problems.append(f"{root} made during the bench holds {os.listdir(root)}")
        for p, before in self.host_before.items():
            new = sorted(_tree_entries(p) - before, key=len)
            done = []
            for entry in new:
                if any(entry.startswith(d + "/") for d in done):
                    continue
                problems.append(f"podman wrote {entry}")
                if os.path.isdir(entry) and not os.path.islink(entry):
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    try:
                        os.unlink(entry)
                    except OSError:
                        pass
                done.append(entry)
        return problems


def cgroup_parents():
    """The cgroup parents in use, read when asked (escapes.py sets its own)."""
    return BERTH_CGROUP, DOCKER_CGROUP, PODMAN_CGROUP
