"""berthd against Docker (dockerd + containerd) and Podman (no daemon, one
conmon per container), measured in the same run: berth and Docker through
the same docker CLI, Podman through its own CLI (Debian's podman 4.3).

Scenarios, each engine with its own daemon under a temporary directory and
the alpine-3.20 fixture loaded with `docker load`, every container with
--network none (dockerd runs with --bridge=none):
  run        `docker run --rm alpine true`, wall time, engines alternating
  exec       `docker exec <running container> true`
  start-100  `docker run -d alpine sleep 1000` x100, sequential, total time
             (engines alternate container by container); then `docker rm -f`
  memory     RSS/PSS of berthd against dockerd+containerd with no container,
             and of one berth-monitor (or berth-shim with --monitor none)
             against one containerd-shim-runc-v2 and one conmon with 10
             containers running in each
  floor      `docker version`: what the CLI costs whatever the engine
  phases     one `run` split into API calls (create, start, wait, delete)
             over raw HTTP, to show where each engine spends its time

Podman runs the same scenarios with `podman` in place of `docker` (its
`rm -f` with `-t 0`, which is what `docker rm -f` does: SIGKILL at once), its
conmon in place of the shim; it has no daemon (n/a) and no API socket (no
phases). bench/podman_isolation.py keeps it off the host's state (as it does
for tests/runtime/test_dropin_podman.py): --root/--runroot/--tmpdir, containers.conf and storage.conf under the
temp dir, cgroupfs with --cgroup-parent /berth-bench-podman, CNI backend, no
events, file locks, `podman load` in a private mount namespace with a tmpfs
over /var/lib/containers; whatever still appears on the host is removed at the
end and reported. Without podman (or if it cannot start) its column says n/a.

Prints a table with the ratios berth/docker and berth/podman (lower is
better) and the issue's goals (against Docker), and writes it to
bench/results/engine-<time>.txt. Everything started (daemons, containers,
shims, conmons, cgroups, mounts, temp dirs) is removed at the end, on failure
and on Ctrl-C too. See bench/README.md.
"""
import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
PYTHON = REPO / ".venv" / "bin" / "python"
BERTHD = REPO / "bin" / "berthd"
sys.path[:0] = [str(HERE), str(REPO / "tests")]
from image_load import Dockerd, install_docker  # noqa: E402
import podman_isolation  # noqa: E402
from procutil import alive, children, ppid, stop  # noqa: E402
from shared_dir import FIXTURES  # noqa: E402
from stats import load_average, percentile  # noqa: E402

ALPINE = FIXTURES / "images" / "alpine-3.20.tar"
IMAGE = "alpine"  # the fixture loads as alpine:latest
ENGINES = ["docker", "podman", "berth"]
CGROUP_ROOT = "/sys/fs/cgroup"
BERTH_CGROUP = "/berth-bench"
DOCKER_CGROUP = "/berth-bench-docker"
PODMAN_CGROUP = "/berth-bench-podman"
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
        t0 = time.perf_counter()
        self.docker(*args)
        return time.perf_counter() - t0

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

    def __init__(self, work, cgroup_parent=BERTH_CGROUP, monitor=""):
        self.work = Path(work)
        self.cgroup_parent = cgroup_parent
        self.monitor = monitor   # berthd's --monitor: "" its default, "none" the Python shim
        self.sock = self.work / "berth.sock"
        self.log = self.work / "berthd.log"
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                        DOCKER_CONFIG=str(self.work / "cli"))
        for k in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            self.env.pop(k, None)
        self.proc = None

    def start(self, timeout=30):
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

    def start(self):
        self.d.start()

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

    def start(self):
        # what exists on the host before podman runs: only what appears
        # afterwards is ours to remove
        for p in PODMAN_HOST_PATHS:
            self.host_before[p] = _tree_entries(p)
        for p in PODMAN_RUNTIME_ROOTS:
            self.runtime_before[p] = os.path.lexists(p)
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


# -- scenarios ---------------------------------------------------------------

def run_args():
    return ["run", "--rm", "--network", "none", IMAGE, "true"]


def scenario_run(engines, runs, warmup):
    times = {e.name: [] for e in engines}
    for i in range(warmup + runs):
        for e in engines:
            t = e.timed(*run_args())
            if i >= warmup:
                times[e.name].append(t)
    return times


def scenario_floor(engines, runs, warmup):
    """`docker version`: the CLI's own start and one round trip, which every
    docker command pays whatever the engine."""
    times = {e.name: [] for e in engines}
    for i in range(warmup + runs):
        for e in engines:
            t = e.timed("version")
            if i >= warmup:
                times[e.name].append(t)
    return times


def scenario_exec(engines, runs, warmup):
    cids = {}
    for e in engines:
        cids[e.name] = e.docker("run", "-d", "--network", "none", "--label", LABEL,
                                IMAGE, "sleep", "1000").stdout.strip()
    times = {e.name: [] for e in engines}
    try:
        for i in range(warmup + runs):
            for e in engines:
                t = e.timed("exec", cids[e.name], "true")
                if i >= warmup:
                    times[e.name].append(t)
    finally:
        for e in engines:
            e.docker("rm", "-f", cids[e.name], check=False)
    return times


def scenario_start_many(engines, count):
    """Total seconds for `count` sequential `docker run -d`, and for removing
    them with one `docker rm -f`, per engine."""
    total = {e.name: 0.0 for e in engines}
    ids = {e.name: [] for e in engines}
    for _ in range(count):
        for e in engines:
            t0 = time.perf_counter()
            r = e.docker("run", "-d", "--network", "none", "--label", LABEL,
                         IMAGE, "sleep", "1000")
            total[e.name] += time.perf_counter() - t0
            ids[e.name].append(r.stdout.strip())
    removal = {}
    for e in engines:
        t0 = time.perf_counter()
        e.docker("rm", "-f", *ids[e.name], timeout=600)
        removal[e.name] = time.perf_counter() - t0
    return total, removal


def scenario_memory(engines, count, settle=1.0):
    """Daemon memory idle, and per-shim memory with `count` containers running."""
    out = {}
    time.sleep(settle)
    for e in engines:
        out[e.name] = {"daemon_idle": mem_sum(e.daemon_pids()),
                       "daemon_pids": e.daemon_pids()}
    ids = {e.name: [] for e in engines}
    try:
        for _ in range(count):
            for e in engines:
                ids[e.name].append(e.docker("run", "-d", "--network", "none", "--label", LABEL,
                                            IMAGE, "sleep", "1000").stdout.strip())
        time.sleep(settle)
        for e in engines:
            shims = e.shim_pids()
            per = [m for m in (mem(p) for p in shims) if m]
            out[e.name].update({
                "shims": len(shims),
                "shim_pss_median": statistics.median(m["pss"] for m in per) if per else None,
                "shim_rss_median": statistics.median(m["rss"] for m in per) if per else None,
                "shim_uss_median": statistics.median(m["uss"] for m in per) if per else None,
                "shims_pss_total": sum(m["pss"] for m in per),
                "daemon_with_containers": mem_sum(e.daemon_pids()),
            })
    finally:
        for e in engines:
            if ids[e.name]:
                e.docker("rm", "-f", *ids[e.name], check=False, timeout=600)
    return out


def phases(e, runs):
    """One `docker run --rm true` as API calls, without the CLI and without
    attach: create, start, wait (for the exit), delete. Median ms each."""
    body = {"Image": IMAGE, "Cmd": ["true"], "Labels": {"berth-bench": "1"},
            "HostConfig": {"NetworkMode": "none"}}
    samples = {"create": [], "start": [], "wait": [], "delete": []}
    for i in range(runs + 1):
        t0 = time.perf_counter()
        status, doc = api(e.sock, "POST", "/containers/create", body)
        if status != 201:
            raise RuntimeError(f"{e.name}: create -> {status} {doc!r:.200}")
        cid = doc["Id"]
        t1 = time.perf_counter()
        status, doc = api(e.sock, "POST", f"/containers/{cid}/start")
        t2 = time.perf_counter()
        if status != 204:
            api(e.sock, "DELETE", f"/containers/{cid}?force=1")
            raise RuntimeError(f"{e.name}: start -> {status} {doc!r:.200}")
        api(e.sock, "POST", f"/containers/{cid}/wait")
        t3 = time.perf_counter()
        api(e.sock, "DELETE", f"/containers/{cid}?v=1")
        t4 = time.perf_counter()
        if i:  # the first is a warm-up
            for k, v in zip(samples, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                samples[k].append(v)
    return {k: statistics.median(v) * 1000 for k, v in samples.items()}


# -- report --------------------------------------------------------------------

def fmt_ratio(b, d):
    return f"{b / d:>8.2f}" if isinstance(b, (int, float)) and isinstance(d, (int, float)) \
        and d else f"{'-':>8}"


NA = "n/a"


def report(res, args, info):
    podman = info.get("podman")
    head_line = (f"berthd against dockerd+containerd and podman, docker CLI {info.get('client')} "
                 f"for berth and docker (dockerd {info.get('server')}), "
                 f"podman {podman or NA}, --network none, {args.runs} runs after "
                 f"{args.warmup} warm-up")
    lines = [head_line,
             f"{time.strftime('%Y-%m-%d %H:%M')}, kernel {platform.release()}, "
             f"{os.cpu_count()} CPUs{', --quick' if args.quick else ''}, load average "
             f"{info.get('load', '?')} at the start, {load_average()} at the end"]
    if not podman:
        lines.append(f"podman: n/a ({info.get('podman_missing', 'not run')})")
    lines.append("")
    head = (f"{'scenario':<30}{'docker':>12}{'podman':>12}{'berth':>12}"
            f"{'b/d':>8}{'b/p':>8}{'goal':>7}")
    lines += [head, "-" * len(head)]

    def cell(v, unit):
        if isinstance(v, str):
            return f"{v:>12}"
        return f"{v:>9.1f} {unit:<2}" if v is not None else f"{'-':>12}"

    def row(label, d, p, b, unit, goal=None):
        if not podman:
            p = NA
        g = f"  <={goal[1]:.2f} b/{goal[0][0]}" if goal else ""
        lines.append(f"{label:<30}{cell(d, unit)}{cell(p, unit)}{cell(b, unit)}"
                     f"{fmt_ratio(b, d)}{fmt_ratio(b, p)}{g}")

    def each(table, fn):
        return [fn(table[n]) if n in table else NA for n in ENGINES]

    t = res.get("floor")
    if t:
        row("CLI version (floor)", *each(t, lambda v: percentile(v, 50)), "ms")
    t = res.get("run")
    if t:
        row("run --rm true, median", *each(t, lambda v: percentile(v, 50)), "ms", GOALS["run"])
        row("run --rm true, p90", *each(t, lambda v: percentile(v, 90)), "ms")
    t = res.get("exec")
    if t:
        row("exec true, median", *each(t, lambda v: percentile(v, 50)), "ms", GOALS["exec"])
        row("exec true, p90", *each(t, lambda v: percentile(v, 90)), "ms")
    if "start_many" in res:
        total, removal = res["start_many"]
        row(f"{args.containers} x run -d, total", *each(total, lambda v: v), "s")
        row("  per container", *each(total, lambda v: v / args.containers * 1000), "ms")
        row(f"rm -f of the {args.containers}", *each(removal, lambda v: v), "s")
    m = res.get("memory")
    if m:
        mb = 1024

        def daemon(v, what, key):
            return v[what][key] / mb if v.get("daemon_pids") else NA
        row("daemon idle, RSS", *each(m, lambda v: daemon(v, "daemon_idle", "rss")), "MB")
        row("daemon idle, PSS", *each(m, lambda v: daemon(v, "daemon_idle", "pss")), "MB")
        row(f"daemon, {args.mem_containers} running, PSS",
            *each(m, lambda v: daemon(v, "daemon_with_containers", "pss")), "MB")
        row("one shim, PSS (median)", *each(m, lambda v: _kb(v["shim_pss_median"])), "MB",
            GOALS["shim PSS"])
        row("one shim, RSS (median)", *each(m, lambda v: _kb(v["shim_rss_median"])), "MB")
        row("one shim, USS (median)", *each(m, lambda v: _kb(v["shim_uss_median"])), "MB")

        def per(v):
            return (v["shims_pss_total"] + v["daemon_with_containers"]["pss"]
                    - v["daemon_idle"]["pss"]) / args.mem_containers / mb
        row("per container, shim+daemon", *each(m, per), "MB")
        found = ", ".join(f"{n} {m[n]['shims']}" for n in ENGINES if n in m)
        lines.append(f"(shims found: {found}; shim = containerd-shim-runc-v2 / conmon / "
                     f"{info.get('berth_monitor', 'berth-monitor')}; daemon = "
                     f"dockerd+containerd / none: podman has no daemon / berthd)")
    ph = res.get("phases")
    if ph:
        lines += ["", f"one run as API calls (no CLI, no attach), median of {args.phase_runs}, ms"
                  " (podman: no API socket)",
                  f"{'phase':<30}{'docker':>12}{'podman':>12}{'berth':>12}{'b/d':>8}{'b/p':>8}"]
        for k in ph["docker"]:
            row(f"  {k}", ph["docker"][k], NA, ph["berth"][k], "ms")
        row("  total", sum(ph["docker"].values()), NA, sum(ph["berth"].values()), "ms")
    return "\n".join(lines)


def _kb(v):
    return None if v is None else v / 1024


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30, help="timed runs of run/exec per engine")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--containers", type=int, default=100, help="containers for start-100")
    p.add_argument("--mem-containers", type=int, default=10)
    p.add_argument("--phase-runs", type=int, default=10)
    p.add_argument("--quick", action="store_true",
                   help="8 runs, 1 warm-up, 20 containers, 5 phase runs")
    p.add_argument("--no-save", action="store_true", help="do not write the table")
    p.add_argument("--monitor", default="",
                   help="berthd's --monitor (none: the Python shim as each container's monitor)")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.warmup, args.containers, args.phase_runs = 8, 1, 20, 5
    if os.geteuid() != 0:
        sys.exit("engine.py: needs root (two container engines)")
    if not os.access(BERTHD, os.X_OK):
        sys.exit(f"engine.py: {BERTHD} is missing: run make build")
    err = install_docker()
    if err:
        sys.exit(f"engine.py: {err}")

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    work = Path(os.path.realpath(tempfile.mkdtemp(prefix="be-")))  # short: sun_path
    berth, docker = BerthEngine(work / "b", monitor=args.monitor), DockerEngine(work / "d")
    podman = PodmanEngine(work / "p")
    engines = [docker, berth]
    started = list(engines)  # what cleanup() must take down
    res, info, status = {}, {}, 0
    try:
        for e in engines:
            e.work.mkdir(parents=True, exist_ok=True)
            e.start()
            e.docker("load", "-i", ALPINE)
            e.docker("image", "inspect", IMAGE)
        info = docker.d.versions()
        info["berth_monitor"] = ("berth-shim" if args.monitor == "none" else "berth-monitor")
        info["load"] = load_average()
        why = podman.missing()
        if why is None:
            try:
                podman.work.mkdir(parents=True, exist_ok=True)
                started.append(podman)
                podman.start()
                podman.docker("load", "-i", ALPINE)
                podman.docker("image", "inspect", IMAGE)
                podman.timed(*run_args())  # one run, or no podman column
                engines.insert(1, podman)
                info["podman"] = podman.version()
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
                why = str(err)
        if why:
            info["podman_missing"] = why
            print(f"engine.py: podman not measured: {why}", file=sys.stderr, flush=True)
        step = lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", flush=True)  # noqa: E731
        step("memory, idle and with containers")
        res["memory"] = scenario_memory(engines, args.mem_containers)
        step(f"docker version, {args.warmup}+{args.runs} each")
        res["floor"] = scenario_floor(engines, args.runs, args.warmup)
        step(f"run --rm, {args.warmup}+{args.runs} each")
        res["run"] = scenario_run(engines, args.runs, args.warmup)
        step(f"exec, {args.warmup}+{args.runs} each")
        res["exec"] = scenario_exec(engines, args.runs, args.warmup)
        step(f"{args.containers} x run -d, then rm -f")
        res["start_many"] = scenario_start_many(engines, args.containers)
        step("phases over the API")
        res["phases"] = {e.name: phases(e, args.phase_runs) for e in engines
                         if getattr(e, "sock", None)}
    except (Exception, KeyboardInterrupt, Interrupted) as e:
        print(f"engine.py: stopped: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        info["podman_left"] = cleanup(started, work)
        for s, h in old.items():
            signal.signal(s, h)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    text = report(res, args, info)
    print(text)
    if info.get("podman_left"):
        print("engine.py: podman left on the host (removed):\n  "
              + "\n  ".join(info["podman_left"]), file=sys.stderr)
    if not args.no_save and res:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"engine-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        path.write_text(text + "\n")
        print(f"results: {path.relative_to(REPO)}")
    return status


def cleanup(engines, work):
    """Containers, daemons (by PID), stray shims of ours, podman's leftovers,
    cgroups, mounts, the temp dir: each step runs whatever the one before
    did. Returns what podman left on the host (removed here)."""
    for e in engines:
        try:
            if e.name == "podman" or e.sock.exists():
                e.remove_all()
        except Exception as err:  # noqa: BLE001 - go on with the rest
            print(f"cleanup: {e.name} containers: {err}", file=sys.stderr)
    strays = []
    for e in engines:
        try:
            strays += e.shim_pids()
            e.stop()
        except Exception as err:  # noqa: BLE001
            print(f"cleanup: stopping {e.name}: {err}", file=sys.stderr)
    for e in engines:
        strays += e.shim_pids()
    kill_pids(sorted(set(strays)))
    left = []
    for e in engines:
        if e.name == "podman":
            try:
                left += e.cleanup()
            except Exception as err:  # noqa: BLE001
                print(f"cleanup: podman: {err}", file=sys.stderr)
    for cg in (BERTH_CGROUP, DOCKER_CGROUP, PODMAN_CGROUP):
        remove_cgroup(cg)
    # containers/storage bind-mounts its overlay home on itself: unmounted
    # here with the containers' rootfs mounts, if any were left
    unmount_under(work)
    shutil.rmtree(work, ignore_errors=True)
    return left


if __name__ == "__main__":
    sys.exit(main())
