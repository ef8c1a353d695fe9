"""A warm berth-shim that forks the real ones (`berth-shim --zygote SOCK`).

berthd starts one at boot. Every container's shim is then a fork of an
interpreter that has already imported the shim, instead of a fresh Python:
no start-up cost per container, and the pages of the interpreter and its
modules stay shared between all shims (lower PSS each).

Protocol on SOCK (unix stream, 0600): the client sends one JSON line
{"argv": [berth-shim arguments]} and reads the shim's ready report (the
line `berth-shim` prints) until EOF. Each fork is the shim itself: it
detaches (setsid) and sends its report on the connection. The zygote dies
with berthd (PR_SET_PDEATHSIG); the shims it forked do not, and init
adopts them then.

A berth-runtime verb (berthd's `docker exec`): {"runtime": [arguments]}
with the verb's stdin, stdout and stderr attached (SCM_RIGHTS); a fork
runs it with those as its fds 0-2 and answers {"pid": N} at once, then
{"exit": status} when the verb ends."""
import os
import socket

from berth.shim import wire


def serve(path, shim_main, runtime_main=None):
    """shim_main(argv) is berth-shim's entry point (berth.cli.shim.main),
    runtime_main(argv) berth-runtime's, for runtime requests."""
    # what a shim needs, imported once here and shared by every fork
    from berth.shim import handoff, logs, loop, main, oom  # noqa: F401
    from berth.sys import libc
    libc.prctl(libc.PR_SET_PDEATHSIG, 9)
    if os.getppid() == 1:
        return 0   # berthd is gone already
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    old = os.umask(0o177)
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    lsock.bind(path)
    os.umask(old)
    lsock.listen(64)
    lsock.settimeout(1.0)
    os.write(1, b"ready\n")
    while True:
        _reap()
        try:
            conn, _ = lsock.accept()
        except socket.timeout:
            continue
        fds = []
        try:
            conn.settimeout(10)
            req, fds = _request(conn)
            argv = req.get("argv", req.get("runtime"))
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise ValueError("argv must be a list of strings")
            if "runtime" in req and (runtime_main is None or len(fds) != 3):
                raise ValueError("a runtime request needs berth-runtime and 3 fds")
        except (OSError, ValueError) as e:
            for fd in fds:
                os.close(fd)
            _answer(conn, {"error": f"berth-shim zygote: bad request: {e}"})
            continue
        if "runtime" in req:
            pid = os.fork()
            if pid == 0:
                lsock.close()
                _runtime(conn, runtime_main, argv, fds)
            for fd in fds:
                os.close(fd)
            conn.close()
            continue
        for fd in fds:
            os.close(fd)
        pid = os.fork()
        if pid == 0:
            lsock.close()
            conn.settimeout(None)
            os.dup2(conn.fileno(), 1)
            conn.close()
            try:
                code = shim_main(argv, report_fd=1, zygote=path)
            except BaseException as e:  # noqa: BLE001 - the report is the answer
                os.write(1, (wire.dumps({"error": f"berth-shim: {e}"}) + "\n").encode())
                code = 1
            os._exit(code if isinstance(code, int) else 1)
        conn.close()


def _request(conn):
    """(the request object, the fds that came with it)."""
    data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
    try:
        while b"\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > 1 << 20:
                raise ValueError("request too large")
        return wire.loads_object(data.split(b"\n", 1)[0]), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _runtime(conn, runtime_main, argv, fds):
    """The fork for a runtime request: never returns."""
    from berth.shim.main import run_runtime
    code = 1
    try:
        conn.settimeout(None)
        conn.sendall((wire.dumps({"pid": os.getpid()}) + "\n").encode())
        code = run_runtime(runtime_main, argv, *fds, keep=conn.fileno())
    finally:
        try:
            conn.sendall((wire.dumps({"exit": code}) + "\n").encode())
        except OSError:
            pass
        os._exit(0)


def _answer(conn, obj):
    try:
        conn.sendall((wire.dumps(obj) + "\n").encode())
    except OSError:
        pass
    conn.close()


def _reap():
    from berth.shim.loop import reap_quiet
    reap_quiet()
