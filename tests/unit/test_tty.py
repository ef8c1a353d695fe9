"""Pseudo-terminals, fd passing over unix sockets, and the foreground proxy.
No root needed: the host's /dev/ptmx serves as the container's."""
import errno
import fcntl
import os
import select
import signal
import socket
import termios
import threading
import time

import pytest

from berth.errors import SysError
from berth.runtime import tty


@pytest.fixture
def fds():
    """Collects fds a test opens; closes them all afterwards."""
    opened = []
    yield opened
    for fd in opened:
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def children():
    """Pids a test forks; killed and reaped afterwards, also on failure."""
    pids = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _pty(fds):
    master, slave = tty.open_pty()
    fds += [master, slave]
    return master, slave


def _read_until(fd, needle, timeout=5.0):
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf:
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"timed out waiting for {needle!r}, got {buf!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError as e:
            if e.errno == errno.EIO:
                break
            raise
        if not chunk:
            break
        buf += chunk
    return buf


def _fork(body):
    """Runs body() in a child; its exit code is 0 if body returns, 1 if it raises."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def _cloexec(fd):
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def test_pty_round_trip(fds):
    master, slave = _pty(fds)
    assert os.isatty(slave)
    assert os.ttyname(slave) == tty.ptsname(master)
    assert _cloexec(master) and _cloexec(slave)
    os.write(master, b"hello\n")
    assert _read_until(slave, b"\n") == b"hello\n"
    os.write(slave, b"back\n")
    # the terminal echoed our input; ONLCR turns \n into \r\n on the way out
    assert _read_until(master, b"back\r\n") == b"hello\r\nback\r\n"


def test_open_pty_missing_ptmx_names_the_path(tmp_path):
    with pytest.raises(SysError) as e:
        tty.open_pty(str(tmp_path / "ptmx"))
    assert e.value.errno == errno.ENOENT
    assert str(tmp_path / "ptmx") in str(e.value)


def test_ptsname_follows_the_ptmx_location(fds):
    master, _ = _pty(fds)
    n = tty.pty_number(master)
    assert tty.ptsname(master, "/c/dev/ptmx") == f"/c/dev/pts/{n}"
    assert tty.ptsname(master, "/c/dev/pts/ptmx") == f"/c/dev/pts/{n}"


def test_winsize_set_on_master_is_seen_on_slave(fds):
    master, slave = _pty(fds)
    tty.set_winsize(master, 42, 132)
    assert tty.get_winsize(slave) == (42, 132)
    assert tty.get_winsize(master) == (42, 132)
    tty.set_winsize(slave, 24, 80)
    assert tty.get_winsize(master) == (24, 80)


def test_winsize_errors(tmp_path, fds):
    master, _ = _pty(fds)
    with pytest.raises(SysError):
        tty.set_winsize(master, 70000, 80)
    f = os.open(tmp_path / "plain", os.O_CREAT | os.O_RDWR)
    fds.append(f)
    with pytest.raises(SysError) as e:
        tty.get_winsize(f)
    assert e.value.errno == errno.ENOTTY


def test_send_fd_over_console_socket(tmp_path, fds):
    master, slave = _pty(fds)
    path = str(tmp_path / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(path)
        srv.listen(1)
        tty.send_fd(path, master)
        conn, _ = srv.accept()
        with conn:
            got, name = tty.recv_fd_named(conn)
    fds.append(got)
    assert name == "/dev/ptmx"  # what runc sends with the master
    assert got != master
    assert os.fstat(got).st_rdev == os.fstat(master).st_rdev
    assert _cloexec(got)
    os.write(got, b"via socket\n")
    assert _read_until(slave, b"\n") == b"via socket\n"


def test_console_socket_message_is_runcs(tmp_path, fds):
    """A receiver written like containerd's reads the name bytes and one fd."""
    master, _ = _pty(fds)
    path = str(tmp_path / "c.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(path)
        srv.listen(1)
        tty.send_fd(path, master)
        conn, _ = srv.accept()
        with conn:
            msg, anc, flags, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4))
    assert msg == b"/dev/ptmx"
    assert len(anc) == 1 and anc[0][:2] == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    fd = int.from_bytes(anc[0][2], "little")
    fds.append(fd)
    assert os.fstat(fd).st_rdev == os.fstat(master).st_rdev


def test_send_fd_to_missing_socket_names_it(tmp_path, fds):
    master, _ = _pty(fds)
    path = str(tmp_path / "nobody.sock")
    with pytest.raises(SysError) as e:
        tty.send_fd(path, master)
    assert e.value.errno == errno.ENOENT
    assert path in str(e.value)


def test_socketpair_carries_fd(fds):
    a, b = tty.socketpair()
    fds += [a, b]
    assert _cloexec(a) and _cloexec(b)
    master, slave = _pty(fds)
    tty.send_fd_to(a, slave, name="/dev/pts/x")
    got = tty.recv_fd(b)
    fds.append(got)
    assert os.fstat(got).st_rdev == os.fstat(slave).st_rdev
    os.write(master, b"ok\n")
    assert _read_until(got, b"\n") == b"ok\n"
    # the sockets stay usable and open: recv_fd does not take them over
    os.fstat(a), os.fstat(b)


def test_recv_fd_when_peer_closes_without_fd(fds):
    a, b = tty.socketpair()
    fds.append(b)
    os.close(a)
    with pytest.raises(SysError, match="peer closed"):
        tty.recv_fd(b)


def test_recv_fd_rejects_message_without_fd(fds):
    a, b = tty.socketpair()
    fds += [a, b]
    os.write(a, b"/dev/ptmx")
    with pytest.raises(SysError, match="expected one fd, got 0"):
        tty.recv_fd(b)


def test_make_controlling_gives_child_a_terminal(fds, children):
    master, slave = _pty(fds)

    def child():
        os.close(master)
        os.setsid()
        tty.make_controlling(slave)
        assert os.tcgetpgrp(0) == os.getpid()  # fails without a controlling tty
        assert all(os.ttyname(fd) == os.ttyname(slave) for fd in (0, 1, 2))
        os.close(os.open("/dev/tty", os.O_RDWR))
        os.write(1, b"controlled\n")

    pid = _fork(child)
    children.append(pid)
    os.close(slave)
    fds.remove(slave)
    out = _read_until(master, b"controlled")
    assert b"controlled" in out
    _, status = os.waitpid(pid, 0)
    children.remove(pid)
    assert os.waitstatus_to_exitcode(status) == 0


def test_make_controlling_without_new_session_fails(fds):
    # pytest is no session leader here, or already has a terminal: either way
    # TIOCSCTTY must refuse, and say so
    _, slave = _pty(fds)
    if os.getsid(0) == os.getpid():
        pytest.skip("test process leads its own session")
    with pytest.raises(SysError, match="setsid"):
        tty.make_controlling(slave)


def _container(slave, master, body):
    """Forks a 'container process' on the pty's slave end."""
    def child():
        os.close(master)
        os.setsid()
        tty.make_controlling(slave)
        os.close(slave)
        body()
    pid = _fork(child)
    os.close(slave)
    return pid


def test_proxy_copies_both_ways_until_hangup(tmp_path, fds, children):
    master, slave = tty.open_pty()
    fds.append(master)

    def body():
        os.write(1, b"ready\n")
        line = os.read(0, 100)
        os.write(1, b"got " + line.strip() + b"\n")

    pid = _container(slave, master, body)
    children.append(pid)
    in_r, in_w = os.pipe()
    fds += [in_r, in_w]
    os.write(in_w, b"ping\n")
    out_path = tmp_path / "out"
    out = os.open(out_path, os.O_CREAT | os.O_WRONLY)
    fds.append(out)
    tty.proxy(master, in_r, out)
    data = out_path.read_bytes()
    assert b"ready" in data and b"got ping" in data
    _, status = os.waitpid(pid, 0)
    children.remove(pid)
    assert os.waitstatus_to_exitcode(status) == 0


def test_proxy_sends_eof_when_piped_stdin_ends(tmp_path, fds, children):
    master, slave = tty.open_pty()
    fds.append(master)

    def body():  # cat: reads until EOF, then reports what it saw
        seen = b""
        while True:
            chunk = os.read(0, 100)
            if not chunk:
                break
            seen += chunk
        os.write(1, b"lines=%d\n" % seen.count(b"\n"))

    pid = _container(slave, master, body)
    children.append(pid)
    in_r, in_w = os.pipe()
    fds += [in_r, in_w]
    os.write(in_w, b"a\nb\n")
    os.close(in_w)
    out_path = tmp_path / "out"
    out = os.open(out_path, os.O_CREAT | os.O_WRONLY)
    fds.append(out)
    # safety net: without the EOF the child would read forever
    net = threading.Timer(10, lambda: os.kill(pid, signal.SIGKILL))
    net.start()
    try:
        tty.proxy(master, in_r, out, child_pid=pid)
    finally:
        net.cancel()
    assert b"lines=2" in out_path.read_bytes()
    _, status = os.waitpid(pid, 0)
    children.remove(pid)
    assert os.waitstatus_to_exitcode(status) == 0


def test_proxy_returns_when_child_exits_though_another_process_holds_pty(
        tmp_path, fds, children):
    # When a session leader exits the kernel hangs up its controlling terminal
    # and the master sees EIO anyway. Without that (here: the pty is the
    # child's stdio but not its controlling terminal) only child_pid tells
    # proxy that the process it serves is gone.
    master, slave = tty.open_pty()
    fds.append(master)
    gc_r, gc_w = os.pipe()
    fds += [gc_r, gc_w]

    def child():
        os.close(master)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.close(slave)
        gc = os.fork()
        if gc == 0:
            time.sleep(60)  # keeps the slave open
            os._exit(0)
        os.write(gc_w, b"%d\n" % gc)
        os.write(1, b"parent done\n")

    pid = _fork(child)
    os.close(slave)
    children.append(pid)
    grandchild = int(os.read(gc_r, 32))
    children.append(grandchild)  # not our child: the fixture's kill still ends it
    # safety net: if proxy ignored child_pid it would wait for the grandchild
    net = threading.Timer(10, lambda: os.kill(grandchild, signal.SIGKILL))
    net.start()
    stdin_r, stdin_w = os.pipe()
    fds += [stdin_r, stdin_w]
    out_path = tmp_path / "out"
    out = os.open(out_path, os.O_CREAT | os.O_WRONLY)
    fds.append(out)
    try:
        start = time.monotonic()
        tty.proxy(master, stdin_r, out, child_pid=pid)
        took = time.monotonic() - start
    finally:
        net.cancel()
    assert took < 5
    assert b"parent done" in out_path.read_bytes()
    # proxy must not reap: the caller wants the exit status
    _, status = os.waitpid(pid, 0)
    children.remove(pid)
    assert os.waitstatus_to_exitcode(status) == 0


def test_proxy_on_a_terminal_goes_raw_and_forwards_resize(fds, children):
    # the user's terminal is a second pty: we type on user_m, proxy reads user_s
    user_m, user_s = _pty(fds)
    tty.set_winsize(user_s, 30, 100)
    before = termios.tcgetattr(user_s)
    master, slave = tty.open_pty()
    fds.append(master)

    def body():
        os.read(0, 100)  # "hi": proxy runs, so it has copied the size over
        rows, cols = tty.get_winsize(0)
        os.write(1, b"start %dx%d\n" % (rows, cols))
        os.read(0, 100)  # "go": the resize has happened by then
        rows, cols = tty.get_winsize(0)
        os.write(1, b"now %dx%d\n" % (rows, cols))

    pid = _container(slave, master, body)
    children.append(pid)
    seen = {}
    main = threading.get_ident()

    def user():
        try:
            os.write(user_m, b"hi\r")
            seen["out"] = _read_until(user_m, b"start")
            seen["lflag"] = termios.tcgetattr(user_s)[3]
            tty.set_winsize(user_s, 50, 200)
            signal.pthread_kill(main, signal.SIGWINCH)
            time.sleep(0.2)
            os.write(user_m, b"go\r")
            seen["out"] += _read_until(user_m, b"now")
        except BaseException as e:  # reported by the main thread
            seen["error"] = e
            os.kill(pid, signal.SIGKILL)

    t = threading.Thread(target=user)
    t.start()
    try:
        tty.proxy(master, user_s, user_s, child_pid=pid)
    finally:
        t.join(10)
    assert "error" not in seen, seen.get("error")
    assert b"start 30x100" in seen["out"]
    assert b"now 50x200" in seen["out"]
    assert not seen["lflag"] & (termios.ICANON | termios.ECHO)  # raw while proxying
    assert termios.tcgetattr(user_s) == before  # restored afterwards
    assert signal.getsignal(signal.SIGWINCH) in (signal.SIG_DFL, None)
    _, status = os.waitpid(pid, 0)
    children.remove(pid)
    assert os.waitstatus_to_exitcode(status) == 0


def test_hot_path_imports_stay_lean():
    import subprocess
    import sys
    code = ("import sys; import berth.runtime.tty; "
            "bad = {'json', 're', 'socket', 'signal', 'subprocess', 'typing', 'termios', "
            "'select', 'struct'} & set(sys.modules); print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(
                             os.path.dirname(os.path.dirname(tty.__file__)))})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
