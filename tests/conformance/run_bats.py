"""Runs runc's own bats integration suite against two runtimes and compares.

Every test runs alone (bats --filter), under a timeout, on a pty of its own,
with a TMPDIR of its own that is swept afterwards (containers deleted, mounts
under it detached), and the whole run sits in a network namespace with only
loopback. Prints a table per .bats file for each runtime, the tests the peer
passes and berth-runtime does not, and checks them against the expectations
file: exit status 1 when a test fails that is not listed, or a listed test
passes (the list only shrinks), or the list names a test the suite lacks.

Usage: run_bats.py --suite DIR [--peer PATH] [--berth PATH] [--expected FILE]
                   [--files a.bats,b.bats] [--filter REGEX] [--reuse-peer]
"""
import argparse
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NETNS_MARK = "BERTH_CONFORMANCE_NETNS"
CGROUP_ROOT = "/sys/fs/cgroup"
SUITE_CGROUP = "runc-cgroups-integration-test"  # helpers.bash's set_cgroups_path
TAP = re.compile(r"^(ok|not ok) \d+ (.*?)(?: # skip ?(.*))?\r?$")


def tests_of(path):
    names = []
    with open(path) as f:
        for line in f:
            m = re.match(r'^@test "(.*)" \{', line)
            if m:
                names.append(m.group(1))
    return names


def ere_exact(name):
    """An anchored POSIX ERE (what bats' --filter uses) matching name only."""
    out = []
    for c in name:
        if c == "\\":
            out.append("[\\]")
        elif c == "^":
            out.append("\\^")
        elif c in ".[]()*+?{}|$":
            out.append("[" + c + "]")
        else:
            out.append(c)
    return "^" + "".join(out) + "$"


def on_pty(argv, env, cwd, timeout, log):
    """Runs argv in a session of its own on a fresh pty; returns (output, timed_out)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                            start_new_session=True, close_fds=True)
    os.close(slave)
    chunks, deadline, timed_out = [], time.monotonic() + timeout, False
    while True:
        left = deadline - time.monotonic()
        if left <= 0 and not timed_out:
            timed_out = True
            _signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            continue
        if left <= 0:
            _signal_group(proc.pid, signal.SIGKILL)
            break
        ready, _, _ = select.select([master], [], [], min(left, 1.0))
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the slave is gone
                data = b""
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            # the bats process is gone; a container may still hold the pty
            break
    os.close(master)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    text = b"".join(chunks).decode(errors="replace")
    with open(log, "w") as f:
        f.write(text)
        if timed_out:
            f.write("\n# conformance driver: timed out after %ds\n" % timeout)
    return text, timed_out


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def sweep(runtime, tmpdir):
    """Removes what a test left: its containers, then mounts under its TMPDIR."""
    for top, dirs, _ in os.walk(tmpdir):
        if os.path.basename(top) == "state" and os.path.basename(os.path.dirname(top)).startswith("runc."):
            res = subprocess.run([runtime, "--root", top, "list", "-q"], capture_output=True, text=True, timeout=60)
            for ct in res.stdout.split():
                subprocess.run([runtime, "--root", top, "delete", "-f", ct], capture_output=True, timeout=60)
            dirs[:] = []
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == tmpdir or point.startswith(tmpdir + "/"):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(tmpdir, ignore_errors=True)
    remove_suite_cgroups()


def remove_suite_cgroups():
    """The suite's cgroups live under one fixed name; runc leaves parents
    there (the unified one of a hybrid host, a test's own mkdir -p). Empty
    ones go; one still in use stays (rmdir refuses it)."""
    for h in os.listdir(CGROUP_ROOT):
        top = os.path.join(CGROUP_ROOT, h, SUITE_CGROUP)
        if os.path.islink(os.path.join(CGROUP_ROOT, h)) or not os.path.isdir(top):
            continue
        for d, _, _ in sorted(os.walk(top), key=lambda t: t[0].count("/"), reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass


def run_one(runtime, bats_file, name, args, work, index):
    """index: the test's place in its file, which names its log."""
    tmpdir = os.path.join(work, "tmp", "%d" % index)
    os.makedirs(tmpdir, exist_ok=True)
    log = os.path.join(work, "logs", "%s.%02d.log" % (os.path.basename(bats_file)[:-5], index))
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "TERM": "dumb", "LANG": "C.UTF-8", "TMPDIR": tmpdir, "RUNC": runtime}
    started = time.monotonic()
    text, timed_out = on_pty(["bats", "--tap", "--filter", ere_exact(name), bats_file], env,
                             os.path.dirname(bats_file), args.timeout, log)
    took = time.monotonic() - started
    sweep(runtime, tmpdir)
    result = "not ok"
    for line in text.splitlines():
        m = TAP.match(line)
        if m and m.group(2) == name:
            result = "skip" if m.group(3) is not None else m.group(1)
    if timed_out:
        result = "not ok"
    return {"result": result, "seconds": round(took, 1), "timed_out": timed_out, "log": log}


def run_suite(label, runtime, files, args):
    work = os.path.join(args.work, label)
    partial = bool(args.files or args.filter)
    if not partial:
        shutil.rmtree(os.path.join(work, "logs"), ignore_errors=True)
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    results = {}
    for bats_file in files:
        for index, name in enumerate(tests_of(bats_file), 1):
            if args.filter and not re.search(args.filter, name):
                continue
            r = run_one(runtime, bats_file, name, args, work, index)
            results["%s: %s" % (os.path.basename(bats_file), name)] = r
            note = " (timed out)" if r["timed_out"] else ""
            print("%-6s %-6s %5.1fs %s: %s%s" % (label, r["result"], r["seconds"],
                                                 os.path.basename(bats_file), name, note), flush=True)
    # a partial run (--files, --filter) leaves the last full run's results
    with open(os.path.join(work, "results-partial.json" if partial else "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return results


def table(label, results, files):
    print("\n%s" % label)
    print("%-28s %4s %7s %5s" % ("file", "ok", "not ok", "skip"))
    total = [0, 0, 0]
    for bats_file in files:
        base = os.path.basename(bats_file)
        counts = [0, 0, 0]
        for key, r in results.items():
            if key.startswith(base + ": "):
                counts[("ok", "not ok", "skip").index(r["result"])] += 1
        if sum(counts):
            print("%-28s %4d %7d %5d" % (base, *counts))
        total = [a + b for a, b in zip(total, counts)]
    print("%-28s %4d %7d %5d" % ("total", *total))


def load_expected(path):
    expected = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split(" | ")]
            if len(parts) != 3 or not parts[2]:
                sys.exit("%s:%d: want 'file.bats | test name | reason'" % (path, n))
            expected["%s: %s" % (parts[0], parts[1])] = parts[2]
    return expected


def compare(peer, berth, expected, all_names):
    bad = 0
    differ = sorted(k for k in peer if peer[k]["result"] == "ok" and k in berth and berth[k]["result"] != "ok")
    print("\npass with runc, not with berth-runtime: %d" % len(differ))
    for key in differ:
        tag = "expected" if key in expected else "UNEXPECTED"
        if key not in expected:
            bad += 1
        print("  %-10s %s (%s)" % (tag, key, berth[key]["log"]))
    for key, reason in sorted(expected.items()):
        if key not in all_names:
            bad += 1
            print("  STALE      %s: no such test in the suite" % key)
        elif key in berth and berth[key]["result"] == "ok":
            bad += 1
            print("  PASSES NOW %s: remove it from the expectations file" % key)
        elif key in peer and peer[key]["result"] != "ok":
            print("  (not exercised: runc gives %s) %s" % (peer[key]["result"], key))
    return bad


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--suite", required=True, help="runc's tests/integration")
    p.add_argument("--peer", default=shutil.which("runc") or "/usr/sbin/runc")
    p.add_argument("--berth", default=os.path.join(REPO, "bin", "berth-runtime"))
    p.add_argument("--expected", default=os.path.join(HERE, "runc-expected.txt"))
    p.add_argument("--work", default=os.path.join(REPO, "build", "conformance", "run"))
    p.add_argument("--files", default="", help="comma-separated .bats files (default: all)")
    p.add_argument("--filter", default="", help="regex on test names")
    p.add_argument("--timeout", type=int, default=180, help="seconds per test")
    p.add_argument("--reuse-peer", action="store_true", help="take runc's results from the last run")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("run_bats: runc's suite is run as root here")
    if os.environ.get(NETNS_MARK) != str(os.getpid()):
        # a network namespace of our own with only loopback, for the whole run
        env = dict(os.environ)
        script = "ip link set lo up && export %s=$$ && exec \"$@\"" % NETNS_MARK
        os.execvpe("unshare", ["unshare", "--net", "--", "sh", "-c", script, "sh",
                               sys.executable, *sys.argv], env)
    args.suite = os.path.abspath(args.suite)
    args.work = os.path.abspath(args.work)
    names = sorted(f for f in os.listdir(args.suite) if f.endswith(".bats"))
    if args.files:
        wanted = args.files.split(",")
        unknown = set(wanted) - set(names)
        if unknown:
            sys.exit("run_bats: no such file in the suite: %s" % ", ".join(sorted(unknown)))
        names = [n for n in names if n in wanted]
    files = [os.path.join(args.suite, n) for n in names]
    all_names = {"%s: %s" % (n, t) for n in os.listdir(args.suite) if n.endswith(".bats")
                 for t in tests_of(os.path.join(args.suite, n))}
    expected = load_expected(args.expected)
    if args.reuse_peer:
        with open(os.path.join(args.work, "runc", "results.json")) as f:
            peer = json.load(f)
        if args.files or args.filter:
            peer = {k: v for k, v in peer.items()
                    if k.split(": ", 1)[0] in names and re.search(args.filter, k.split(": ", 1)[1])}
    else:
        peer = run_suite("runc", args.peer, files, args)
    berth = run_suite("berth", os.path.abspath(args.berth), files, args)
    table("runc (%s)" % args.peer, peer, files)
    table("berth-runtime (%s)" % args.berth, berth, files)
    if args.files or args.filter:
        expected = {k: v for k, v in expected.items() if k in berth}
        all_names = set(berth)
    bad = compare(peer, berth, expected, all_names)
    print("\nexpectations file: %d entries; %s" % (len(load_expected(args.expected)),
                                                  "FAILED: %d" % bad if bad else "all as expected"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
