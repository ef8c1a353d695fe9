"""Start-up time of berth-runtime against runc, measured in the same run.

Two scenarios on a busybox bundle whose process is /bin/true:
  run                   `RT run --bundle B ID` (create, start, wait, delete)
  create+start+delete   three separate invocations, as an engine makes them

By default an interleaved loop: each round runs every (scenario, runtime)
once, in an order that rotates from round to round, so a burst of load on
the shared machine hits both runtimes alike; the figures are medians of the
wall time and of the CPU time (user + system of the runtime's processes,
from wait4). --hyperfine uses hyperfine instead (each command's runs back
to back, means). Prints a table with the ratios berth/runc and writes the
numbers to bench/results/runtime_start-<time>.json. See bench/README.md.
"""
import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "tests" / "runtime"), str(REPO / "tests")]
import bundle as bundles  # noqa: E402  (tests' bundle builders)
from stats import load_average, summary  # noqa: E402

GOALS = {"run": 1.1, "create+start+delete": 1.3}   # the issue's: berth/runc at most

RESULTS = HERE / "results"


def runtimes(args):
    found = {"runc": shutil.which("runc") or "runc",
             "berth": args.berth or os.environ.get("BERTH_RUNTIME")
             or str(REPO / "bin" / "berth-runtime")}
    return {name: found[name] for name in args.runtimes.split(",")}


def argvs(binary, root, bundle, cid):
    """{scenario: [argv of each process, in order]}."""
    rt = [binary, "--root", str(root)]
    return {
        "run": [rt + ["run", "--bundle", str(bundle), cid]],
        "create+start+delete": [rt + ["create", "--bundle", str(bundle), cid],
                                rt + ["start", cid], rt + ["delete", "-f", cid]],
    }


def commands(binary, root, bundle, cid):
    """The same as shell command lines (hyperfine)."""
    return {k: " && ".join(shlex.join(a) for a in v)
            for k, v in argvs(binary, root, bundle, cid).items()}


def sh(cmd):
    return subprocess.run(cmd, shell=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)


def with_hyperfine(cmds, runs, warmup, workdir):
    """{label: [seconds...]} for the labelled shell commands."""
    out = Path(workdir) / "hyperfine.json"
    argv = ["hyperfine", "--style", "none", "--warmup", str(warmup),
            "--runs", str(runs), "--export-json", str(out)]
    labels = list(cmds)
    for label in labels:
        argv += ["--command-name", label, cmds[label]]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError(f"hyperfine failed: {r.stderr.strip()[-500:]}")
    data = json.loads(out.read_text())
    return {res["command"]: res["times"] for res in data["results"]}


def timed(argv_list):
    """(wall seconds, CPU seconds) of running each argv in turn; raises
    with the stderr's last line if one fails."""
    null = os.open(os.devnull, os.O_RDWR)
    err_r, err_w = os.pipe()
    cpu = 0.0
    try:
        t0 = time.perf_counter()
        for argv in argv_list:
            pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2)])
            _, status, ru = os.wait4(pid, 0)
            cpu += ru.ru_utime + ru.ru_stime
            if status != 0:
                os.close(err_w)
                err_w = -1
                last = os.read(err_r, 65536).decode(errors="replace").strip().splitlines()
                raise RuntimeError((last or [f"status {status}"])[-1][:300])
        return time.perf_counter() - t0, cpu
    finally:
        for fd in (null, err_r, err_w):
            if fd >= 0:
                os.close(fd)


def with_loop(cmds, runs, warmup, workdir):
    """cmds: {label: [argv, ...]} -> ({label: [wall s]}, {label: [cpu s]}),
    the labels interleaved round by round, starting one later each round."""
    labels = list(cmds)
    wall = {k: [] for k in labels}
    cpu = {k: [] for k in labels}
    for i in range(warmup + runs):
        k = i % len(labels)
        for label in labels[k:] + labels[:k]:
            w, c = timed(cmds[label])
            if i >= warmup:
                wall[label].append(w)
                cpu[label].append(c)
    return wall, cpu


def version(binary):
    try:
        r = subprocess.run([binary, "--version"], capture_output=True,
                           text=True, timeout=10)
        return (r.stdout or r.stderr).splitlines()[0] if r.returncode == 0 else None
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


PARTIAL = 3   # the table is written, some figures are missing (bench/all.py)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runtimes", default="runc,berth",
                   help="comma-separated subset of runc,berth")
    p.add_argument("--berth", help="berth-runtime binary (default bin/berth-runtime)")
    p.add_argument("--hyperfine", action="store_true",
                   help="time with hyperfine (runs back to back, means) instead of the "
                        "interleaved loop")
    p.add_argument("--no-hyperfine", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-save", action="store_true", help="do not write JSON")
    args = p.parse_args(argv)

    # bench/all.py's time limit sends SIGTERM: leave through the clean-up below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    use_hyperfine = bool(args.hyperfine and shutil.which("hyperfine"))
    tool = "hyperfine" if use_hyperfine else "interleaved loop"
    load_start = load_average()
    work = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    rts = runtimes(args)
    cmds, cleanup, errors = {}, [], {}
    try:
        bundle = bundles.make_busybox_bundle(work / "bundle", args=["/bin/true"])
        for name, binary in rts.items():
            root = work / f"root-{name}"
            cid = f"berth-bench-{name}-{os.getpid()}"
            cleanup.append((binary, root, cid))
            mine = commands(binary, root, bundle, cid)
            spawn = argvs(binary, root, bundle, cid)
            # a runtime that cannot do the job is reported, not timed
            for scenario, cmd in mine.items():
                r = sh(cmd)
                if r.returncode != 0:
                    last = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
                    errors[(scenario, name)] = last[:200]
                else:
                    cmds[(scenario, name)] = cmd if use_hyperfine else spawn[scenario]
        labels = {f"{name} {scenario}": (scenario, name) for scenario, name in cmds}
        to_run = {label: cmds[key] for label, key in labels.items()}
        cpu, times = {}, {}
        # tried twice: a round the loaded host fails costs these figures, not the table
        for attempt in (1, 2):
            if not to_run:
                break
            try:
                if use_hyperfine:
                    times = with_hyperfine(to_run, args.runs, args.warmup, work)
                else:
                    times, cpu = with_loop(to_run, args.runs, args.warmup, work)
                break
            except (RuntimeError, ValueError, OSError) as e:
                if attempt == 2:
                    for label in to_run:
                        errors[labels[label]] = str(e)[:200]
    finally:
        for binary, root, cid in cleanup:
            subprocess.run([binary, "--root", str(root), "delete", "-f", cid],
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    results, cpu_results = {}, {}
    for label, samples in times.items():
        scenario, name = labels[label]
        results.setdefault(scenario, {})[name] = summary(samples)
        if label in cpu:
            cpu_results.setdefault(scenario, {})[name] = summary(cpu[label])
    # hyperfine gives means; the loop's medians are robust to the bursts
    # of load a shared machine has
    key = "mean_ms" if use_hyperfine else "median_ms"
    load_end = load_average()
    print(f"runtime start-up, /bin/true in a busybox bundle, {args.runs} runs ({tool}, "
          f"{key.split('_')[0]}s), load average {load_start} at the start, {load_end} at the end")
    head = (f"{'scenario':<26}" + "".join(f"{n + ' ms':>12}" for n in rts)
            + f"{'berth/runc':>12}{'goal':>8}")
    print(head)
    print("-" * len(head))
    scenarios = ["run", "create+start+delete"]
    for what, table in (("", results), (" (CPU)", cpu_results)):
        for scenario in scenarios if table else ():
            row = f"{scenario + what:<26}"
            for name in rts:
                s = table.get(scenario, {}).get(name)
                row += f"{s[key]:>12.1f}" if s else f"{'failed':>12}"
            both = table.get(scenario, {})
            if "runc" in both and "berth" in both:
                row += f"{both['berth'][key] / both['runc'][key]:>12.2f}"
                row += f"{'<=' + format(GOALS[scenario], '.1f'):>8}" if not what else ""
            else:
                row += f"{'-':>12}"
            print(row)
    for (scenario, name), err in sorted(errors.items()):
        print(f"{name} {scenario} failed: {err}")

    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        doc = {
            "benchmark": "runtime_start",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tool": tool, "runs": args.runs, "warmup": args.warmup,
            "load_average": {"start": load_start, "end": load_end},
            "host": {"kernel": platform.release(), "machine": platform.machine(),
                     "cpus": os.cpu_count()},
            "runtimes": {n: {"binary": b, "version": version(b)} for n, b in rts.items()},
            "results": results, "cpu": cpu_results, "figure": key,
            "ratio_berth_over_runc": {
                s: r["berth"][key] / r["runc"][key]
                for s, r in results.items() if "berth" in r and "runc" in r},
            "errors": {f"{n} {s}": e for (s, n), e in errors.items()},
        }
        path = RESULTS / f"runtime_start-{stamp}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results: {path.relative_to(REPO)}")
    return PARTIAL if errors else 0


if __name__ == "__main__":
    sys.exit(main())
