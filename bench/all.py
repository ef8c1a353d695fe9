"""Every benchmark in one run, side by side with the peers installed from
Debian (runc, dockerd+containerd, podman where a benchmark uses it), so one
release can be compared with the next from a single file.

    bench/all.py [--quick] [--only runtime_start,engine,...]

Runs each bench/<name>.py in turn (each measures berth and its peer in the
same run and prints ratios, lower is better), prints the tables as they
come and writes them together to bench/results/all-<time>.txt.

On a loaded machine the run completes: each bench retries what is flaky
and, when a peer or a scenario still fails, writes its table with those
figures missing (exit 3: "figures missing"); a bench that crashes or
outlives its time limit (SIGTERM, so it cleans up, then SIGKILL) is
reported as such and the next one runs. The exit status is 1 only if a
bench wrote no table."""
import argparse
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PARTIAL = 3          # a bench's exit status: its table is written, figures are missing
LIMIT = (5400, 1800)  # seconds a bench may take: full run, --quick
CLEANUP_GRACE = 180   # after SIGTERM, for the bench's own clean-up

# name -> (arguments for a full run, arguments for --quick)
BENCHES = {
    "runtime_start": ([], ["--runs", "10", "--warmup", "1"]),
    "image_load": ([], ["--runs", "2", "--size-mb", "50", "--layers", "4"]),
    "engine": ([], ["--quick"]),
    "net": ([], ["--quick"]),
    "stress": ([], ["--quick"]),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer runs, smaller images")
    p.add_argument("--only", default="", help="comma-separated subset of " + ",".join(BENCHES))
    args = p.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else BENCHES) if n]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        p.error(f"unknown benchmark {unknown[0]!r}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = [f"berth benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, kernel {platform.release()}, "
           f"{os.cpu_count()} CPUs{' (quick)' if args.quick else ''}", ""]
    failed, partial = [], []
    for name in names:
        script = HERE / f"{name}.py"
        if not script.exists():
            out += [f"== {name}: not in this tree", ""]
            continue
        extra = BENCHES[name][1 if args.quick else 0]
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        code, text = run_bench(script, extra, LIMIT[1 if args.quick else 0])
        print(text, flush=True)
        if code == 0:
            status = "ok"
        elif code == PARTIAL:
            status = "ok, figures missing (see the table)"
            partial.append(name)
        else:
            status = f"FAILED ({'timed out' if code is None else f'exit {code}'})"
            failed.append(name)
        out += [f"== {name}: {status}, {time.monotonic() - t0:.0f} s", text.rstrip(), ""]
    if failed or partial:
        out.append("summary: " + "; ".join(
            [f"{n}: failed" for n in failed] + [f"{n}: figures missing" for n in partial]))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"all-{stamp}.txt"
    path.write_text("\n".join(out) + "\n")
    print(f"results: {path}")
    return 1 if failed else 0


def run_bench(script, extra, limit):
    """-> (exit status or None if it ran out of time, its output)."""
    proc = subprocess.Popen([sys.executable, str(script), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        text, _ = proc.communicate(timeout=limit)
        return proc.returncode, text
    except subprocess.TimeoutExpired:
        # SIGTERM: the benches clean up on it (daemons, containers, cgroups)
        proc.send_signal(signal.SIGTERM)
        try:
            text, _ = proc.communicate(timeout=CLEANUP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
        return None, (text or "") + f"\n{script.name}: stopped after {limit} s"


if __name__ == "__main__":
    sys.exit(main())
