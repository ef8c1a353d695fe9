"""How a running container ends, and what follows: the watcher that
waits on its shim, exit records, restart policies, signals, stop, pause,
wait and attach. Containers (manager.py) mixes this in; methods here use
its lookup, runtime and start helpers."""
import contextlib
import json
import shutil
import signal
import subprocess
import threading
import time

from berth.errors import BerthError, ConfigError, Conflict, NotFound
from berth.engine.containers import crashpoint, shimctl
from berth.engine.containers.record import now_rfc3339

STOP_TIMEOUT = 10
KILL_WAIT = 10


class NotModified(BerthError):
    """Start of a running container, stop of a stopped one: HTTP 304."""


class Lifecycle:
    def _start_failed(self, c, e):
        with c.cond:
            # attach requests waiting for this start give up
            c.start_failures = getattr(c, "start_failures", 0) + 1
            c.set_state(Error=str(e), ExitCode=start_failure_code(str(e)))

    def _wait_shim_gone(self, shim_dir, timeout=10):
        shimctl.wait_gone(shimctl.shim_alive(shim_dir), timeout)

    def _watch(self, c, waiting=None):
        """waiting: a wait request sent already (shimctl.send)."""
        t = threading.Thread(target=self._watcher, args=(c, waiting), daemon=True,
                             name=f"watch-{c.id[:12]}")
        c.shim_watch = t
        t.start()

    def _watcher(self, c, waiting=None):
        shim_dir = self.paths.shim(c.id)
        ex = None
        while ex is None:
            try:
                if waiting is not None:
                    s, waiting = waiting, None
                    ex = shimctl.reply(s)
                else:
                    ex = shimctl.request(shim_dir, {"op": "wait"}, timeout=None)
            except (OSError, ValueError):
                if self._closing:
                    return
                ex = shimctl.exit_record(shim_dir)
                if ex is None and shimctl.shim_alive(shim_dir):
                    time.sleep(0.2)
                    continue
                if ex is None:
                    ex = {"exit_code": 255, "error": shimctl.SHIM_LOST}
        if self._closing:
            return
        self._exited(c, ex)

    def _exited(self, c, ex):
        shim_dir = self.paths.shim(c.id)
        pid = shimctl.shim_alive(shim_dir)
        auto_remove = bool(c.host_config.get("AutoRemove"))
        code = int(ex.get("exit_code", 255))
        with c.cond:
            # decided with the state change: a container that will restart
            # goes straight to "restarting", never shows "exited" between runs
            restart = not auto_remove and self._should_restart(c, code)
            c.data["_exit_seq"] = c.data.get("_exit_seq", 0) + 1
            c.set_state(Status="restarting" if restart else "exited", Pid=0, ExitCode=code,
                        FinishedAt=ex.get("finished_at") or now_rfc3339(),
                        OOMKilled=bool(ex.get("oom_killed")), Error=ex.get("error", ""))
            # dockerd's order: die, network disconnect, and only then the
            # stop event of a `docker stop` waiting on this cond
            attrs = self._attrs(c)
            attrs["exitCode"] = str(code)
            self.e.events.emit("container", "die", c.id, attrs)
            self._net_teardown(c)
            from berth.engine.containers import netattach
            netattach.emit(self, c, "disconnect")
        # the shim still runs the runtime's delete; its directory goes after,
        # unless a restart has made a new shim there meanwhile
        starts = getattr(c, "starts", 0)
        if auto_remove:
            # the removal does not wait for the shim to start with the storage
            threading.Thread(target=self._auto_remove, args=(c,), daemon=True).start()
        shimctl.wait_gone(pid)
        with c.lifecycle:
            if getattr(c, "starts", 0) == starts and not shimctl.shim_alive(shim_dir):
                rmtree(shim_dir)
                if not auto_remove and not restart and not c.data.get("_removed"):
                    # as Docker: a stopped container's filesystem is not
                    # left mounted; start (or docker cp) mounts it again
                    self._unmount_stopped(c)
        if restart:
            threading.Thread(target=self._restart_later, args=(c,), daemon=True,
                             name=f"restart-{c.id[:12]}").start()

    def _unmount_stopped(self, c):
        c.mounted_rootfs = None
        from berth.engine.containers import joins
        joins.unmount_shm(c)
        try:
            self.e.driver.unmount(c.id, keep_record=True)
        except BerthError as e:
            import sys
            print(f"berthd: unmount of stopped {c.id[:12]}: {e}", file=sys.stderr, flush=True)

    def _auto_remove(self, c):
        try:
            self.remove(c.id, force=True, volumes=True)
        except BerthError:
            pass

    def _should_restart(self, c, code):
        pol = c.host_config.get("RestartPolicy") or {}
        mode = pol.get("Name") or "no"
        if c.data.get("_manual_stop") or self._closing or mode in ("no", ""):
            return False
        if c.deleted or c.data.get("_removed"):
            return False
        if mode == "on-failure":
            limit = pol.get("MaximumRetryCount") or 0
            return code != 0 and (not limit or c.data.get("RestartCount", 0) < limit)
        return mode in ("always", "unless-stopped")

    def _restart_later(self, c):
        n = c.data.get("RestartCount", 0)
        # dockerd's back-off: 100 ms doubling to a minute, from the start
        # again after a run of 10 s or more
        ran = time.monotonic() - getattr(c, "started_at", 0.0)
        c.backoff = 0.1 if ran >= 10 else min(getattr(c, "backoff", 0.05) * 2, 60)
        time.sleep(c.backoff)
        with c.lifecycle:
            with c.cond:
                if c.state["Status"] != "restarting":
                    return      # stopped, removed or started meanwhile
                if c.data.get("_manual_stop") or c.deleted or self._closing:
                    c.set_state(Status="exited")
                    return
                c.data["RestartCount"] = n + 1
            try:
                self._start(c)
            except BerthError:
                with c.cond:
                    if c.state["Status"] == "restarting":
                        c.set_state(Status="exited")
                return
        self.e.events.emit("container", "restart", c.id, self._attrs(c))

    # -- signals ------------------------------------------------------
    def kill(self, ref, sig="KILL", wait=KILL_WAIT, record=True):
        """As dockerd: SIGKILL returns once the container has stopped
        (bounded by `wait`); SIGKILL, the container's stop signal, or any
        signal when it has none, ends its restart policy (kept on disk
        unless record=False: a removal needs no fsync for it)."""
        c = self.get(ref)
        sig = signal_name(sig)
        stop_sig = signal_name(c.config.get("StopSignal")) if c.config.get("StopSignal") else None
        with c.cond:
            if not c.running or not c.state["Pid"]:
                raise Conflict(f"Container {c.id} is not running")
            if sig == "KILL" or stop_sig is None or sig == stop_sig:
                c.data["_manual_stop"] = True
                if record:
                    c.save()
        # before the signal, as dockerd: the die it causes comes after; the
        # signal's number, as dockerd shows it
        self.e.events.emit("container", "kill", c.id,
                           dict(self._attrs(c), signal=str(int(getattr(signal, "SIG" + sig)))))
        p = subprocess.run(self.runtime_cmd(c, "kill", c.id, sig), capture_output=True, text=True)
        if p.returncode != 0 and c.running and not self._wait_stopped(c, 2):
            raise BerthError(f"kill {c.id[:12]}: {p.stderr.strip()}")
        if c.state["Paused"] and c.data.get("_manual_stop"):
            # as dockerd: a frozen container gets the signal once thawed
            try:
                self._runtime_ok(c, "resume", c.id)
            except BerthError:
                pass
            else:
                with c.cond:
                    if c.state["Status"] == "paused":   # a signal it survives
                        c.set_state(Status="running")
        if sig == "KILL" and wait and not self._wait_stopped(c, wait):
            raise BerthError(f"container {c.id[:12]} did not stop within {wait}s of SIGKILL")

    def stop(self, ref, timeout=None, sig=None):
        c = self.get(ref)
        with c.cond:
            c.data["_manual_stop"] = True
            c.save()
            if c.state["Status"] == "restarting":
                c.set_state(Status="exited")
            if not c.running:
                raise NotModified("container already stopped")
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            timeout = STOP_TIMEOUT if timeout is None else timeout
        sig = sig or c.config.get("StopSignal") or "TERM"
        if c.state["Paused"]:
            self.unpause(c.id)
        try:
            self.kill(c.id, sig, wait=0)
        except Conflict:
            pass
        # a negative timeout waits for as long as it takes (docker stop -t -1)
        if not self._wait_stopped(c, timeout):
            try:
                self.kill(c.id, "KILL", wait=0)
            except Conflict:
                pass
            self._wait_stopped(c, 30)
        self.e.events.emit("container", "stop", c.id, self._attrs(c))

    def _wait_stopped(self, c, timeout):
        deadline = time.monotonic() + (timeout if timeout >= 0 else 1e9)
        with c.cond:
            while c.running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                c.cond.wait(left)
        return True

    def restart(self, ref, timeout=None):
        c = self.get(ref)
        with c.lifecycle:
            try:
                self.stop(c.id, timeout)
            except NotModified:
                pass
            c.data["_manual_stop"] = False
            c.data["RestartCount"] = 0     # as dockerd: a restart by hand starts the count anew
            self._start(c)
        self.e.events.emit("container", "restart", c.id, self._attrs(c))

    def pause(self, ref):
        c = self.get(ref)
        with c.lifecycle:
            if not c.running or c.state["Status"] == "restarting":
                raise Conflict(f"Container {c.id} is not running")
            if c.state["Paused"]:
                raise Conflict(f"Container {c.id} is already paused")
            self._freeze(c, "pause", "paused")
        self.e.events.emit("container", "pause", c.id, self._attrs(c))

    def unpause(self, ref):
        c = self.get(ref)
        with c.lifecycle:
            if not c.state["Paused"]:
                raise Conflict(f"Container {c.id} is not paused")
            self._freeze(c, "resume", "running")
        self.e.events.emit("container", "unpause", c.id, self._attrs(c))

    def _freeze(self, c, verb, status):
        """The runtime's pause or resume, marked on the record while it
        runs: a berthd killed in between finds the mark and asks the
        runtime which it is (a frozen container recorded as running would
        never die of SIGKILL)."""
        with c.cond:
            c.data["_pausing"] = True
            c.save(durable=False)
        try:
            self._runtime_or_gone(c, verb)
            crashpoint.reached(f"{verb}:done")
        finally:
            with c.cond:
                c.data.pop("_pausing", None)
                c.save(durable=False)
        c.set_state(Status=status)

    def _runtime_or_gone(self, c, verb):
        """A container that exits while it is paused or resumed makes the
        runtime say it does not exist: that is a 409, not a failure. (The
        shim deletes the runtime's container before it reports the exit,
        so the runtime is asked, not the record.)"""
        try:
            self._runtime_ok(c, verb, c.id)
        except BerthError:
            if self._runtime_status(c) in (None, "stopped") or self._wait_stopped(c, 0.5):
                raise Conflict(f"Container {c.id} is not running") from None
            raise

    def _runtime_status(self, c):
        """The runtime's word on the container: created, running,
        paused, stopped, or None when it has no such container."""
        try:
            p = subprocess.run(self.runtime_cmd(c, "state", c.id), capture_output=True,
                               text=True, timeout=30)
            return json.loads(p.stdout).get("status") if p.returncode == 0 else None
        except (subprocess.TimeoutExpired, ValueError, AttributeError, BerthError, OSError):
            return None

    @contextlib.contextmanager
    def paused(self, ref):
        """Holds a running container paused for the block (commit); one
        that is not running, or stops meanwhile, is left as it is."""
        c = self.get(ref)
        try:
            self.pause(c.id)
            did = True
        except Conflict:
            did = False
        try:
            yield c
        finally:
            if did:
                try:
                    self.unpause(c.id)
                except Conflict:
                    pass

    def _runtime_ok(self, c, *args):
        p = subprocess.run(self.runtime_cmd(c, *args), capture_output=True, text=True)
        if p.returncode != 0:
            raise BerthError(f"{args[0]} {c.id[:12]}: {p.stderr.strip()}")
        return p.stdout

    # -- wait, remove, rename -----------------------------------------
    def waiter(self, ref, condition="not-running"):
        """Checks now, blocks later: the returned function waits. The
        docker CLI asks to wait for the next exit *before* it starts the
        container, so the exit counter is read at request time."""
        c = self.get(ref)
        condition = condition or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise ConfigError(f"condition: {condition!r} is not not-running, next-exit or removed")
        seq = c.data.get("_exit_seq", 0)

        def wait():
            with c.cond:
                while True:
                    if condition == "removed" and c.data.get("_removed"):
                        break
                    if condition == "next-exit" and c.data.get("_exit_seq", 0) > seq:
                        break
                    if condition == "not-running" and not c.running and \
                            c.state["Status"] != "restarting":
                        break
                    c.cond.wait(1.0)
                # as dockerd: the removal carries no error (docker run --rm
                # would print a failed start's error a second time)
                err = c.state["Error"] if condition != "removed" else ""
                return {"StatusCode": c.state["ExitCode"],
                        "Error": {"Message": err} if err else None}
        return wait

    def attach_socket(self, ref, streams):
        """Connects to the container's shim for attach; for a container not
        started yet, waits for its start, which in turn waits for us."""
        c = self.get(ref)
        with c.cond:
            c.attaching = getattr(c, "attaching", 0) + 1
            failures = getattr(c, "start_failures", 0)
        try:
            with c.cond:
                while not (getattr(c, "shim_ready", False) or (c.running and c.state["Pid"])):
                    if c.data.get("_removed"):
                        raise NotFound(f"No such container: {ref}")
                    if getattr(c, "start_failures", 0) != failures:
                        raise Conflict(f"container {c.id[:12]} failed to start: {c.state['Error']}")
                    c.cond.wait(1.0)
            s = shimctl.connect(self.paths.shim(c.id), "attach.sock", timeout=30)
            s.sendall((json.dumps(dict(streams, ack=True)) + "\n").encode())
            ack = s.recv(1)
            s.settimeout(None)
            return c, s, ack
        finally:
            with c.cond:
                c.attaching -= 1
                c.cond.notify_all()

    def resize(self, ref, height, width):
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        reply = shimctl.request(self.paths.shim(c.id), {"op": "resize", "height": height,
                                                        "width": width})
        if "error" in reply:
            raise BerthError(reply["error"])


def signal_name(sig):
    if sig is None or sig == "":
        return "KILL"
    s = str(sig).upper()
    if s.isdigit():
        try:
            return signal.Signals(int(s)).name[3:]
        except ValueError:
            raise ConfigError(f"signal: {sig!r} is not a valid signal")
    s = s[3:] if s.startswith("SIG") else s
    if not hasattr(signal, "SIG" + s):
        raise ConfigError(f"signal: {sig!r} is not a valid signal")
    return s


def start_failure_code(msg):
    low = msg.lower()
    if "no such file" in low or "not found" in low:
        return 127
    if "permission denied" in low:
        return 126
    return 128


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)
