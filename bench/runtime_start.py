"""Start-up time of berth-runtime against runc, measured in the same run.

Two scenarios on a busybox bundle whose process is /bin/true:
  run                   `RT run --bundle B ID` (create, start, wait, delete)
  create+start+delete   three separate invocations, as an engine makes them

Uses hyperfine when installed, a plain timing loop otherwise. Prints a table
(mean ms per runtime and the ratio berth/runc) and writes the numbers to
bench/results/runtime_start-<time>.json. See bench/README.md.
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
from stats import summary  # noqa: E402

RESULTS = HERE / "results"


def runtimes(args):
    found = {"runc": shutil.which("runc") or "runc",
             "berth": args.berth or os.environ.get("BERTH_RUNTIME")
             or str(REPO / "bin" / "berth-runtime")}
    return {name: found[name] for name in args.runtimes.split(",")}


def commands(binary, root, bundle, cid):
    rt = f"{shlex.quote(binary)} --root {shlex.quote(str(root))}"
    b = shlex.quote(str(bundle))
    return {
        "run": f"{rt} run --bundle {b} {cid}",
        "create+start+delete": (f"{rt} create --bundle {b} {cid} && "
                                f"{rt} start {cid} && {rt} delete -f {cid}"),
    }


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


def with_loop(cmds, runs, warmup, workdir):
    times = {}
    for label, cmd in cmds.items():
        for _ in range(warmup):
            sh(cmd)
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            r = sh(cmd)
            samples.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise RuntimeError(f"{label}: {r.stderr.strip()[-300:]}")
        times[label] = samples
    return times


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
    p.add_argument("--no-hyperfine", action="store_true",
                   help="time with a plain loop even if hyperfine is installed")
    p.add_argument("--no-save", action="store_true", help="do not write JSON")
    args = p.parse_args(argv)

    # bench/all.py's time limit sends SIGTERM: leave through the clean-up below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    use_hyperfine = shutil.which("hyperfine") and not args.no_hyperfine
    tool = "hyperfine" if use_hyperfine else "loop"
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
            # a runtime that cannot do the job is reported, not timed
            for scenario, cmd in mine.items():
                r = sh(cmd)
                if r.returncode != 0:
                    last = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
                    errors[(scenario, name)] = last[:200]
                else:
                    cmds[(scenario, name)] = cmd
        labels = {f"{name} {scenario}": (scenario, name) for scenario, name in cmds}
        shell_cmds = {label: cmds[key] for label, key in labels.items()}
        measure = with_hyperfine if use_hyperfine else with_loop
        times = {}
        # one command at a time, tried twice: a run the loaded host fails
        # costs that figure, not the table
        for label, cmd in shell_cmds.items():
            for attempt in (1, 2):
                try:
                    times.update(measure({label: cmd}, args.runs, args.warmup, work))
                    break
                except (RuntimeError, ValueError, OSError) as e:
                    if attempt == 2:
                        errors[labels[label]] = str(e)[:200]
    finally:
        for binary, root, cid in cleanup:
            subprocess.run([binary, "--root", str(root), "delete", "-f", cid],
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    results = {}
    for label, samples in times.items():
        scenario, name = labels[label]
        results.setdefault(scenario, {})[name] = summary(samples)

    scenarios = ["run", "create+start+delete"]
    print(f"runtime start-up, /bin/true in a busybox bundle, {args.runs} runs "
          f"({tool})")
    head = f"{'scenario':<22}" + "".join(f"{n + ' ms':>14}" for n in rts) + f"{'berth/runc':>12}"
    print(head)
    print("-" * len(head))
    for scenario in scenarios:
        row = f"{scenario:<22}"
        for name in rts:
            s = results.get(scenario, {}).get(name)
            row += f"{s['mean_ms']:>9.1f} ±{s['stddev_ms']:>3.1f}" if s else f"{'failed':>14}"
        both = results.get(scenario, {})
        if "runc" in both and "berth" in both:
            row += f"{both['berth']['mean_ms'] / both['runc']['mean_ms']:>12.2f}"
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
            "host": {"kernel": platform.release(), "machine": platform.machine(),
                     "cpus": os.cpu_count()},
            "runtimes": {n: {"binary": b, "version": version(b)} for n, b in rts.items()},
            "results": results,
            "ratio_berth_over_runc": {
                s: r["berth"]["mean_ms"] / r["runc"]["mean_ms"]
                for s, r in results.items() if "berth" in r and "runc" in r},
            "errors": {f"{n} {s}": e for (s, n), e in errors.items()},
        }
        path = RESULTS / f"runtime_start-{stamp}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results: {path.relative_to(REPO)}")
    return PARTIAL if errors else 0


if __name__ == "__main__":
    sys.exit(main())
