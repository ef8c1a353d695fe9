"""How a running container ends, and what follows: the watcher that
waits on its shim, exit records, restart policies, signals, stop, pause,
wait and attach. Containers (manager.py) mixes this in; methods here use
its lookup, runtime and start helpers."""
import json
import shutil
import signal
import subprocess
import threading
import time

from berth.errors import BerthError, ConfigError, Conflict, NotFound
from berth.engine.containers import shimctl
from berth.engine.containers.record import now_rfc3339

STOP_TIMEOUT = 10


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
        with c.cond:
            c.data["_exit_seq"] = c.data.get("_exit_seq", 0) + 1
            c.set_state(Status="exited", Pid=0, ExitCode=int(ex.get("exit_code", 255)),
                        FinishedAt=ex.get("finished_at") or now_rfc3339(),
                        OOMKilled=bool(ex.get("oom_killed")), Error=ex.get("error", ""))
        self._net_teardown(c)
        attrs = self._attrs(c)
        attrs["exitCode"] = str(c.state["ExitCode"])
        self.e.events.emit("container", "die", c.id, attrs)
        # the shim still runs the runtime's delete; its directory goes after,
        # unless a restart has made a new shim there meanwhile
        starts = getattr(c, "starts", 0)
        auto_remove = bool(c.host_config.get("AutoRemove"))
        if auto_remove:
            # the removal does not wait for the shim to start with the storage
            threading.Thread(target=self._auto_remove, args=(c,), daemon=True).start()
        shimctl.wait_gone(pid)
        restart = not auto_remove and self._should_restart(c)
        with c.lifecycle:
            if getattr(c, "starts", 0) == starts and not shimctl.shim_alive(shim_dir):
                rmtree(shim_dir)
                if not auto_remove and not restart and not c.data.get("_removed"):
                    # as Docker: a stopped container's filesystem is not
                    # left mounted; start (or docker cp) mounts it again
                    self._unmount_stopped(c)
        if restart:
            threading.Thread(target=self._restart_later, args=(c,), daemon=True).start()

    def _unmount_stopped(self, c):
        c.mounted_rootfs = None
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

    def _should_restart(self, c):
        pol = c.host_config.get("RestartPolicy") or {}
        mode = pol.get("Name") or "no"
        if c.data.get("_manual_stop") or self._closing or mode in ("no", ""):
            return False
        if mode == "on-failure":
            limit = pol.get("MaximumRetryCount") or 0
            return c.state["ExitCode"] != 0 and (not limit or c.data.get("RestartCount", 0) < limit)
        return mode in ("always", "unless-stopped")

    def _restart_later(self, c):
        n = c.data.get("RestartCount", 0)
        delay = min(0.1 * (2 ** n), 60)
        c.set_state(Status="restarting")
        time.sleep(delay)
        with c.cond:
            if c.data.get("_manual_stop") or c.data.get("_removed") or self._closing:
                if c.state["Status"] == "restarting":
                    c.set_state(Status="exited")
                return
            c.data["RestartCount"] = n + 1
        try:
            with c.lifecycle:
                if c.data.get("_removed") or c.state["Status"] in ("running", "paused"):
                    return
                self._start(c)
            self.e.events.emit("container", "restart", c.id, self._attrs(c))
        except BerthError:
            c.set_state(Status="exited")

    # -- signals ------------------------------------------------------
    def kill(self, ref, sig="KILL"):
        c = self.get(ref)
        if not c.running or not c.state["Pid"]:
            raise Conflict(f"Container {c.id} is not running")
        sig = signal_name(sig)
        p = subprocess.run(self.runtime_cmd(c, "kill", c.id, sig), capture_output=True, text=True)
        if p.returncode != 0 and c.running:
            raise BerthError(f"kill {c.id[:12]}: {p.stderr.strip()}")
        self.e.events.emit("container", "kill", c.id, dict(self._attrs(c), signal=sig))

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
            self.kill(c.id, sig)
        except Conflict:
            pass
        if timeout < 0 or not self._wait_stopped(c, timeout):
            try:
                self.kill(c.id, "KILL")
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
            self._start(c)
        self.e.events.emit("container", "restart", c.id, self._attrs(c))

    def pause(self, ref):
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state["Paused"]:
            raise Conflict(f"Container {c.id} is already paused")
        self._runtime_ok(c, "pause", c.id)
        c.set_state(Status="paused")
        self.e.events.emit("container", "pause", c.id, self._attrs(c))

    def unpause(self, ref):
        c = self.get(ref)
        if not c.state["Paused"]:
            raise Conflict(f"Container {c.id} is not paused")
        self._runtime_ok(c, "resume", c.id)
        c.set_state(Status="running")
        self.e.events.emit("container", "unpause", c.id, self._attrs(c))

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
                return {"StatusCode": c.state["ExitCode"],
                        "Error": {"Message": c.state["Error"]} if c.state["Error"] else None}
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
