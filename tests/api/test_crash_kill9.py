"""kill -9 of berthd in the middle of work. Clients loop through
create / start / exec / stop / commit / rm while the daemon is killed
with SIGKILL at random moments and started again; after each restart,
with the clients held, every container must be running with its shim,
or stopped/created with no process left in its cgroup and startable, or
gone; no runtime state or shim of an unknown id may be left. At the end
everything is removed and nothing may remain (mounts, cgroups, runtime
and shim state, network endpoints).

BERTH_CRASH_ROUNDS sets the number of kills (default 6: about a minute);
the kills per phase in flight are printed."""
import collections
import http.client
import json
import os
import random
import signal
import threading
import time

import pytest

from daemons import UnixHTTPConnection, private_berthd, _mounts_under
from procutil import alive

ROUNDS = int(os.environ.get("BERTH_CRASH_ROUNDS", "6"))
CLIENTS = 6
CGROUP_ROOT = "/sys/fs/cgroup"


class Clients:
    """Worker threads that run container life cycles and stop at a gate
    between two requests while the test checks the daemon."""

    def __init__(self, daemon, n):
        self.d = daemon
        self.go = threading.Event()
        self.stop = threading.Event()
        self.phase = {}               # client -> request in flight (or None)
        self.done = collections.Counter()
        self.images = set()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]

    def start(self):
        self.go.set()
        for t in self.threads:
            t.start()

    def hold(self, timeout=60):
        """Clients wait at the gate; True once none has a request in flight."""
        self.go.clear()
        deadline = time.monotonic() + timeout
        while any(self.phase.get(i) for i in range(len(self.threads))):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _call(self, i, phase, method, path, body=None):
        while not self.go.is_set():
            if self.stop.is_set():
                raise EOFError
            self.go.wait(0.2)
        self.phase[i] = phase
        try:
            conn = UnixHTTPConnection(self.d.sock, timeout=60)
            try:
                data = json.dumps(body).encode() if body is not None else None
                conn.request(method, path, body=data,
                             headers={"Content-Type": "application/json"} if data else {})
                resp = conn.getresponse()
                out = resp.read()
                status = resp.status
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            return None, None
        finally:
            self.phase[i] = None
        with self.lock:
            self.done[phase] += 1
        try:
            return status, json.loads(out) if out.strip() else None
        except ValueError:
            return status, None

    def _run(self, i):
        rnd = random.Random(i)
        try:
            while not self.stop.is_set():
                status, body = self._call(i, "create", "POST", "/containers/create",
                                          {"Image": "alpine", "Cmd": ["sleep", "1000"]})
                if status != 201:
                    continue
                cid = body["Id"]
                self._call(i, "start", "POST", f"/containers/{cid}/start")
                if rnd.random() < 0.5:
                    status, ex = self._call(i, "exec", "POST", f"/containers/{cid}/exec",
                                            {"Cmd": ["true"]})
                    if status == 201:
                        self._call(i, "exec", "POST", f"/exec/{ex['Id']}/start",
                                   {"Detach": True})
                if rnd.random() < 0.3:
                    status, img = self._call(i, "commit", "POST",
                                             f"/commit?container={cid}&pause=1")
                    if status == 201:
                        with self.lock:
                            self.images.add(img["Id"])
                if rnd.random() < 0.5:
                    self._call(i, "stop", "POST", f"/containers/{cid}/stop?t=1")
                if rnd.random() < 0.8:
                    self._call(i, "rm", "DELETE", f"/containers/{cid}?force=1")
        except EOFError:
            return


def cgroup_procs(parent, cid):
    pids = []
    for h in os.listdir(CGROUP_ROOT):
        path = os.path.join(CGROUP_ROOT, h, parent.lstrip("/"), cid, "cgroup.procs")
        try:
            with open(path) as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return pids


def shim_pid(d, cid):
    try:
        with open(d.exec_root / "shims" / cid[:24] / "shim.pid") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def runtime_ids(d):
    root = d.exec_root / "runtime"
    out = set()
    for name in (os.listdir(root) if root.is_dir() else ()):
        out |= {e for e in os.listdir(root / name)
                if (root / name / e).is_dir() and not e.startswith(".")}
    return out


def check_invariant(d, sample_starts=2):
    problems = []
    items = d.json("GET", "/containers/json?all=1", timeout=60)
    ids = {c["Id"] for c in items}
    stopped = []
    for c in items:
        st = d.json("GET", f"/containers/{c['Id']}/json")["State"]
        cid = c["Id"]
        if st["Status"] in ("running", "paused"):
            if not (st["Pid"] and alive(st["Pid"])):
                problems.append(f"{cid[:12]} {st['Status']} but its init {st['Pid']} is gone")
            if not alive(shim_pid(d, cid)):
                problems.append(f"{cid[:12]} {st['Status']} without a live shim")
        elif st["Status"] in ("created", "exited"):
            left = sorted({p for p in cgroup_procs(d.cgroup_parent, cid) if alive(p)})
            if left:
                problems.append(f"{cid[:12]} {st['Status']} with processes {left} in its cgroup")
            stopped.append(cid)
        else:
            problems.append(f"{cid[:12]} left in state {st['Status']}")
    stray = {r for r in runtime_ids(d) if r not in ids}
    if stray:
        problems.append(f"runtime state of unknown containers: {sorted(stray)}")
    shims = d.exec_root / "shims"
    short = {i[:24] for i in ids}
    stray = [n for n in (os.listdir(shims) if shims.is_dir() else ()) if n not in short]
    if stray:
        problems.append(f"shim dirs of unknown containers: {stray}")
    for cid in stopped[:sample_starts]:
        status, _, body = d.api("POST", f"/containers/{cid}/start")
        if status != 204:
            problems.append(f"start of {cid[:12]} after the restart -> {status}: {body[:200]!r}")
    return problems


def kill9(d):
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    d._log.close()


@pytest.fixture
def daemon():
    with private_berthd() as d:
        d.load("alpine-3.20")
        yield d


def test_kill9_under_load_keeps_the_invariant(daemon):
    d = daemon
    rnd = random.Random(os.getpid())
    clients = Clients(d, CLIENTS)
    clients.start()
    in_flight = collections.Counter()
    problems = []
    try:
        for rnd_no in range(ROUNDS):
            time.sleep(rnd.uniform(1.0, 4.0))
            for p in list(clients.phase.values()):
                if p:
                    in_flight[p] += 1
            kill9(d)
            clients.go.clear()
            time.sleep(rnd.uniform(0, 0.5))
            d.start()
            assert clients.hold(), "a client request hangs after the restart"
            found = check_invariant(d)
            problems += [f"round {rnd_no}: {p}" for p in found]
            clients.go.set()
    finally:
        clients.stop.set()
        clients.go.set()
        for t in clients.threads:
            t.join(90)
    print(f"\nkill -9 x{ROUNDS}; requests in flight at the kills: "
          f"{dict(sorted(in_flight.items()))}; requests done: {dict(sorted(clients.done.items()))}")
    assert not problems, "\n".join(problems) + "\n" + d.log()[-3000:]
    # one more start of everything stopped, then remove it all
    assert not check_invariant(d, sample_starts=1000)
    for c in d.json("GET", "/containers/json?all=1"):
        status, _, body = d.api("DELETE", f"/containers/{c['Id']}?force=1")
        assert status == 204, body
    for image in clients.images:
        d.api("DELETE", f"/images/{image}?force=1")
    assert d.json("GET", "/containers/json?all=1") == []
    assert runtime_ids(d) == set()
    shims = d.exec_root / "shims"
    assert not (os.listdir(shims) if shims.is_dir() else [])
    assert not _mounts_under(str(d.data_root)), _mounts_under(str(d.data_root))
    endpoints = d.data_root / "network" / "endpoints"
    assert not (os.listdir(endpoints) if endpoints.is_dir() else [])
    cg = [os.path.join(CGROUP_ROOT, h, d.cgroup_parent.lstrip("/"))
          for h in os.listdir(CGROUP_ROOT)]
    left = [os.path.join(p, e) for p in cg if os.path.isdir(p)
            for e in os.listdir(p) if os.path.isdir(os.path.join(p, e))]
    assert not left, left
    assert "Traceback" not in d.log()
