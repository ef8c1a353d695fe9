"""berthd and dockerd under concurrent clients, in the same run.

    bench/stress.py [--clients 50] [--rounds 3] [--quick] [--only berth|docker]

Each engine gets a daemon of its own under a temp dir and the alpine-3.20
fixture. Two waves over the raw API (Unix socket), every container with
NetworkMode none (the bench's dockerd has no bridge):
  cycle   N clients, each `rounds` times: create, start, wait, rm
          (alpine true), every request timed
  wave    N clients at once: create+start of `sleep 1000` (run -d), then
          all of them DELETE ?force=1 at once (rm -f)
Printed per engine and phase: p50 and p99 in ms, requests, errors; the
daemon's RSS (dockerd: with containerd) and threads before and after, and
what was left (containers the daemon still lists). A missing peer or a
failed wave shows as a missing figure (exit 3), not a crash. Writes the
table to bench/results/stress-<time>.txt.
"""
import argparse
import concurrent.futures
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
sys.path[:0] = [str(HERE), str(REPO / "tests")]
from engines import (ALPINE, BERTH_CGROUP, BERTHD, DOCKER_CGROUP, BerthEngine,  # noqa: E402
                     DockerEngine, api, kill_pids, mem_sum, remove_cgroup, unmount_under)
from image_load import install_docker  # noqa: E402
from stats import percentile  # noqa: E402

PHASES = ("create", "start", "wait", "rm", "run -d", "rm -f")


def threads(pids):
    n = 0
    for pid in pids:
        try:
            n += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return n


class Run:
    """Timings and errors of one engine."""

    def __init__(self):
        self.times = {p: [] for p in PHASES}
        self.errors = {p: 0 for p in PHASES}
        self.first_error = None
        self.lock = threading.Lock()

    def call(self, e, phase, method, path, body=None, ok=(200, 201, 204)):
        t0 = time.perf_counter()
        try:
            status, data = api(e.sock, method, path, body, timeout=300)
        except OSError as err:
            status, data = None, str(err)
        took = time.perf_counter() - t0
        with self.lock:
            if status in ok:
                self.times[phase].append(took)
            else:
                self.errors[phase] += 1
                self.first_error = self.first_error or f"{phase}: {status} {str(data)[:200]}"
        return (status in ok), data


CONFIG = {"Image": "alpine", "HostConfig": {"NetworkMode": "none"}}


def cycle(e, run, rounds):
    for _ in range(rounds):
        ok, c = run.call(e, "create", "POST", "/containers/create", dict(CONFIG, Cmd=["true"]))
        if not ok:
            continue
        cid = c.get("Id") if isinstance(c, dict) else None
        if not cid:
            continue
        if run.call(e, "start", "POST", f"/containers/{cid}/start")[0]:
            run.call(e, "wait", "POST", f"/containers/{cid}/wait")
        run.call(e, "rm", "DELETE", f"/containers/{cid}")


def run_d(e, run):
    t0 = time.perf_counter()
    ok, c = run.call(e, "create", "POST", "/containers/create",
                     dict(CONFIG, Cmd=["sleep", "1000"]))
    if ok and run.call(e, "start", "POST", f"/containers/{c['Id']}/start")[0]:
        with run.lock:
            run.times["run -d"].append(time.perf_counter() - t0)
        return c["Id"]
    with run.lock:
        run.errors["run -d"] += 1
    return None


def snapshot(e):
    pids = e.daemon_pids()
    return mem_sum(pids)["rss"], threads(pids)


def measure(engines, clients, rounds):
    """Both daemons up, the engines taking turns round by round (the
    machine's load moves: each gets the same stretch of it)."""
    res = {e.name: {"run": Run(), "before": snapshot(e)} for e in engines}
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for _ in range(rounds):
            for e in engines:
                run = res[e.name]["run"]
                list(pool.map(lambda _: cycle(e, run, 1), range(clients)))
        for e in engines:
            run, wave = res[e.name]["run"], Run()
            # the wave's create/start are not the cycle's: timed as run -d alone
            ids = [i for i in pool.map(lambda _: run_d(e, wave), range(clients)) if i]
            run.times["run -d"], run.errors["run -d"] = wave.times["run -d"], wave.errors["run -d"]
            list(pool.map(lambda cid: run.call(e, "rm -f", "DELETE",
                                               f"/containers/{cid}?force=1"), ids))
    for e in engines:
        r = res[e.name]
        r["after"] = snapshot(e)
        try:
            status, left = api(e.sock, "GET", "/containers/json?all=1", timeout=120)
        except OSError:
            status, left = None, None
        r["left"] = len(left) if status == 200 and isinstance(left, list) else None
    return res


def ms(values, q):
    return f"{percentile(values, q):.0f}" if values else "-"


def report(results, args, notes):
    lines = [f"stress: {args.clients} clients x {args.rounds} create/start/wait/rm, then a "
             f"wave of {args.clients} run -d + rm -f; {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{os.cpu_count()} CPUs (shared with other work)", ""]
    head = f"{'phase':<8}" + "".join(f"{n + ' p50':>12}{n + ' p99':>12}{'err':>5}"
                                     for n in results)
    lines += [head + "   (ms)"]
    for p in PHASES:
        row = f"{p:<8}"
        for r in results.values():
            if r is None:
                row += f"{'n/a':>12}{'n/a':>12}{'-':>5}"
                continue
            t = r["run"].times[p]
            row += f"{ms(t, 50):>12}{ms(t, 99):>12}{r['run'].errors[p]:>5}"
        lines.append(row)
    lines.append("")
    for name, r in results.items():
        if r is None:
            lines.append(f"{name}: not measured: {notes.get(name, '?')}")
            continue
        (rss0, th0), (rss1, th1) = r["before"], r["after"]
        lines.append(f"{name}: daemon RSS {rss0 // 1024} -> {rss1 // 1024} MiB, threads "
                     f"{th0} -> {th1}, containers left {r['left']}"
                     + (f"; first error: {r['run'].first_error}" if r["run"].first_error else ""))
    if all(results.get(n) for n in ("berth", "docker")):
        slower = [p for p in PHASES if results["berth"]["run"].times[p] and
                  results["docker"]["run"].times[p] and
                  percentile(results["berth"]["run"].times[p], 50) >
                  percentile(results["docker"]["run"].times[p], 50)]
        lines.append("goal (no phase slower than dockerd at p50): "
                     + ("met" if not slower else "missed in " + ", ".join(slower)))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="10 clients, 2 rounds")
    p.add_argument("--only", choices=("berth", "docker"), default=None)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.rounds = 10, 2
    if os.geteuid() != 0:
        sys.exit("stress.py: needs root (two container engines)")
    if not os.access(BERTHD, os.X_OK):
        sys.exit(f"stress.py: {BERTHD} is missing: run make build")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = Path(os.path.realpath(tempfile.mkdtemp(prefix="bs-")))  # short: sun_path
    results, notes = {}, {}
    names = [args.only] if args.only else ["docker", "berth"]
    up = []
    try:
        for name in names:
            if name == "docker":
                err = install_docker()
                if err:
                    results[name], notes[name] = None, err
                    continue
            # cgroup parents with this run's PID (engines.py): another bench
            # running at the same time keeps its containers
            e = DockerEngine(work / "d") if name == "docker" else BerthEngine(work / "b")
            try:
                e.work.mkdir(parents=True, exist_ok=True)
                up.append(e)
                e.start()
                e.docker("load", "-i", ALPINE)
            except Exception as err:  # noqa: BLE001 - a missing figure, not a crash
                up.remove(e)
                _take_down(e)
                results[name], notes[name] = None, f"{type(err).__name__}: {err}"
        print(f"[{time.strftime('%H:%M:%S')}] {', '.join(e.name for e in up)}: "
              f"{args.clients} clients", flush=True)
        try:
            results.update(measure(up, args.clients, args.rounds))
        except Exception as err:  # noqa: BLE001
            for e in up:
                results[e.name], notes[e.name] = None, f"{type(err).__name__}: {err}"
    finally:
        for e in up:
            _take_down(e)
        for cg in (BERTH_CGROUP, DOCKER_CGROUP):
            remove_cgroup(cg)
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    results = {n: results.get(n) for n in names}
    text = report(results, args, notes)
    print(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"stress-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        path.write_text(text + "\n")
        print(f"results: {path.relative_to(REPO)}")
    # a missing figure: the table is written, all.py says "figures missing"
    return 3 if any(r is None for r in results.values()) else 0


def _take_down(e):
    """Containers, daemon (by PID), shims it left."""
    try:
        if e.sock.exists():
            e.remove_all()
    except Exception as err:  # noqa: BLE001 - go on with the rest
        print(f"stress.py: {e.name} containers: {err}", file=sys.stderr)
    strays = e.shim_pids()
    try:
        e.stop()
    except Exception as err:  # noqa: BLE001
        print(f"stress.py: stopping {e.name}: {err}", file=sys.stderr)
    strays += e.shim_pids()
    kill_pids(sorted(set(strays)))


if __name__ == "__main__":
    sys.exit(main())
