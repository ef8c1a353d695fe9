"""Fixtures that run the same scenario against runc and berth-runtime.

`runtime` is parametrized over both; each instance has a private --root,
remembers every container id and bundle it was handed, and in teardown
deletes them all and fails the test if a cgroup or a mount survived."""
import itertools
import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import bundle as bundles
from cgroup_cleanup import remove_cgroups

REPO = Path(__file__).resolve().parents[2]
BINARIES = {
    "runc": "runc",
    # BERTH_RUNTIME points the "berth" half elsewhere (another build, or a
    # runc wrapper to check the harness itself)
    "berth": os.environ.get("BERTH_RUNTIME") or str(REPO / "bin" / "berth-runtime"),
}
CGROUP_ROOT = "/sys/fs/cgroup"
TIMEOUT = 30

_counter = itertools.count(1)


@dataclass
class Result:
    args: list
    returncode: int
    stdout: str
    stderr: str
    out_path: Path
    err_path: Path

    def __str__(self):
        return (f"$ {' '.join(map(str, self.args))}\n-> exit {self.returncode}\n"
                f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}")


class Spawned:
    """A runtime command left running (e.g. `run` in the foreground)."""

    def __init__(self, rt, argv, proc, out, err):
        self.rt, self.argv, self.proc, self.out, self.err = rt, argv, proc, out, err

    def wait(self, timeout=TIMEOUT):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"timed out after {timeout}s: {' '.join(self.argv)}")
        return self.rt._result(self.argv, self.proc.returncode, self.out, self.err)

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


class Runtime:
    def __init__(self, name, workdir, token=None):
        self.name = name
        # ids carry the session's token so the leftovers check can tell
        # this session's containers from another run's
        self.token = token or secrets.token_hex(3)
        self.binary = BINARIES[name]
        self.workdir = Path(workdir)
        self.root = self.workdir / "root"
        self.io = self.workdir / "io"
        self.io.mkdir(parents=True, exist_ok=True)
        self.ids = []
        self.bundles = []
        self.spawned = []
        self.history = []
        self._n = itertools.count(1)

    def __repr__(self):
        return f"<Runtime {self.name} root={self.root}>"

    # ------------------------------------------------------------ running

    def new_id(self, hint="c"):
        cid = f"berth-test-{self.token}-{hint}-{next(_counter)}"
        self.ids.append(cid)
        return cid

    def argv(self, args):
        return [self.binary, "--root", str(self.root), *map(str, args)]

    def _note(self, args):
        args = [str(a) for a in args]
        if not args:
            return
        verb = args[0]
        if (verb in ("create", "run") and len(args) > 1
                and args[-1] not in self.ids and safe_id(args[-1])):
            self.ids.append(args[-1])
        for i, a in enumerate(args[:-1]):
            if a in ("--bundle", "-b"):
                self.bundles.append(str(Path(args[i + 1]).resolve()))
            elif a.startswith("--bundle="):
                self.bundles.append(str(Path(a.split("=", 1)[1]).resolve()))

    def _popen(self, args, stdin=None):
        if self.name == "berth" and not os.path.exists(self.binary):
            pytest.fail(f"{self.binary} is missing: run `make build` in {REPO}")
        self._note(args)
        n = next(self._n)
        out = self.io / f"{n}.out"
        err = self.io / f"{n}.err"
        argv = self.argv(args)
        # files, not pipes: a created/detached container keeps the runtime's
        # stdio, and a pipe it holds open would never reach EOF
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = subprocess.Popen(
                argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=fo, stderr=fe, start_new_session=True)
        return argv, proc, out, err

    def _result(self, argv, rc, out, err):
        res = Result(argv, rc, out.read_text(errors="replace"),
                     err.read_text(errors="replace"), out, err)
        self.history.append(res)
        return res

    def recent(self, n=3):
        """The last n commands, for failure messages."""
        return "\n".join(f"  $ {' '.join(map(str, r.args[3:]))} -> {r.returncode}"
                         f"{'  stderr: ' + r.stderr.strip()[-400:] if r.stderr.strip() else ''}"
                         for r in self.history[-n:])

    def run(self, args, check=True, timeout=TIMEOUT, input=None):
        """Run one runtime command; check=True fails the test on non-zero."""
        stdin = None
        if input is not None:
            n = next(self._n)
            inp = self.io / f"{n}.in"
            inp.write_bytes(input.encode() if isinstance(input, str) else input)
            stdin = open(inp, "rb")
        try:
            argv, proc, out, err = self._popen(args, stdin)
        finally:
            if stdin is not None:
                stdin.close()
        sp = Spawned(self, argv, proc, out, err)
        res = sp.wait(timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{self.name} failed:\n{res}")
        return res

    def spawn(self, args):
        sp = Spawned(self, *self._popen(args))
        self.spawned.append(sp)
        return sp

    def run_bundle(self, bundle, cid=None, extra=(), timeout=TIMEOUT):
        """`run --bundle B ID` in the foreground; the container's stdout and
        stderr are the result's (terminal is off)."""
        cid = cid or self.new_id("run")
        return self.run(["run", *extra, "--bundle", bundle, cid],
                        check=False, timeout=timeout)

    def state(self, cid):
        res = self.run(["state", cid])
        return json.loads(res.stdout)

    def wait_status(self, cid, status, timeout=10):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            res = self.run(["state", cid], check=False)
            if res.returncode == 0:
                last = json.loads(res.stdout)["status"]
                if last == status:
                    return
            time.sleep(0.02)
        raise AssertionError(f"{cid}: status {last!r}, wanted {status!r}")

    # ------------------------------------------------------------ cleanup

    def cleanup(self):
        """Delete everything this runtime made; return the leftovers found."""
        for sp in self.spawned:
            if sp.proc.poll() is None:
                # foreground `run` still waiting: its container goes below
                try:
                    sp.proc.wait(0.5)
                except subprocess.TimeoutExpired:
                    sp.kill()
        if self.name == "berth" and not os.path.exists(self.binary):
            binary_ok = False
        else:
            binary_ok = True
        for cid in self.ids:
            if binary_ok:
                try:
                    subprocess.run(self.argv(["delete", "-f", cid]),
                                   capture_output=True, timeout=15)
                except subprocess.TimeoutExpired:
                    pass
        problems = []
        for cid in filter(safe_id, self.ids):
            dirs = cgroup_dirs(cid)
            if dirs:
                problems.append(f"{self.name}: cgroups left for {cid}: {dirs}")
                remove_cgroups(dirs)
        # only paths inside this test's own tmp dir: a stray "--bundle /"
        # must not make teardown unmount the host
        scope = str(self.workdir.parent) + "/"
        marks = [m for m in [str(self.root)] + self.bundles
                 if m.startswith(scope)]
        mounts = mounts_mentioning(marks)
        if mounts:
            problems.append(f"{self.name}: mounts left: {mounts}")
            for mp in reversed(mounts):
                subprocess.run(["umount", "-l", mp], capture_output=True)
        return problems


def safe_id(cid):
    """Only ids this harness made are looked up and cleaned by name: an
    empty or odd id would match (and kill) unrelated cgroups."""
    return (isinstance(cid, str) and cid.startswith("berth-test-")
            and "/" not in cid and len(cid) > len("berth-test-"))


def cgroup_dirs(cid, max_depth=5):
    if not safe_id(cid):
        raise ValueError(f"refusing to look for cgroups of id {cid!r}")
    found = []
    try:
        tops = [os.path.join(CGROUP_ROOT, h) for h in os.listdir(CGROUP_ROOT)]
    except OSError:
        return found
    for top in tops:
        if os.path.islink(top) or not os.path.isdir(top):
            continue
        stack = [(top, 0)]
        while stack:
            d, depth = stack.pop()
            try:
                it = os.scandir(d)
            except OSError:
                continue
            with it:
                for e in it:
                    if not e.is_dir(follow_symlinks=False):
                        continue
                    if cid in e.name:
                        found.append(e.path)
                    elif depth + 1 < max_depth:
                        stack.append((e.path, depth + 1))
    return found


def mountinfo():
    with open("/proc/self/mountinfo") as f:
        return [line.split() for line in f]


def mounts_mentioning(marks):
    """Mount points in this mount namespace that lie under or come from one
    of the given paths."""
    found = []
    for fields in mountinfo():
        root, mp = fields[3], fields[4]
        sep = fields.index("-")
        source = fields[sep + 2]
        for m in marks:
            if any(x == m or x.startswith(m + "/") for x in (mp, root, source)):
                found.append(mp)
                break
    return found


def processes_rooted_in(path):
    """Pids whose root directory is path or lies below it."""
    path = str(path)
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue
        if root == path or root.startswith(path + "/"):
            found.append(int(pid))
    return found


class HostChecks:
    """What a container may leave on the host, for tests to assert on."""
    cgroup_dirs = staticmethod(cgroup_dirs)
    mounts_mentioning = staticmethod(mounts_mentioning)
    processes_rooted_in = staticmethod(processes_rooted_in)


@pytest.fixture
def host():
    return HostChecks()


def make_runtime(name, workdir, request):
    try:
        token = request.getfixturevalue("session_token")
    except pytest.FixtureLookupError:
        token = None
    rt = Runtime(name, workdir, token)

    def finish():
        problems = rt.cleanup()
        if problems:
            pytest.fail("left behind after the test:\n" + "\n".join(problems))
    request.addfinalizer(finish)
    return rt


def difference(got, ref, name, where="result"):
    """Lines naming where two scenario results differ."""
    if isinstance(got, dict) and isinstance(ref, dict):
        lines = []
        for k in sorted(set(got) | set(ref), key=str):
            if got.get(k) != ref.get(k):
                lines.append(difference(got.get(k), ref.get(k), name, f"{where}[{k!r}]"))
        return "\n".join(lines)
    if (isinstance(got, (list, tuple)) and isinstance(ref, (list, tuple))
            and len(got) == len(ref) and isinstance(got, tuple)):
        return "\n".join(difference(g, r, name, f"{where}[{i}]")
                         for i, (g, r) in enumerate(zip(got, ref)) if g != r)
    if isinstance(got, list) and isinstance(ref, list):
        only_got = [x for x in got if x not in ref]
        only_ref = [x for x in ref if x not in got]
        if only_got or only_ref:
            return (f"  {where}: only {name}: {only_got!r}\n"
                    f"  {where}: only runc: {only_ref!r}")
    return f"  {where}: {name} {got!r} != runc {ref!r}"


@pytest.fixture(params=["runc", "berth"])
def runtime(request, tmp_path):
    return make_runtime(request.param, tmp_path / f"rt-{request.param}", request)


@pytest.fixture
def runc_ref(request, tmp_path):
    """runc itself, for comparing berth's results with."""
    return make_runtime("runc", tmp_path / "rt-ref", request)


@pytest.fixture
def parity(runtime, request):
    """parity(scenario) runs scenario(runtime); for berth it also runs
    scenario(runc) and asserts both gave the same result."""
    def check(scenario):
        got = scenario(runtime)
        if runtime.name != "runc":
            runc = request.getfixturevalue("runc_ref")
            ref = scenario(runc)
            if got != ref:
                pytest.fail(f"{runtime.name} differs from runc\n"
                            f"{runtime.name}: {got!r}\nrunc:  {ref!r}\n"
                            f"differences:\n{difference(got, ref, runtime.name)}\n"
                            f"{runtime.name} ran:\n{runtime.recent()}\n"
                            f"runc ran:\n{runc.recent()}", pytrace=False)
        return got
    return check


# ---------------------------------------------------------------- bundles


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory):
    return bundles.make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="session")
def image_rootfs(tmp_path_factory):
    """image_rootfs("alpine-3.20") -> an unpacked rootfs shared by the
    session; copy it (bundle factories do) before writing to it."""
    cache = {}

    def get(name="alpine-3.20"):
        if name not in cache:
            dest = tmp_path_factory.mktemp(name) / "rootfs"
            cache[name] = bundles.unpack_image(bundles.image_path(name), dest)
        return cache[name]
    return get


def _spec_has_userns(bundle):
    spec = bundles.read_config(bundle)
    return any(ns.get("type") == "user"
               for ns in spec.get("linux", {}).get("namespaces", []))


@pytest.fixture
def busybox_bundle(tmp_path, busybox_rootfs, tmp_path_factory):
    """busybox_bundle(args=None, changes=None) -> a fresh bundle dir."""
    n = itertools.count(1)

    def make(args=None, changes=None):
        b = bundles.make_busybox_bundle(tmp_path / "bundles" / f"bb{next(n)}",
                                        args=args, changes=changes,
                                        rootfs_src=busybox_rootfs)
        if _spec_has_userns(b):
            bundles.open_traversal(b / "rootfs",
                                   tmp_path_factory.getbasetemp().parent)
        return b
    return make


@pytest.fixture
def image_bundle(tmp_path, image_rootfs, tmp_path_factory):
    """image_bundle(args=None, changes=None, image="alpine-3.20")."""
    n = itertools.count(1)

    def make(args=None, changes=None, image="alpine-3.20"):
        b = bundles.make_image_bundle(tmp_path / "bundles" / f"img{next(n)}",
                                      image_rootfs(image), args=args,
                                      changes=changes,
                                      image=bundles.image_path(image))
        if _spec_has_userns(b):
            bundles.open_traversal(b / "rootfs",
                                   tmp_path_factory.getbasetemp().parent)
        return b
    return make
