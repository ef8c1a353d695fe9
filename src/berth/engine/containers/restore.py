"""berthd's start after a crash (kill -9 at any point): every container
ends up running with its shim, stopped (or created) and startable, or
gone; nothing of a removed or half-made container is left.

Where a kill can land, and what restore makes of it:
- in create (no record yet, or one that says _creating): the half-made
  container is removed;
- in start, shim launched but the container not started yet (runtime
  says "created"): the start is undone (runtime delete, network torn
  down), the record keeps its state: startable again;
- in start, after the runtime's start but before the record said so
  (runtime says "running"/"paused"): the container is adopted as running;
- in a pause or resume (the record is marked while the runtime works):
  the runtime says whether it is frozen;
- while running, shim gone meanwhile: its exit (exit.json) is recorded;
- in remove (record says removing): the removal is finished (its
  directories are renamed into the trash, which is emptied at start);
- runtime state, shim directories and storage of ids with no record
  are released. A record that cannot be read is skipped with a warning
  naming it, and whatever carries its id is left alone."""
import os
import shutil
import subprocess
import sys

from berth.errors import BerthError
from berth.engine.containers import shimctl
from berth.engine.containers.record import Container, now_rfc3339


def warn(msg):
    print(f"berthd: {msg}", file=sys.stderr, flush=True)


def load_records(directory):
    """{id: Container} of the readable records, and the names of entries
    kept but not understood. A directory with no record is a create cut
    short by a crash: it goes."""
    found, unreadable = {}, set()
    for cid in sorted(os.listdir(directory)):
        d = os.path.join(directory, cid)
        if not os.path.isdir(d):
            continue
        if not os.path.exists(os.path.join(d, Container.FILE)):
            warn(f"{d}: no {Container.FILE} (a create cut short): removing what is left")
            shutil.rmtree(d, ignore_errors=True)   # storage, shim: released by restore
            continue
        try:
            c = Container.load(d)
            _check_record(c.data, cid)
        except BerthError as e:
            warn(f"{os.path.join(d, Container.FILE)}: skipped, unreadable record ({e}); "
                 "move it away or repair it, then restart berthd")
            unreadable.add(cid)
            continue
        for n in os.listdir(d):
            if n.startswith(Container.FILE + ".tmp"):
                os.unlink(os.path.join(d, n))     # a write the crash cut
        found[cid] = c
    return found, unreadable


def _check_record(data, cid):
    """The fields every path reads, of the types they read."""
    if not isinstance(data, dict) or data.get("Id") != cid:
        raise BerthError("not a record of this container")
    for key in ("State", "Config", "HostConfig"):
        if not isinstance(data.get(key), dict):
            raise BerthError(f"{key} is missing")
    if not isinstance(data["State"].get("Status"), str) or \
            not isinstance(data.get("Name"), str) or not isinstance(data.get("Image"), str):
        raise BerthError("State.Status, Name or Image is missing")


class Restore:
    def restore(self):
        for c in self.list(all=True):
            try:
                self._restore_one(c)
            except Exception as e:  # noqa: BLE001 - one container must not keep berthd down
                warn(f"restore of container {c.id[:12]}: {e}")
        known = {c.id for c in self.list(all=True)}
        # a record we could not read keeps whatever carries its id
        keep = known | {cid for cid in self.unreadable
                        if os.path.isdir(self.paths.container(cid))}
        self._release_strays(keep)
        self.e.driver.cleanup_stale(keep)
        self.e.network.restore([c for c in self.list(all=True) if c.running])
        for c in self.list(all=True):
            pol = (c.host_config.get("RestartPolicy") or {}).get("Name")
            if not c.running and pol in ("always", "unless-stopped") and \
                    not c.data.get("_manual_stop") and c.state["Status"] != "created":
                try:
                    with c.lifecycle:
                        self._start(c)
                except BerthError as e:
                    warn(f"restart of {c.id[:12]} ({pol}): {e}")

    def _restore_one(self, c):
        if c.data.get("_creating") or c.state["Status"] in ("removing", "dead"):
            self._destroy(c, volumes=bool(c.data.get("_creating")))
            return
        shim_dir = self.paths.shim(c.id)
        alive = shimctl.shim_alive(shim_dir)
        status = c.state["Status"]
        if status in ("running", "paused", "restarting") and c.state["Pid"]:
            if alive:
                if c.data.pop("_pausing", None):
                    # killed in a pause or resume: the runtime knows which
                    now = self._runtime_status(c)
                    if now in ("running", "paused") and now != status:
                        c.set_state(Status=now)
                self._adopt(c)
                return
            ex = shimctl.exit_record(shim_dir) or {
                "exit_code": 255, "error": "berth-shim was gone when berthd restarted"}
            subprocess.run(self.runtime_cmd(c, "delete", "-f", c.id), capture_output=True)
            self._exited(c, ex)
            return
        if alive:
            now = self._runtime_status(c)
            if now in ("running", "paused"):
                # started, but the kill came before the record said so
                pid = self._shim_pid(shim_dir)
                if pid:
                    c.set_state(Status=now, Pid=pid, StartedAt=now_rfc3339(), Error="",
                                ExitCode=0, OOMKilled=False)
                    self._adopt(c)
                    return
            # launched, never started: undo the half-made start
            self._runtime_delete(c, shim_dir)
            self._net_teardown(c)
        elif self._runtime_status(c) is not None:
            subprocess.run(self.runtime_cmd(c, "delete", "-f", c.id), capture_output=True)
        if os.path.isdir(shim_dir):
            self._rmtree(shim_dir)
        if status in ("running", "paused", "restarting"):
            c.set_state(Status="exited", Pid=0)

    def _adopt(self, c):
        self._watch(c)
        from berth.engine.containers import health
        health.start(self, c)

    def _shim_pid(self, shim_dir):
        try:
            return int(shimctl.request(shim_dir, {"op": "ping"}, timeout=10).get("pid") or 0)
        except (OSError, ValueError, TypeError):
            return 0

    def _release_strays(self, keep):
        """Runtime state and shims of ids no record has (a crash inside
        a removal, after the record went)."""
        short = {cid[:24] for cid in keep}
        strays = {}
        for name, path in self.e.config.runtimes.items():
            root = self.paths.runtime_root(name)
            for cid in (os.listdir(root) if os.path.isdir(root) else ()):
                if cid not in keep and not cid.startswith(".") and \
                        os.path.isdir(os.path.join(root, cid)):
                    strays[cid] = (name, path)
        for cid, (name, path) in strays.items():
            warn(f"runtime {name}: container {cid[:12]} has no record: deleting it")
            subprocess.run([path, "--root", self.paths.runtime_root(name), "delete", "-f", cid],
                           capture_output=True)
        if not os.path.isdir(self.paths.shims):
            return
        for name in os.listdir(self.paths.shims):
            d = os.path.join(self.paths.shims, name)
            if name in short:
                continue
            pid = shimctl.shim_alive(d)
            if pid:
                # its container is deleted above; the shim ends with it
                shimctl.wait_gone(pid, 10)
            if not shimctl.shim_alive(d):
                self._rmtree(d)

    def _rmtree(self, path):
        shutil.rmtree(path, ignore_errors=True)
