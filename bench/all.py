"""Every benchmark in one run, side by side with the peers installed from
Debian (runc, dockerd+containerd, podman where a benchmark uses it), so one
release can be compared with the next from a single file.

    bench/all.py [--quick] [--only runtime_start,engine,...]

Runs each bench/<name>.py in turn (each measures berth and its peer in the
same run and prints ratios, lower is better), prints the tables as they
come and writes them together to bench/results/all-<time>.txt."""
import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

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
    failed = []
    for name in names:
        script = HERE / f"{name}.py"
        if not script.exists():
            out += [f"== {name}: not in this tree", ""]
            continue
        extra = BENCHES[name][1 if args.quick else 0]
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, str(script), *extra], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        print(r.stdout, flush=True)
        status = "ok" if r.returncode == 0 else f"FAILED (exit {r.returncode})"
        if r.returncode != 0:
            failed.append(name)
        out += [f"== {name}: {status}, {time.monotonic() - t0:.0f} s", r.stdout.rstrip(), ""]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"all-{stamp}.txt"
    path.write_text("\n".join(out) + "\n")
    print(f"results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
