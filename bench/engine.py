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
bench/results/engine-<time>.txt. On a loaded machine: a daemon that is slow
to start gets a second try with a longer wait; an engine that still does
not start, or a scenario that fails, leaves its figures out ('-', with the
reason under the table) and the rest is measured and written all the same;
a timed command that fails once is run again. The cgroup parents carry this
run's PID, so two runs on one machine never clean up each other's. Everything started (daemons, containers,
shims, conmons, cgroups, mounts, temp dirs) is removed at the end, on failure
and on Ctrl-C too. See bench/README.md. The engines themselves (and the
helpers that find their processes) are in bench/engines.py.
"""
import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]
# the engines and their helpers; re-exported: escapes.py knows them as engine.*
from engines import (ALPINE, BERTHD, ENGINES, GOALS, IMAGE, LABEL, REPO, RESULTS,  # noqa: E402,F401
                     BerthEngine, DockerEngine, Interrupted, PodmanEngine, _on_signal, all_pids,
                     api, cgroup_parents, cmdline, kill_pids, mem, mem_sum, remove_cgroup,
                     unmount_under)
from image_load import install_docker  # noqa: E402
from retry import second_try  # noqa: E402
from stats import load_average, percentile  # noqa: E402


# -- scenarios ---------------------------------------------------------------

def start_engine(e):
    """Start e and load the image into it, with a second try."""
    def start(timeout):
        e.work.mkdir(parents=True, exist_ok=True)
        e.start(timeout=timeout)
        e.docker("load", "-i", ALPINE, timeout=600)
        e.docker("image", "inspect", IMAGE)

    def stop():
        if e.name == "podman" or e.sock.exists():
            e.remove_all()
        e.stop()
    second_try(f"engine.py: {e.name}", start, stop)


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
        d, b = ph.get("docker", {}), ph.get("berth", {})
        for k in next(iter(ph.values())):
            row(f"  {k}", d.get(k, NA), NA, b.get(k, NA), "ms")
        row("  total", sum(d.values()) if d else NA, NA, sum(b.values()) if b else NA, "ms")
    # what could not be measured, and why: the figures above are '-' or n/a
    notes = [f"{n}: not measured: {why}" for n, why in (info.get("missing") or {}).items()]
    notes += [f"{k}: not measured: {why}" for k, why in (info.get("failed") or {}).items()]
    if notes:
        lines += ["", "missing figures:"] + [f"  {x}" for x in notes]
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
    started = [docker, berth]  # what cleanup() must take down
    engines, missing = [], {}
    res, info, status = {}, {}, 0
    try:
        for e in (docker, berth):
            try:
                start_engine(e)
                engines.append(e)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
                missing[e.name] = str(err)[:300]
        if docker in engines:
            info = docker.d.versions()
        info["berth_monitor"] = "berth-shim" if args.monitor == "none" else "berth-monitor"
        info["load"] = load_average()
        why = podman.missing()
        if why is None:
            try:
                started.append(podman)
                start_engine(podman)
                podman.timed(*run_args())  # one run, or no podman column
                engines.insert(1 if docker in engines else 0, podman)
                info["podman"] = podman.version()
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
                why = str(err)
        if why:
            info["podman_missing"] = why
            print(f"engine.py: podman not measured: {why}", file=sys.stderr, flush=True)
        info["missing"] = missing
        if not engines:
            raise RuntimeError("no engine started: " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
        step = lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", flush=True)  # noqa: E731
        scenarios = [
            ("memory", "memory, idle and with containers",
             lambda: scenario_memory(engines, args.mem_containers)),
            ("floor", f"docker version, {args.warmup}+{args.runs} each",
             lambda: scenario_floor(engines, args.runs, args.warmup)),
            ("run", f"run --rm, {args.warmup}+{args.runs} each",
             lambda: scenario_run(engines, args.runs, args.warmup)),
            ("exec", f"exec, {args.warmup}+{args.runs} each",
             lambda: scenario_exec(engines, args.runs, args.warmup)),
            ("start_many", f"{args.containers} x run -d, then rm -f",
             lambda: scenario_start_many(engines, args.containers)),
            ("phases", "phases over the API",
             lambda: {e.name: phases(e, args.phase_runs) for e in engines
                      if getattr(e, "sock", None)}),
        ]
        info["failed"] = {}
        for key, what, fn in scenarios:
            step(what)
            try:
                res[key] = fn()
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
                # one scenario lost, not the run: its rows say '-', the reason is below
                info["failed"][key] = f"{type(err).__name__}: {str(err)[:300]}"
                print(f"engine.py: {what}: not measured: {err}", file=sys.stderr, flush=True)
                for e in engines:
                    try:
                        e.remove_all()
                    except Exception:  # noqa: BLE001
                        pass
    except (Exception, KeyboardInterrupt, Interrupted) as e:
        print(f"engine.py: stopped: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        info["podman_left"] = cleanup(started, work)
        for s, h in old.items():
            signal.signal(s, h)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    if status == 0 and (info.get("missing") or info.get("failed")):
        status = 3   # the table is written, some figures are missing (bench/all.py)
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
    for cg in cgroup_parents():
        remove_cgroup(cg)
    # containers/storage bind-mounts its overlay home on itself: unmounted
    # here with the containers' rootfs mounts, if any were left
    unmount_under(work)
    shutil.rmtree(work, ignore_errors=True)
    return left


if __name__ == "__main__":
    sys.exit(main())
