"""The escape battery under berthd and under Docker, in the same run.

tests/api/escape_battery.sh (each probe really tries one escape class and
prints `NAME BLOCKED|OPEN detail`) runs inside an alpine container of each
engine, once with the defaults and once with --privileged: the container is
started with `docker run -d --network none alpine sleep 1000`, the script is
`docker cp`'d in and run with `docker exec`, while 5 more `docker exec` run
so the exec_window probe can watch /proc for the runtime's own binary.

Each engine has its own daemon under a temporary directory (berthd as the
api tests start it; Debian's dockerd through image_load.Dockerd, no bridge,
no iptables) and its own cgroup parent. Prints a table probe x {berth
default, docker default, berth privileged, docker privileged}, then the
details of every cell that differs between the engines, and writes it all to
bench/results/escapes-<time>.txt. Everything started (containers, daemons,
shims, cgroups, mounts, temp dirs) is removed at the end, on failure and on
Ctrl-C too. See bench/README.md.
"""
import argparse
import os
import platform
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
import engine as eng  # noqa: E402
import engines  # noqa: E402

# cgroup parents of our own, so a concurrent bench/engine.py is not touched
engines.BERTH_CGROUP = f"/berth-bench-escapes-{os.getpid()}"
engines.DOCKER_CGROUP = f"/berth-bench-escapes-{os.getpid()}-docker"

BATTERY = REPO / "tests" / "api" / "escape_battery.sh"
MODES = {"default": [], "privileged": ["--privileged"]}
COLUMNS = [("berth", "default"), ("docker", "default"),
           ("berth", "privileged"), ("docker", "privileged")]


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


def parse(out):
    res = {}
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[1] in ("BLOCKED", "OPEN"):
            res[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return res


def missing_caps():
    """Capabilities the kernel has but this host's bounding set lacks (runc
    1.1 --privileged asks for all of them and fails)."""
    sys.path.insert(0, str(REPO / "src"))
    from berth.sys import caps
    with open("/proc/self/status") as f:
        bnd = int(f.read().split("CapBnd:")[1].split()[0], 16)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    return [n[4:] for n in caps.NAMES
            if caps.number(n) <= last and not (bnd >> caps.number(n)) & 1]


def privileged_approximation():
    """What --privileged gives, as far as runc can apply it on this host:
    every capability the bounding set has, no seccomp, no masked or
    read-only /proc and /sys paths, every device allowed."""
    opts = ["--cap-add", "ALL"]
    for c in missing_caps():
        opts += ["--cap-drop", c]
    return opts + ["--security-opt", "seccomp=unconfined",
                   "--security-opt", "systempaths=unconfined",
                   "--device-cgroup-rule", "a *:* rwm"]


def start_container(e, name, opts):
    """docker run -d; on Docker, a --privileged runc cannot apply is retried
    as privileged_approximation(). Returns a note or None."""
    base = ["run", "-d", "--name", name, "--network", "none"]
    r = e.docker(*base, *opts, "alpine", "sleep", "1000", check=False)
    if r.returncode == 0:
        return None
    err = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[0]
    if e.name == "docker" and "--privileged" in opts and "apply caps" in err:
        e.docker("rm", "-f", name, check=False)
        approx = privileged_approximation()
        e.docker(*base, *approx, "alpine", "sleep", "1000")
        return (f"docker --privileged cannot start here ({err[err.find('runc'):][:120]}: "
                f"this host's bounding set lacks {', '.join(missing_caps())}); the column is "
                f"`{' '.join(approx)}` instead")
    raise RuntimeError(f"{e.name}: docker run {' '.join(opts)}: {err[:300]}")


def battery(e, opts, watch, execs):
    """({probe: (status, detail)}, note) of one run of the battery in a new
    container of engine e; the container is removed."""
    name = f"escapes-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    try:
        note = start_container(e, name, opts)
        e.docker("cp", str(BATTERY), f"{name}:/battery.sh")
        env = ["-e", f"BATTERY_HOST_PID={e.daemon_pids()[0]}", "-e", f"BATTERY_SOCKETS={e.sock}",
               "-e", f"BATTERY_WATCH={watch}"]
        box = {}
        t = threading.Thread(target=lambda: box.update(
            r=e.docker("exec", *env, name, "sh", "/battery.sh", check=False, timeout=180)))
        t.start()
        time.sleep(0.5)
        for _ in range(execs):
            e.docker("exec", name, "true", check=False)
        t.join()
        r = box["r"]
        if r.returncode != 0 or not r.stdout.rstrip().endswith("done"):
            raise RuntimeError(f"{e.name}: the battery exited {r.returncode}: "
                               f"{r.stderr.strip()[-300:]}")
        return parse(r.stdout), note
    finally:
        e.docker("rm", "-f", name, check=False)


def report(res, info, notes=()):
    probes = []
    for col in COLUMNS:
        for p in res.get(col, {}):
            if p not in probes:
                probes.append(p)
    heads = [f"{eng_} {mode}" + ("*" if (eng_, mode) in dict(notes) else "")
             for eng_, mode in COLUMNS]
    w = max([len(p) for p in probes] + [5]) + 2
    lines = [f"escape battery (tests/api/escape_battery.sh), berthd against dockerd "
             f"{info.get('server') or '?'}, docker CLI {info.get('client') or '?'}, "
             f"kernel {platform.release()}, {time.strftime('%Y-%m-%d %H:%M')}",
             "every container: --network none; privileged: --privileged; exec_window "
             "watched /proc for 3 s during 5 docker exec",
             *[f"* {c[0]} {c[1]}: {n}" for c, n in notes],
             "",
             "probe".ljust(w) + "".join(h.rjust(20) for h in heads),
             "-" * (w + 20 * len(heads))]
    for p in probes:
        row = p.ljust(w)
        for col in COLUMNS:
            st = res.get(col, {}).get(p, ("-", ""))[0] if col in res else "skipped"
            row += st.rjust(20)
        lines.append(row)
    opened = {col: sorted(p for p, (st, _) in r.items() if st == "OPEN") for col, r in res.items()}
    lines += ["", "OPEN per column: " + "; ".join(
        f"{c[0]} {c[1]} {len(opened.get(c, []))}" for c in COLUMNS if c in res)]
    lines += ["", "details where berth and docker differ, and of every OPEN under berth's defaults:"]
    for mode in MODES:
        b, d = res.get(("berth", mode), {}), res.get(("docker", mode), {})
        if not (b and d) and mode != "default":
            continue
        for p in probes:
            bs, ds = b.get(p, ("-", "")), d.get(p, ("-", ""))
            if bs[0] != ds[0] or (mode == "default" and bs[0] == "OPEN"):
                lines.append(f"  [{mode}] {p}")
                lines.append(f"      berth  {bs[0]}: {bs[1][:400]}")
                lines.append(f"      docker {ds[0]}: {ds[1][:400]}")
    lines += ["", "exec_window (the runtime's binary seen from inside during docker exec), every column:"]
    for col in COLUMNS:
        if col in res and "exec_window" in res[col]:
            st, detail = res[col]["exec_window"]
            lines.append(f"  {col[0]} {col[1]}: {st}: {detail[:300]}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--watch", type=int, default=3, help="seconds exec_window watches /proc")
    p.add_argument("--execs", type=int, default=5, help="docker exec run while it watches")
    p.add_argument("--engines", default="berth,docker")
    p.add_argument("--no-save", action="store_true", help="do not write the table")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("escapes.py: needs root (two container engines)")
    if not os.access(eng.BERTHD, os.X_OK):
        sys.exit(f"escapes.py: {eng.BERTHD} is missing: run make build")
    wanted = args.engines.split(",")
    if "docker" in wanted:
        err = eng.install_docker()
        if err:
            sys.exit(f"escapes.py: {err}")

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    work = Path(os.path.realpath(tempfile.mkdtemp(prefix="bx-")))  # short: sun_path
    engines = []
    if "berth" in wanted:
        engines.append(eng.BerthEngine(work / "b"))
    if "docker" in wanted:
        engines.append(eng.DockerEngine(work / "d"))
    res, info, status, notes = {}, {}, 0, []
    try:
        for e in engines:
            e.work.mkdir(parents=True, exist_ok=True)
            e.start()
            e.docker("load", "-i", eng.ALPINE)
            e.docker("image", "inspect", "alpine")
        docker = next((e for e in engines if e.name == "docker"), None)
        if docker:
            info = docker.d.versions()
        for mode, opts in MODES.items():
            for e in engines:
                print(f"[{time.strftime('%H:%M:%S')}] {e.name} {mode}", flush=True)
                res[(e.name, mode)], note = battery(e, opts, args.watch, args.execs)
                if note:
                    notes.append(((e.name, mode), note))
    except (Exception, KeyboardInterrupt, Interrupted) as err:
        print(f"escapes.py: stopped: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        eng.cleanup(engines, work)
        for s, h in old.items():
            signal.signal(s, h)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    text = report(res, info, notes)
    print(text)
    if not args.no_save and res:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"escapes-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        path.write_text(text + "\n")
        print(f"results: {path.relative_to(REPO)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
