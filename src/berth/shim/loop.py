"""The shim's event loop: one thread, one epoll.

Sources: the container's stdout/stderr pipes (or the pty master), a
self-pipe woken by SIGCHLD, the attach and control listeners and their
connections. Output goes to the json-file log and, live, to every attach
client that asked for that stream.

attach.sock: the client's first line is {"stdin":b,"stdout":b,"stderr":b};
after it, bytes from the client go to the container's stdin (with
"stdin":true and --open-stdin), and output comes back framed as Docker's
multiplexed stream (no tty) or raw (tty). The client's EOF closes the
container's stdin when --stdin-once was given (with a tty: sends ^D).

control.sock: JSON-line requests, one JSON-line reply each:
  {"op":"resize","height":H,"width":W} -> {"ok":true}
  {"op":"wait"}  -> {"exit_code":N,"finished_at":"...","oom_killed":false} once exited
  {"op":"ping"}  -> {"ok":true,"pid":INIT_PID}
  {"op":"start"} -> {"ok":true} (only with --no-start: runs `runtime start`)
  {"op":"kill","signal":N} -> {"ok":true}: signal N (1..64) to the init
attach.sock: a header line {"stdin":..,"stdout":..,"stderr":..,"ack":true}; with
  "ack" one NUL byte comes back first, once the client is registered.
  anything else  -> {"error":"..."}

When the init exits (wait4; other orphans are reaped and ignored) the
output is drained (at most DRAIN_TIMEOUT), exit.json is written atomically,
waiters are answered, the sockets removed, attach clients get the rest of
the output and are closed, then the runtime deletes the container and
shim.pid goes."""
import os
import select
import time

import _signal
import _socket

from berth.shim import logs, oom, wire
from berth.shim.main import Stdio, _unlink, delete, log

IN, OUT, ERRS = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR | select.EPOLLHUP
DRAIN_TIMEOUT = 2.0
READ_SIZE = 65536
CLIENT_BUF_MAX = 8 << 20   # a client this far behind is dropped
STDIN_BUF_MAX = 1 << 20    # clients' stdin reads pause above this
HEADER_MAX = 4096
TIOCSWINSZ = 0x5414


class Conn:
    __slots__ = ("sock", "fd", "kind", "inbuf", "out", "reading", "header",
                 "stdin", "stdout", "stderr", "mask")

    def __init__(self, sock, kind):
        self.sock = sock
        self.fd = sock.fileno()
        self.kind = kind
        self.inbuf = bytearray()
        self.out = bytearray()
        self.reading = True
        self.header = False
        self.stdin = self.stdout = self.stderr = False
        self.mask = 0


class Monitor:
    def __init__(self, opts, io: Stdio, init_pid):
        self.opts = opts
        self.io = io
        self.init_pid = init_pid
        self.log = logs.JsonLog(opts.log_path, opts.log_max_size, opts.log_max_files)
        self.ep = select.epoll()
        self.conns = {}
        self.listeners = {}
        self.waiters = []
        self.exit = None          # {"exit_code", "finished_at", "oom_killed"}
        self.oom_files = oom.counter_files(init_pid)
        self.oom_before = oom.kills(self.oom_files)
        self.stdin_buf = bytearray()
        self.stdin_closing = False
        self.stdin_closed = False
        self.stdin_mask = 0
        self.sources = {}         # fd -> stream name
        self.wake_r = None

    # ---------------------------------------------------------- set-up

    def listen(self):
        from berth.shim.main import _listen
        out = []
        for name, kind in (("attach.sock", "attach"), ("control.sock", "control")):
            s = _listen(self.opts.path(name))
            s.setblocking(False)
            self.listeners[s.fileno()] = (s, kind)
            out.append(s)
        return out

    def _setup(self):
        io = self.io
        if io.master is not None:
            self.sources[io.master] = "stdout"
        else:
            self.sources[io.stdout] = "stdout"
            self.sources[io.stderr] = "stderr"
        for fd in self.sources:
            os.set_blocking(fd, False)
            self.ep.register(fd, IN)
        if io.stdin is not None:
            os.set_blocking(io.stdin, False)
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        _signal.set_wakeup_fd(wake_w)
        _signal.signal(_signal.SIGCHLD, lambda *_: None)
        self.ep.register(self.wake_r, IN)
        for fd in self.listeners:
            self.ep.register(fd, IN)

    # ---------------------------------------------------------- loop

    def run(self):
        """The shim's exit status; None as soon as the container has started
        when berth-monitor takes over from there (handoff.py)."""
        self._setup()
        self._reap()
        return self.loop()

    def loop(self):
        drain_until = None
        while not self.handoff_ready:
            if self.exit is not None:
                if not self.sources:
                    break
                if drain_until is None:
                    drain_until = time.monotonic() + DRAIN_TIMEOUT
                timeout = drain_until - time.monotonic()
                if timeout <= 0:
                    break
            else:
                timeout = -1
            for fd, ev in self.ep.poll(timeout):
                try:
                    self._dispatch(fd, ev)
                except Exception as e:   # a bug must not end the monitor
                    log(f"event on fd {fd}: {type(e).__name__}: {e}")
                    c = self.conns.get(fd)
                    if c is not None:
                        self._close(c)
        return None if self.handoff_ready else self._finish()

    def _dispatch(self, fd, ev):
        if fd in self.sources:
            if ev & OUT:
                self._flush_stdin()
            if ev & (IN | ERRS):
                self._on_output(fd)
        elif fd == self.wake_r:
            try:
                while os.read(fd, 4096):
                    pass
            except BlockingIOError:
                pass
            self._reap()
        elif fd in self.listeners:
            self._accept(fd)
        elif fd in self.conns:
            self._on_conn(self.conns[fd], ev)
        elif fd == self.io.stdin:
            self._flush_stdin()

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.init_pid and self.exit is None:
                code = os.waitstatus_to_exitcode(status)
                killed = oom.kills(self.oom_files) > self.oom_before
                self.exit = {"exit_code": code if code >= 0 else 128 - code,
                             "finished_at": logs.rfc3339nano(), "oom_killed": killed}

    # ---------------------------------------------------------- output

    def _on_output(self, fd):
        stream = self.sources[fd]
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:   # EIO: the pty has no slave left
            data = b""
        if not data:
            self._drop_source(fd)
            return
        self.log.write(stream, data)
        tty = self.io.master is not None
        msg = data if tty else logs.frame(stream, data)
        for c in list(self.conns.values()):
            if c.kind == "attach" and c.header and getattr(c, stream):
                self._send(c, msg)

    def _drop_source(self, fd):
        del self.sources[fd]
        if fd == self.io.master:
            self.stdin_mask = 0
            self.stdin_buf.clear()
        try:
            self.ep.unregister(fd)
        except OSError:
            pass

    # ---------------------------------------------------------- stdin

    def _stdin_fd(self):
        if not self.opts.open_stdin or self.stdin_closed:
            return None
        return self.io.master if self.io.master is not None else self.io.stdin

    def _to_stdin(self, data):
        if self._stdin_fd() is None or self.stdin_closing:
            return
        self.stdin_buf += data
        self._flush_stdin()

    def _flush_stdin(self):
        fd = self._stdin_fd()
        if fd is None:
            self.stdin_buf.clear()
            return
        try:
            while self.stdin_buf:
                n = os.write(fd, self.stdin_buf)
                del self.stdin_buf[:n]
        except BlockingIOError:
            pass
        except OSError:   # EPIPE/EIO: nobody reads stdin any more
            self.stdin_buf.clear()
        if not self.stdin_buf and self.stdin_closing:
            self._close_stdin()
        else:
            self._arm_stdin()
        self._update_pause()

    def _arm_stdin(self):
        want = OUT if self.stdin_buf else 0
        fd = self._stdin_fd()
        if fd is None or want == self.stdin_mask:
            return
        if fd == self.io.master:
            if fd in self.sources:
                self.ep.modify(fd, IN | want)
        elif self.stdin_mask == 0:
            self.ep.register(fd, want)
        elif want == 0:
            self.ep.unregister(fd)
        self.stdin_mask = want

    def _close_stdin(self):
        self.stdin_closing = True
        if self.stdin_closed:
            return
        self.stdin_buf.clear()
        self._arm_stdin()
        self.stdin_closed = True
        if self.io.master is not None:
            try:
                os.write(self.io.master, b"\x04")   # ^D: EOF for the reader
            except OSError:
                pass
            return
        if self.io.stdin is not None:
            os.close(self.io.stdin)
            self.io.stdin = None

    def _update_pause(self):
        for c in self.conns.values():
            self._rearm(c)

    # ---------------------------------------------------------- connections

    def _accept(self, lfd):
        s, kind = self.listeners[lfd]
        while True:
            try:
                fd, _ = s._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log(f"accept: {e}")
                return
            sock = _socket.socket(fileno=fd)
            sock.setblocking(False)
            c = Conn(sock, kind)
            self.conns[fd] = c
            c.mask = IN
            self.ep.register(fd, IN)

    def _rearm(self, c):
        """Registered from accept to close; a mask of 0 still reports the
        peer's hang-up (EPOLLHUP), so abandoned half-closed clients go."""
        mask = 0
        if c.reading:
            paused = (c.kind == "attach" and c.header and c.stdin
                      and len(self.stdin_buf) > STDIN_BUF_MAX)
            if not paused:
                mask |= IN
        if c.out:
            mask |= OUT
        if mask != c.mask:
            self.ep.modify(c.fd, mask)
            c.mask = mask

    def _close(self, c):
        if self.conns.get(c.fd) is not c:
            return   # closed already (its fd number may be reused)
        del self.conns[c.fd]
        if c in self.waiters:
            self.waiters.remove(c)
        try:
            self.ep.unregister(c.fd)
        except (OSError, ValueError):
            pass
        c.mask = 0
        c.sock.close()

    def _send(self, c, data):
        if self.conns.get(c.fd) is not c:
            return
        if not c.out:
            try:
                n = c.sock.send(data)
                if n == len(data):
                    return
                data = data[n:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close(c)
                return
        c.out += data
        if len(c.out) > CLIENT_BUF_MAX:
            log(f"{c.kind} client too slow, dropped")
            self._close(c)
            return
        self._rearm(c)

    def _on_conn(self, c, ev):
        if ev & OUT and c.out:
            try:
                n = c.sock.send(c.out)
                del c.out[:n]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close(c)
                return
            self._rearm(c)
            if not c.out and not c.reading and c.kind == "control" and c not in self.waiters:
                self._close(c)
                return
        if ev & ERRS and not c.reading:
            self._close(c)   # the peer is gone
            return
        if ev & (IN | ERRS) and c.reading:
            try:
                data = c.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._on_eof(c)
            elif c.kind == "attach":
                self._on_attach_data(c, data)
            else:
                self._on_control_data(c, data)

    def _on_eof(self, c):
        c.reading = False
        if c.kind == "attach" and c.header and c.stdin and self.opts.stdin_once:
            self.stdin_closing = True
            if not self.stdin_buf:
                self._close_stdin()
        if c.kind == "control" and (c in self.waiters or c.out):
            self._rearm(c)   # half-closed: still owed a reply
            return
        if c.kind == "control" or not c.header:
            self._close(c)
            return
        self._rearm(c)

    def _on_attach_data(self, c, data):
        if c.header:
            if c.stdin:
                self._to_stdin(data)
            return
        c.inbuf += data
        nl = c.inbuf.find(b"\n")
        if nl < 0:
            if len(c.inbuf) > HEADER_MAX:
                self._close(c)
            return
        try:
            req = wire.loads_object(c.inbuf[:nl])
        except ValueError:
            self._close(c)
            return
        rest = bytes(c.inbuf[nl + 1:])
        c.inbuf = bytearray()
        c.header = True
        c.stdin = bool(req.get("stdin"))
        c.stdout = bool(req.get("stdout"))
        c.stderr = bool(req.get("stderr"))
        if req.get("ack"):
            # one byte before any output: the client knows it is registered
            self._send(c, b"\0")
        if rest and c.stdin:
            self._to_stdin(rest)
        self._rearm(c)

    def _on_control_data(self, c, data):
        c.inbuf += data
        while True:
            nl = c.inbuf.find(b"\n")
            if nl < 0:
                if len(c.inbuf) > HEADER_MAX:
                    self._close(c)
                return
            line = bytes(c.inbuf[:nl])
            del c.inbuf[:nl + 1]
            if line.strip():
                self._control(c, line)
                if self.conns.get(c.fd) is not c:
                    return

    def _reply(self, c, obj):
        self._send(c, (wire.dumps(obj) + "\n").encode())

    def _control(self, c, line):
        try:
            req = wire.loads_object(line)
        except ValueError:
            self._reply(c, {"error": "request is not a json object"})
            return
        op = req.get("op")
        if op == "ping":
            self._reply(c, {"ok": True, "pid": self.init_pid})
        elif op == "wait":
            if self.exit is not None and c not in self.waiters and self._done:
                self._reply(c, self.exit)
            else:
                self.waiters.append(c)
        elif op == "resize":
            self._reply(c, self._resize(req))
        elif op == "start":
            self._reply(c, self._start())
        elif op == "kill":
            self._reply(c, self._kill(req.get("signal")))
        else:
            self._reply(c, {"error": f"unknown op {op!r}"})

    _done = False   # exit.json written and the container deleted
    _started = False
    handoff_ready = False   # started, and opts.monitor is to take over

    def _start(self):
        """--no-start: berthd has connected its attach clients; go."""
        if self._started or not self.opts.no_start:
            return {"error": "already started"}
        if self.exit is not None:
            return {"error": "the container exited before start"}
        from berth.shim.main import CREATE_TIMEOUT, ShimError, run_verb
        self._started = True
        try:
            run_verb(self.opts, ["start", self.opts.id], CREATE_TIMEOUT)
        except ShimError as e:
            return {"error": str(e)}
        self.handoff_ready = bool(self.opts.monitor)
        return {"ok": True}

    def _kill(self, sig):
        if not (isinstance(sig, int) and 1 <= sig <= 64):
            return {"error": "kill: signal must be an integer 1..64"}
        if self.exit is not None:
            # reaped: the pid may be another process's by now
            return {"error": "kill: the container has exited"}
        try:
            os.kill(self.init_pid, sig)
        except OSError as e:
            return {"error": f"kill: {e.strerror}"}
        return {"ok": True}

    def _resize(self, req):
        h, w = req.get("height"), req.get("width")
        if not (isinstance(h, int) and isinstance(w, int) and 0 <= h <= 0xFFFF
                and 0 <= w <= 0xFFFF):
            return {"error": "resize: height and width must be integers 0..65535"}
        if self.io.master is None:
            return {"ok": True}   # no terminal: nothing to resize (as Docker)
        import fcntl
        buf = h.to_bytes(2, "little") + w.to_bytes(2, "little") + bytes(4)
        try:
            fcntl.ioctl(self.io.master, TIOCSWINSZ, buf)
        except OSError as e:
            return {"error": f"resize: {e.strerror}"}
        return {"ok": True}

    # ---------------------------------------------------------- the end

    def _finish(self):
        opts = self.opts
        for fd in list(self.sources):
            self._drop_source(fd)
        for step in (self.log.close, self._write_exit, self._answer_waiters):
            self._step(step)
        # unlink first: a client that sees its attach stream end and then
        # asks for the exit finds no socket and reads exit.json; attach
        # streams end before the runtime's delete
        for name in ("attach.sock", "control.sock", "console.sock"):
            _unlink(opts.path(name))
        self._last_round()
        for fd in self.listeners:
            self.listeners[fd][0].close()
        self.io.close()
        self._step(self._delete)
        _unlink(opts.path("shim.pid"))   # last: berthd takes it for "still deleting"
        return 0

    def _step(self, step):
        try:
            step()
        except Exception as e:   # the rest of the clean-up still runs
            log(f"exit: {step.__name__}: {type(e).__name__}: {e}")

    def _answer_waiters(self):
        # before `delete`: the exit is on disk, and whoever waits should not
        # wait for the runtime's clean-up too (berthd waits for this process
        # to end before it reuses the container's id)
        self._done = True
        for c in list(self.waiters):
            self._reply(c, self.exit)
        self.waiters.clear()

    def _write_exit(self):
        _write_atomic(self.opts.path("exit.json"), wire.dumps(self.exit) + "\n")

    def _delete(self):
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        delete(self.opts)
        self._reap_quiet()

    def _reap_quiet(self):
        reap_quiet()

    def _last_round(self):
        """Answers what is already queued, then writes every client's
        pending output (bounded time) and closes all connections."""
        for fd in self.listeners:
            self._accept(fd)
        for fd, ev in self.ep.poll(0.05):
            if fd in self.conns:
                self._on_conn(self.conns[fd], ev)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for c in list(self.conns.values()):
            if c.out:
                try:
                    c.sock.settimeout(max(0.05, deadline - time.monotonic()))
                    c.sock.sendall(c.out)
                except OSError:
                    pass
            try:
                c.sock.shutdown(_socket.SHUT_RDWR)
            except OSError:
                pass
            self._close(c)


def _write_atomic(path, text):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def reap_quiet():
    """Collect every child that has ended, whoever it was."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
