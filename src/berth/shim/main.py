"""Start-up of berth-shim: detach from berthd, create and start the
container through the runtime binary, report readiness, then hand over to
berth-monitor (handoff.py) or, without one, to loop.Monitor.

Detach: the original process forks; the child calls setsid, drops every fd
it inherited (0-2 become /dev/null, stderr SHIM_DIR/shim.log), becomes a
child subreaper and does the work; it sends the ready report over a pipe to
the original process, which prints it as one JSON line on its stdout
(berthd's pipe) and exits 0 on success, 1 on failure."""
import os
import sys

from berth.shim import wire

DEVNULL = "/dev/null"
CREATE_TIMEOUT = 120.0
DELETE_TIMEOUT = 30.0
# dispositions the shim changes, reset for the runtime and the container
_SIGNALS = (1, 2, 13, 15, 17)  # HUP INT PIPE TERM CHLD


class ShimError(Exception):
    pass


class Options:
    tty = open_stdin = stdin_once = no_start = False
    runtime_main = runtime_here = None   # berth-runtime in this process (cli.shim)
    monitor = None   # berth-monitor to exec once the container is created (handoff)
    zygote = None    # the zygote's socket, for the monitor's runtime verbs
    log_max_size = 0
    log_max_files = 1

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)
        for k in ("bundle", "runtime_root", "state_dir", "log_path"):
            setattr(self, k, os.path.abspath(getattr(self, k)))
        if "/" in self.runtime:
            self.runtime = os.path.abspath(self.runtime)
        for k in ("monitor", "zygote"):   # the shim's cwd becomes state_dir
            if getattr(self, k):
                setattr(self, k, os.path.abspath(getattr(self, k)))

    def path(self, name):
        return os.path.join(self.state_dir, name)


def run(opts, report_fd=None):
    """Entry point: returns the original process's exit code; the detached
    shim never returns (it os._exit()s). report_fd: the caller is a fresh
    fork already (the zygote's), which becomes the shim itself and sends
    the ready report there: no second fork on the way to the container."""
    os.makedirs(opts.state_dir, mode=0o700, exist_ok=True)
    if report_fd is not None:
        return _shim(opts, report_fd)
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        return _report(r)
    try:
        os.close(r)
        code = _shim(opts, w)
    except BaseException as e:  # never return into the caller's stack
        try:
            _send_report(w, {"error": f"berth-shim: {e}"})
        except Exception:
            pass
        code = 1
    os._exit(code)


def _report(r):
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    line = data.strip().split(b"\n")[0] if data.strip() else b""
    if not line:
        line = b'{"error":"berth-shim: exited before reporting ready"}'
    os.write(1, line + b"\n")
    try:
        return 0 if "pid" in wire.loads_object(line) else 1
    except ValueError:
        return 1


def _send_report(fd, obj):
    if fd is None or fd < 0:
        return
    data = (wire.dumps(obj) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]
    os.close(fd)


def _detach(opts, report_fd):
    """setsid, fds 0-2 to /dev/null and shim.log, the report pipe on fd 3,
    every other inherited fd closed. Returns the report fd."""
    import fcntl
    os.setsid()
    hi = fcntl.fcntl(report_fd, fcntl.F_DUPFD_CLOEXEC, 10)
    null = os.open(DEVNULL, os.O_RDWR)
    log = os.open(opts.path("shim.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log, 2)
    os.dup2(hi, 3, inheritable=False)
    from berth.sys import libc
    libc.close_range(4)
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    import _signal
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP):
        _signal.signal(sig, _signal.SIG_IGN)
    os.chdir(opts.state_dir)
    return 3


def log(msg):
    try:
        os.write(2, f"berth-shim[{os.getpid()}]: {msg}\n".encode())
    except OSError:
        pass


# ------------------------------------------------------------- the runtime


def spawn(opts, args, stdin, stdout, stderr):
    if opts.runtime_main is not None:
        return _fork_runtime(opts.runtime_main, ["--root", opts.runtime_root, *args],
                             stdin, stdout, stderr)
    argv = [opts.runtime, "--root", opts.runtime_root, *args]
    fa = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
          (os.POSIX_SPAWN_DUP2, stderr, 2)]
    fn = os.posix_spawn if "/" in opts.runtime else os.posix_spawnp
    try:
        return fn(argv[0], argv, os.environ, file_actions=fa,
                  setsigdef=_SIGNALS, setsigmask=())
    except OSError as e:
        raise ShimError(f"cannot run runtime {opts.runtime}: {e.strerror}") from None


def _fork_runtime(runtime_main, argv, stdin, stdout, stderr):
    """berth-runtime ARGV in a fork of this interpreter: the same process
    tree and stdio as exec'ing it, without a new interpreter's start-up."""
    pid = os.fork()
    if pid:
        return pid
    os._exit(run_runtime(runtime_main, argv, stdin, stdout, stderr))


def run_runtime(runtime_main, argv, stdin, stdout, stderr, keep=-1):
    """In a fresh fork: berth-runtime ARGV with stdin, stdout and stderr as
    its fds 0-2, every other fd but keep out of its way; returns its exit
    status."""
    # _signal, not signal: that one builds enums of every signal, ~2 ms in
    # each fork (a container's create, a docker exec) had it not been
    # imported before the fork
    import _signal
    code = 1
    try:
        for i, fd in enumerate((stdin, stdout, stderr)):
            os.dup2(fd, i)
        # the caller's fds (the ready-report pipe, sockets, the other pipe
        # ends) must not live on in the container's init until it execs:
        # berthd waits for EOF on some. Each becomes a close-on-exec
        # /dev/null, so the caller's objects that still name the numbers
        # can never close one of the runtime's own.
        null = os.open(DEVNULL, os.O_RDWR | os.O_CLOEXEC)
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd not in (null, keep):
                try:
                    os.dup2(null, fd, inheritable=False)
                except OSError:
                    pass
        for s in _SIGNALS:
            _signal.signal(s, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
        code = runtime_main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - the exit status is the answer
        os.write(2, f"berth-runtime: {e}\n".encode(errors="replace"))
    return code if isinstance(code, int) else 1


def wait_pid(pid, timeout, on_ready=None, extra=()):
    """Exit status of pid; kills it after timeout. on_ready(fd) is called
    for each fd of extra that becomes readable meanwhile."""
    import select
    import time
    pidfd = os.pidfd_open(pid)
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise ShimError(f"runtime (pid {pid}) did not finish in {timeout:.0f}s")
            ready, _, _ = select.select([pidfd, *extra], [], [], left)
            for fd in ready:
                if fd != pidfd and on_ready:
                    on_ready(fd)
            if pidfd in ready:
                return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        os.close(pidfd)


def read_available(fd):
    os.set_blocking(fd, False)
    out = b""
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
    except BlockingIOError:
        pass
    return out


def one_line(err, verb, code):
    lines = [ln.strip() for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else f"runtime {verb} exited with status {code}"


def run_verb(opts, args, timeout=DELETE_TIMEOUT):
    """Runs a runtime verb with no stdio but stderr; raises with its message."""
    if opts.runtime_here is not None and args[0] in ("start", "delete"):
        return _verb_here(opts, args)
    null = os.open(DEVNULL, os.O_RDWR | os.O_CLOEXEC)
    r, w = os.pipe()
    try:
        pid = spawn(opts, args, null, null, w)
        os.close(w)
        w = None
        err = bytearray()
        code = wait_pid(pid, timeout, lambda fd: err.extend(read_available(fd)), (r,))
        err += read_available(r)
    finally:
        os.close(null)
        os.close(r)
        if w is not None:
            os.close(w)
    if code != 0:
        raise ShimError(one_line(err, args[0], code))


def _verb_here(opts, args):
    """berth-runtime's start and delete called in this process: neither
    needs a process of its own, and a fork of this interpreter costs ~2 ms
    between its start-up and the end of its exit, on the path from
    `docker run` to the container running and from its exit to its removal."""
    from berth.errors import BerthError
    try:
        opts.runtime_here(opts.runtime_root, args[0], args[-1])
    except BerthError as e:
        raise ShimError(str(e)) from None


def delete(opts):
    try:
        run_verb(opts, ["delete", "-f", opts.id])
    except ShimError as e:
        if "not exist" not in str(e) and "not found" not in str(e):
            log(f"delete: {e}")


# ------------------------------------------------------------- the shim


class Stdio:
    """The shim's ends of the container's stdio."""
    stdin = stdout = stderr = master = None

    def close(self):
        for name in ("stdin", "stdout", "stderr", "master"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)


def _create(opts, io):
    """RUNTIME create; returns the init pid. Fills io with the shim's ends."""
    null = os.open(DEVNULL, os.O_RDWR | os.O_CLOEXEC)
    child = []
    console = None
    try:
        if opts.tty:
            console_path = opts.path("console.sock")
            console = _listen(console_path)
            err_r, err_w = os.pipe()
            child_fds = (null, null, err_w)
            child.append(err_w)
            extra = ["--console-socket", console_path]
        else:
            if opts.open_stdin:
                in_r, io.stdin = os.pipe()
                child.append(in_r)
            else:
                in_r = null
            io.stdout, out_w = os.pipe()
            io.stderr, err_w = os.pipe()
            child += [out_w, err_w]
            err_r = io.stderr
            child_fds = (in_r, out_w, err_w)
            extra = []
        pid = spawn(opts, ["create", "--bundle", opts.bundle, "--pid-file",
                           opts.path("init.pid"), *extra, opts.id], *child_fds)
        for fd in child:
            os.close(fd)
        child = []

        def accept(fd):
            if io.master is None:
                io.master = _recv_fd(console)
        code = wait_pid(pid, CREATE_TIMEOUT, accept, (console.fileno(),) if console else ())
        if code != 0:
            raise ShimError(one_line(read_available(err_r), "create", code))
        if opts.tty:
            os.close(err_r)
            if io.master is None:
                console.setblocking(False)
                try:
                    io.master = _recv_fd(console)
                except BlockingIOError:
                    raise ShimError("runtime sent no terminal on the console socket") from None
        with open(opts.path("init.pid")) as f:
            return int(f.read().strip())
    finally:
        os.close(null)
        for fd in child:
            os.close(fd)
        if console is not None:
            console.close()
            _unlink(opts.path("console.sock"))


def _listen(path):
    import _socket
    _unlink(path)
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    old = os.umask(0o177)   # sockets: 0600
    try:
        s.bind(path)
    finally:
        os.umask(old)
    s.listen(16)
    return s


def _recv_fd(listener):
    import _socket
    fd, _ = listener._accept()
    conn = _socket.socket(fileno=fd)
    try:
        conn.settimeout(10)
        _msg, anc, _flags, _addr = conn.recvmsg(4096, _socket.CMSG_SPACE(4 * 4))
    finally:
        conn.close()
    fds = []
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder)
                    for i in range(0, len(data) - len(data) % 4, 4)]
    if not fds:
        raise ShimError("console socket: no fd received")
    for extra in fds[1:]:
        os.close(extra)
    os.set_inheritable(fds[0], False)
    return fds[0]


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _shim(opts, report_fd):
    report_fd = _detach(opts, report_fd)
    shim_pid = os.getpid()
    with open(opts.path("shim.pid"), "w") as f:
        f.write(f"{shim_pid}\n")
    io = Stdio()
    listeners = []
    try:
        init_pid = _create(opts, io)
        from berth.shim.loop import Monitor
        mon = Monitor(opts, io, init_pid)
        listeners = mon.listen()
        if not opts.no_start:
            run_verb(opts, ["start", opts.id], CREATE_TIMEOUT)
    except BaseException as e:
        msg = str(e) if isinstance(e, ShimError) else f"berth-shim: {e}"
        log(f"start-up failed: {msg}")
        io.close()
        for s in listeners:
            s.close()
        delete(opts)
        for name in ("attach.sock", "control.sock", "console.sock", "shim.pid"):
            _unlink(opts.path(name))
        _send_report(report_fd, {"error": msg.replace("\n", " ")})
        return 1
    _send_report(report_fd, {"pid": init_pid, "shim_pid": shim_pid})
    # berth-monitor takes over once the container runs: berthd's start
    # request (--no-start) is served here, start in this process
    from berth.shim.handoff import exec_monitor
    if opts.monitor and not opts.no_start:
        exec_monitor(opts, io, mon, listeners)   # returns only if it failed
    code = mon.run()
    if code is None:
        exec_monitor(opts, io, mon, listeners)
        mon.handoff_ready = False
        code = mon.loop()
    return code
