"""`docker exec`: a process.json derived from the container's own process
(same capabilities, seccomp, no_new_privs), run by `runtime exec`. The
daemon holds the exec's stdio (pipes, or the pty master the runtime sends
over --console-socket) and relays it to the hijacked client connection."""
import os
import secrets
import socket
import subprocess
import tempfile
import threading

from berth.errors import BerthError, ConfigError, Conflict, NotFound
from berth.engine.containers import stream
from berth.engine.containers.validate import go_duration
from berth.engine.specgen import process as specproc
from berth.oci import jsonio


class Exec:
    def __init__(self, eid, container, body):
        self.id = eid
        self.container = container
        self.body = body
        self.running = False
        self.exit_code = None
        self.pid = 0
        self.master = None
        self.started = False
        self.cond = threading.Condition()
        size = body.get("ConsoleSize")
        # the client resizes right after start, maybe before the pty exists
        self.size = tuple(size) if isinstance(size, list) and len(size) == 2 and all(size) else None

    def inspect(self):
        b = self.body
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
                "ProcessConfig": {"tty": bool(b.get("Tty")), "entrypoint": b["Cmd"][0],
                                  "arguments": b["Cmd"][1:], "privileged": bool(b.get("Privileged")),
                                  "user": b.get("User") or ""},
                "OpenStdin": bool(b.get("AttachStdin")), "OpenStderr": bool(b.get("AttachStderr")),
                "OpenStdout": bool(b.get("AttachStdout")), "CanRemove": False,
                "ContainerID": self.container.id, "DetachKeys": b.get("DetachKeys") or "",
                "Pid": self.pid}


class Execs:
    def __init__(self, containers):
        self.cs = containers
        self._all = {}
        self._lock = threading.Lock()

    def create(self, ref, body):
        # the exec's cgroup join would wait out a whole grace period;
        # started now, it is over by the time the runtime gets there
        self.cs._warm_cgroups()
        c = self.cs.get(ref)
        if not isinstance(body, dict):
            raise ConfigError("request body: expected a JSON object")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
            raise ConfigError("Cmd: a non-empty list of strings is required")
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state["Paused"]:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        try:
            stream.detach_keys(body.get("DetachKeys") or "")  # refused now, not at start
        except ConfigError as e:
            raise BerthError(str(e)) from None  # dockerd answers a 500 here
        body = dict(body, Cmd=cmd)
        ex = Exec(secrets.token_hex(32), c, body)
        with self._lock:
            self._all[ex.id] = ex
            c.data.setdefault("ExecIDs", [])
            c.data["ExecIDs"] = (c.data.get("ExecIDs") or []) + [ex.id]
        self.cs.e.events.emit("container", "exec_create: " + _shown(cmd), c.id,
                              dict(self.cs._attrs(c), execID=ex.id))
        return ex

    def get(self, eid):
        with self._lock:
            ex = self._all.get(eid)
        if ex is None:
            raise NotFound(f"No such exec instance: {eid}")
        return ex

    def _process(self, ex):
        c = ex.container
        spec = jsonio.load_file(os.path.join(c.bundle, "config.json"))
        proc = dict(spec["process"])
        b = ex.body
        proc["args"] = b["Cmd"]
        proc["terminal"] = bool(b.get("Tty"))
        env = specproc.merge_env(list(proc.get("env") or []), list(b.get("Env") or []), "Env")
        proc["env"] = env
        if b.get("WorkingDir"):
            if not b["WorkingDir"].startswith("/"):
                raise ConfigError(f"WorkingDir: {b['WorkingDir']!r} is not an absolute path")
            proc["cwd"] = b["WorkingDir"]
        if b.get("User"):
            proc["user"], _ = specproc.user(b["User"], spec["root"]["path"])
        if b.get("Privileged"):
            from berth.sys import caps
            try:
                last = caps.last_cap()
            except OSError:
                last = len(caps.NAMES) - 1
            every = [f"CAP_{n}" if not n.startswith("CAP_") else n for n in caps.NAMES[:last + 1]]
            proc["capabilities"] = {k: list(every) for k in
                                    ("bounding", "effective", "permitted")}
        return proc

    def start(self, eid, detach=False):
        """Returns a runner; call runner(client_sock, early_bytes) when
        attached (it returns when the process ends), or nothing for detach."""
        ex = self.get(eid)
        with ex.cond:
            if ex.started:
                raise Conflict(f"Error: Exec command {eid} has already run")
            ex.started = True
        c = ex.container
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        proc = self._process(ex)
        work = tempfile.mkdtemp(prefix="exec-", dir=self.cs.paths.run)
        pfile = os.path.join(work, "process.json")
        jsonio.write_atomic(pfile, proc, durable=False)   # read at once, gone after a crash
        argv = self.cs.runtime_cmd(c, "exec", "--process", pfile,
                                   "--pid-file", os.path.join(work, "pid"))
        tty = bool(ex.body.get("Tty"))
        self.cs.e.events.emit("container", "exec_start: " + _shown(ex.body["Cmd"]), c.id,
                              dict(self.cs._attrs(c), execID=ex.id))
        if detach:
            _detached(self, ex, argv, work)
            return None
        return _Runner(self, ex, argv, work, tty)

    def finished(self, ex, code):
        with ex.cond:
            ex.running = False
            ex.exit_code = code
            ex.cond.notify_all()
        c = ex.container
        attrs = dict(self.cs._attrs(c), execID=ex.id, exitCode=str(code))
        self.cs.e.events.emit("container", "exec_die", c.id, attrs)

    def resize(self, eid, height, width):
        ex = self.get(eid)
        if not ex.body.get("Tty"):
            raise Conflict(f"exec {eid[:12]} has no terminal to resize")
        with ex.cond:
            ex.size = (height, width)
            if ex.master is not None:
                _winsize(ex.master, height, width)

    def run_captured(self, c, cmd, timeout):
        """For health checks: run cmd, return (exit code, output)."""
        ex = self.create(c.id, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
        try:
            proc = self._process(ex)
            work = tempfile.mkdtemp(prefix="health-", dir=self.cs.paths.run)
            pfile = os.path.join(work, "process.json")
            jsonio.write_atomic(pfile, proc, durable=False)   # read at once, gone after a crash
            self.cs.e.events.emit("container", "exec_start: " + _shown(cmd), c.id,
                                  dict(self.cs._attrs(c), execID=ex.id))
            code = -1
            try:
                p = _popen(self.cs, self.cs.runtime_cmd(c, "exec", "--process", pfile, c.id),
                           subprocess.DEVNULL, subprocess.PIPE, subprocess.STDOUT)
                out = _read_all(p.stdout, timeout)
                if out is None:
                    p.kill()
                    p.wait()
                    return -1, f"Health check exceeded timeout ({go_duration(timeout * 1e9)})"
                code = p.wait()
                return code, out.decode(errors="replace")[-4096:]
            finally:
                _cleanup(work)
                self.finished(ex, code)
        finally:
            with self._lock:
                self._all.pop(ex.id, None)
            ids = c.data.get("ExecIDs") or []
            if ex.id in ids:
                ids.remove(ex.id)


class _Runner:
    def __init__(self, execs, ex, argv, work, tty):
        self.execs, self.ex, self.argv, self.work, self.tty = execs, ex, argv, work, tty
        # the start request's Tty decides the framing, as dockerd's does: a
        # pty's output can come multiplexed, pipes' output raw
        self.framed = not tty

    def __call__(self, client, early):
        ex, c = self.ex, self.ex.container
        b = ex.body
        try:
            if self.tty:
                code = self._tty(client, early)
            else:
                code = self._pipes(client, early, b)
        except BaseException:
            _cleanup(self.work)
            raise
        if code is stream.DETACHED:
            # the process runs on; exec_detach now, exec_die when it ends
            self.execs.cs.e.events.emit("container", "exec_detach", c.id,
                                        dict(self.execs.cs._attrs(c), execID=ex.id))
            return
        _cleanup(self.work)
        self.execs.finished(ex, code)

    def _after_detach(self, p, close):
        def wait():
            code = self._status(p.wait())
            for f in close:
                f()
            _cleanup(self.work)
            self.execs.finished(self.ex, code)
        threading.Thread(target=wait, daemon=True, name=f"exec-{self.ex.id[:12]}").start()
        return stream.DETACHED

    def _started(self, p):
        ex = self.ex
        ex.running = True
        try:
            with open(os.path.join(self.work, "pid")) as f:
                ex.pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            ex.pid = p.pid

    def _pipes(self, client, early, b):
        stdin = subprocess.PIPE if b.get("AttachStdin") else subprocess.DEVNULL
        out = subprocess.PIPE if b.get("AttachStdout", True) else subprocess.DEVNULL
        err = subprocess.PIPE if b.get("AttachStderr", True) else subprocess.DEVNULL
        p = _popen(self.execs.cs, self.argv + [self.ex.container.id], stdin, out, err)
        self._started(p)
        sources = [(f.fileno(), n if self.framed else None)
                   for f, n in ((p.stdout, stream.STDOUT), (p.stderr, stream.STDERR)) if f is not None]
        sink = os.dup(p.stdin.fileno()) if p.stdin else None
        if p.stdin:
            p.stdin.close()
        stream.relay(client, early, sources, sink)
        if sink is not None:
            try:
                os.close(sink)
            except OSError:
                pass
        code = p.wait()
        for f in (p.stdout, p.stderr):
            if f:
                f.close()
        return self._status(code)

    def _tty(self, client, early):
        path = os.path.join(self.work, "console.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        lsock.bind(path)
        lsock.listen(1)
        lsock.settimeout(60)
        p = _popen(self.execs.cs, self.argv + ["--tty", "--console-socket", path,
                                              self.ex.container.id],
                   subprocess.DEVNULL, subprocess.DEVNULL, subprocess.PIPE)
        try:
            conn, _ = lsock.accept()
            with conn:
                _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        except (OSError, socket.timeout):
            p.kill()
            p.wait()
            msg = p.stderr.read().decode(errors="replace").strip()
            client.sendall(f"exec failed: {msg}\r\n".encode())
            return 126
        finally:
            lsock.close()
        master = fds[0]
        with self.ex.cond:
            self.ex.master = master
            if self.ex.size:
                _winsize(master, *self.ex.size)
        self._started(p)
        keys = stream.detach_keys(self.ex.body.get("DetachKeys") or "")
        try:
            how = stream.relay(client, early, [(master, stream.STDOUT if self.framed else None)],
                               master, close_sink_on_eof=False, detach=keys)
        finally:
            self.ex.master = None
        if how is stream.DETACHED:
            return self._after_detach(p, (lambda: os.close(master), p.stderr.close))
        code = p.wait()
        os.close(master)
        p.stderr.close()
        return self._status(code)

    def _status(self, code):
        """Docker's 126 for an exec that never started (the runtime writes
        the pid file once the process runs): a missing program, a bad
        user or working directory."""
        if code != 0 and not os.path.exists(os.path.join(self.work, "pid")):
            return 126
        return code


def _shown(cmd):
    """dockerd's event text: the program, a space, the arguments."""
    return f"{cmd[0]} {' '.join(cmd[1:])}"


def _detached(execs, ex, argv, work):
    """A detached exec: the runtime's exec (not --detach) runs on in a
    thread, so the exit code is known (ExecInspect, exec_die) as with
    dockerd. Returns once the process runs; raises what the runtime said
    if it ended before that."""
    p = _popen(execs.cs, argv + [ex.container.id], subprocess.DEVNULL, subprocess.DEVNULL,
               subprocess.PIPE)
    tail = bytearray()
    pid_file = os.path.join(work, "pid")
    ended = threading.Event()
    decided = threading.Event()   # set once the start below knows how it went

    def wait():
        # the process shares the runtime's stderr: read all of it, keep the end
        for chunk in iter(lambda: p.stderr.read1(65536), b""):
            tail.extend(chunk)
            del tail[:-4096]
        code = p.wait()
        p.stderr.close()
        ended.set()
        decided.wait()
        if ex.running:
            _cleanup(work)
            execs.finished(ex, code)
    threading.Thread(target=wait, daemon=True, name=f"exec-{ex.id[:12]}").start()
    try:
        # the runtime writes the pid file once the process runs
        while not os.path.exists(pid_file) and not ended.wait(0.01):
            pass
        if not os.path.exists(pid_file):
            _cleanup(work)
            execs.finished(ex, 126)
            raise BerthError(f"exec: {tail.decode(errors='replace').strip()}")
        with ex.cond:
            try:
                with open(pid_file) as f:
                    ex.pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                ex.pid = 0
            ex.running = True
    finally:
        decided.set()


def _popen(cs, argv, stdin, stdout, stderr):
    """subprocess.Popen(argv, stdin=, stdout=, stderr=) of a runtime, each
    PIPE or DEVNULL (stderr also STDOUT). berth-runtime runs in a fork of
    the shim zygote instead: the same stdio and exit status without a new
    interpreter's start-up and imports (~15 ms of every docker exec)."""
    z = getattr(cs.e, "zygote", None)
    if z is None or argv[0] != cs.e.config.builtin_runtime:
        return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr)
    theirs, ours = [], []   # ours: (fd, mode) of our pipe end, or None
    for spec, child_reads in ((stdin, True), (stdout, False), (stderr, False)):
        if spec == subprocess.STDOUT:
            theirs.append(os.dup(theirs[1]))
            ours.append(None)
        elif spec == subprocess.PIPE:
            r, w = os.pipe()
            theirs.append(r if child_reads else w)
            ours.append((w, "wb") if child_reads else (r, "rb"))
        else:
            theirs.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
            ours.append(None)
    try:
        p = z.run_runtime(argv[1:], *theirs)
    finally:
        for fd in theirs:
            os.close(fd)
    if p is None:
        for end in filter(None, ours):
            os.close(end[0])
        return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr)
    p.stdin, p.stdout, p.stderr = (os.fdopen(*end) if end else None for end in ours)
    return p


def _read_all(f, timeout):
    """Everything f gives until its end, or None once timeout seconds pass;
    closes f."""
    import select
    import time
    deadline = time.monotonic() + timeout
    out = bytearray()
    with f:
        fd = f.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return bytes(out)
            out += chunk


def _winsize(fd, height, width):
    import fcntl
    import struct
    import termios
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(height), int(width), 0, 0))


def _cleanup(work):
    import shutil
    shutil.rmtree(work, ignore_errors=True)
