"""docker-py's own integration suite against a dockerd of our own and against
berthd, side by side (`make dockerpy-conformance`).

The suite is the tests/ tree of PyPI's sdist of `docker` at the version the
venv has (so the client under test and its tests agree), kept under
build/dockerpy/. Each daemon runs in a network namespace of its own with only
loopback, so no pull leaves the machine and its bridge collides with nothing;
the images the suite expects (alpine:3.10, alpine:latest, busybox:latest) are
loaded from the fixtures. Per test file it prints dockerd's and berthd's
pass/fail/skip and the tests that pass on dockerd and fail on berthd.

dockerpy-expected.txt lists the deliberate differences, one pattern (fnmatch
on `file.py::Class::test`) and its reason a line. The run exits non-zero when
a test passes on dockerd and fails on berthd without a pattern for it, or when
a pattern matches no such test any more (stale: remove it).

    tests/conformance/dockerpy_conformance.py [--only dockerd|berthd] [-k EXPR] [FILE ...]
"""
import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "bench")]
from shared_dir import FIXTURES  # noqa: E402
from image_load import NETNS_WRAP  # noqa: E402

VPY = sys.executable
WORK = REPO / "build" / "dockerpy"
EXPECTED = HERE / "dockerpy-expected.txt"
IMAGES = ("alpine-3.10", "alpine-3.20", "busybox-1.38")
TEST_TIMEOUT = 90       # seconds per test: a hang on one daemon must not stop the run
# BERTHD points the run at another launcher (an older build, to measure)
BERTHD = os.environ.get("BERTHD") or str(REPO / "bin" / "berthd")
API_VERSION = "1.41"    # what Debian's dockerd 20.10 speaks; berthd claims at least that


def _api_conftest():
    """tests/api/daemons.py: its private_berthd() and private_dockerd() bring
    up and tear down the daemons exactly as the API tests do."""
    sys.path[:0] = [str(REPO / "tests" / "api"), str(REPO / "tests")]
    import daemons
    return daemons


def fetch_suite():
    """-> the unpacked sdist's root (it holds tests/integration)."""
    import docker
    ver = docker.__version__
    root = WORK / f"docker-{ver}"
    if (root / "tests" / "integration").is_dir():
        return root
    WORK.mkdir(parents=True, exist_ok=True)
    sdist = WORK / f"docker-{ver}.tar.gz"
    if not sdist.exists():
        subprocess.run([VPY, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        f"docker=={ver}", "-d", str(WORK)], check=True)
    with tarfile.open(sdist) as tf:
        members = [m for m in tf.getmembers() if m.name.startswith(f"docker-{ver}/tests/")]
        if not members:
            sys.exit(f"the sdist of docker {ver} has no tests/: pin a version whose sdist ships them")
        tf.extractall(WORK, members=members, filter="data")
    return root


def load_images(env):
    for name in IMAGES:
        r = subprocess.run(["docker", "load", "-q", "-i", str(FIXTURES / "images" / f"{name}.tar")],
                           env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"docker load {name}: {r.stderr.strip()}")


def run_suite(root, env, xml_path, select):
    # the suite turns warnings into errors; setuptools' distutils warns on
    # every StrictVersion docker-py makes, the stdlib's does not
    env = dict(env, DOCKER_TEST_API_VERSION=API_VERSION, PYTHONDONTWRITEBYTECODE="1",
               SETUPTOOLS_USE_DISTUTILS="stdlib")
    for k in ("PYTHONPATH", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        env.pop(k, None)
    argv = [VPY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-o", "junit_family=xunit1",
            f"--timeout={TEST_TIMEOUT}", f"--junitxml={xml_path}", "-rN"]
    if select.k:
        argv += ["-k", select.k]
    # credentials/ tests the credential helpers, not a daemon, and its
    # utils_test rebinds os.environ, so every later test loses DOCKER_HOST
    argv += [f"tests/integration/{f}" for f in select.files] or [
        "tests/integration", "--ignore=tests/integration/credentials"]
    log = xml_path.with_suffix(".log")
    with open(log, "w") as out:
        subprocess.run(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL)
    print(f"  log: {WORK / log.name}", flush=True)
    return parse_junit(xml_path)


def parse_junit(path):
    """-> {"file.py::Class::test": "pass" | "fail" | "skip"}"""
    results = {}
    for case in ET.parse(path).iter("testcase"):
        # xunit1 names the file; the classname ends with the class, if any
        file = os.path.basename(case.get("file", ""))
        cls = case.get("classname", "").rpartition(".")[2]
        cls = "" if file.startswith(cls + ".") else cls
        test_id = "::".join(p for p in (file, cls, case.get("name")) if p)
        tags = {child.tag for child in case}
        outcome = "fail" if tags & {"failure", "error"} else "skip" if "skipped" in tags else "pass"
        if results.get(test_id) != "fail":  # a teardown error adds a second entry
            results[test_id] = outcome
    return results


def on_dockerd(root, select, tmp):
    conftest = _api_conftest()
    with conftest.private_dockerd() as d:
        try:
            load_images(d.env)
            print(f"dockerd {d.json('GET', '/version')['Version']}: running docker-py's suite",
                  flush=True)
            return run_suite(root, d.env, tmp / "dockerd.xml", select)
        finally:
            # the suite's swarm tests may leave it a manager
            subprocess.run(["docker", "swarm", "leave", "--force"], env=d.env,
                           capture_output=True, timeout=300)


def on_berthd(root, select, tmp):
    conftest = _api_conftest()
    wrapper = tmp / "berthd-netns"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(f"'{a}'" for a in NETNS_WRAP)
                       + f" '{BERTHD}' \"$@\"\n")
    wrapper.chmod(0o755)
    conftest.BERTHD = str(wrapper)
    with conftest.private_berthd() as d:
        load_images(d.env)
        print("berthd: running docker-py's suite", flush=True)
        return run_suite(root, d.env, tmp / "berthd.xml", select)


def read_expected():
    """-> [(pattern, reason)] from dockerpy-expected.txt"""
    out = []
    for n, line in enumerate(EXPECTED.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, sep, reason = line.partition(" ")
        if not sep or not reason.strip():
            sys.exit(f"{EXPECTED}:{n}: a pattern needs a reason after it")
        out.append((pattern, reason.strip()))
    return out


def report(dockerd, berthd, expected):
    """Prints the per-file table and the differences -> exit status."""
    files = sorted({t.split("::")[0] for t in dockerd} | {t.split("::")[0] for t in berthd})
    print(f"\n{'file':34} {'dockerd pass/fail/skip':>24} {'berthd pass/fail/skip':>24}")
    total = {"d": [0, 0, 0], "b": [0, 0, 0]}
    for f in files:
        row = []
        for key, res in (("d", dockerd), ("b", berthd)):
            counts = [sum(1 for t, o in res.items() if t.split("::")[0] == f and o == x)
                      for x in ("pass", "fail", "skip")]
            total[key] = [a + b for a, b in zip(total[key], counts)]
            row.append("/".join(map(str, counts)))
        print(f"{f:34} {row[0]:>24} {row[1]:>24}")
    print(f"{'total':34} {'/'.join(map(str, total['d'])):>24} {'/'.join(map(str, total['b'])):>24}")

    differ = sorted(t for t, o in dockerd.items() if o == "pass" and berthd.get(t) != "pass")
    used = set()
    unexpected = []
    for t in differ:
        hit = next((p for p, _ in expected if fnmatch.fnmatchcase(t, p)), None)
        if hit:
            used.add(hit)
        else:
            unexpected.append(t)
    print(f"\npass on dockerd, not on berthd: {len(differ)} ({len(differ) - len(unexpected)} expected)")
    for t in unexpected:
        print(f"  UNEXPECTED {t} (berthd: {berthd.get(t, 'not run')})")
    stale = [(p, r) for p, r in expected if p not in used and _ran(p, dockerd)]
    for p, r in stale:
        print(f"  STALE expectation {p} ({r}): no test it names differs now")
    return 1 if unexpected or stale else 0


def _ran(pattern, results):
    """A pattern is only judged stale when this run ran a test it names."""
    return any(fnmatch.fnmatchcase(t, pattern) for t in results)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="test files under tests/integration (default: all)")
    ap.add_argument("-k", help="pytest -k expression, to run a part")
    ap.add_argument("--only", choices=("dockerd", "berthd", "none"),
                    help="run on one daemon; the other's results come from its last run "
                         "(build/dockerpy/DAEMON.json)")
    ap.add_argument("--report", action="store_true",
                    help="run nothing: compare both daemons' last results again")
    select = ap.parse_args()
    if select.report:
        select.only = "none"
    if os.geteuid() != 0:
        sys.exit("the daemons run as root")
    if not shutil.which("dockerd") or not shutil.which("docker"):
        sys.exit("dockerd and the docker CLI come with `make deps` (docker.io)")
    root = fetch_suite()
    expected = read_expected()
    tmp = Path(tempfile.mkdtemp(prefix="dockerpy-", dir=WORK))
    runs = {"dockerd": on_dockerd, "berthd": on_berthd}
    results, errors = {}, {}

    def run(name):
        try:
            results[name] = runs[name](root, select, tmp)
            (WORK / f"{name}.json").write_text(json.dumps(results[name], indent=0, sort_keys=True))
        except Exception as e:  # noqa: BLE001 - reported below, the other run goes on
            errors[name] = e
    try:
        # side by side: the two daemons share nothing, and the suite is long
        threads = [threading.Thread(target=run, args=(n,)) for n in runs
                   if select.only in (None, n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name, e in errors.items():
            print(f"{name}: the run failed: {e}", file=sys.stderr)
        if errors:
            return 2
        for name in runs:
            if name not in results:
                cached = WORK / f"{name}.json"
                if not cached.exists():
                    sys.exit(f"no earlier results of {name} in {cached}: run without --only")
                results[name] = json.loads(cached.read_text())
        dockerd, berthd = results["dockerd"], results["berthd"]
        if select.files or select.k:
            ran = results.get(select.only, results["berthd"])
            dockerd = {t: o for t, o in dockerd.items() if t in ran}
            berthd = {t: o for t, o in berthd.items() if t in ran}
        return report(dockerd, berthd, expected)
    finally:
        for log in tmp.glob("*.log"):
            shutil.copy(log, WORK / log.name)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
