"""Pseudo-terminals for containers with process.terminal, and passing the
master end to whoever holds the user's side.

The container's init opens the pty itself, from the ptmx of its own devpts
instance (mounted with newinstance), so the slave's /dev/pts/N exists inside
the container. The master then leaves the container by SCM_RIGHTS:

    --console-socket PATH given (containerd, podman/conmon, berth-shim):
        init connects to PATH (AF_UNIX, SOCK_STREAM) and sends one message
        whose bytes are the master's name, "/dev/ptmx", with the master fd as
        its only SCM_RIGHTS control message. That is what runc sends; the
        receivers read up to 4096 bytes of name and one fd.
    `run` in the foreground without a console socket:
        the same message over a socketpair() to the parent, which proxy()s
        between its own stdio and the master.

Only os and fcntl are imported at module level: _socket, termios, select and
_signal are needed on rarer paths and are imported where used."""
import fcntl
import os
import sys

from berth.errors import SysError

# ioctl numbers from <asm-generic/ioctls.h> (x86_64)
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414
TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441

# what runc (and the receivers of --console-socket) allow for the name
MAX_NAME_LEN = 4096


def open_pty(ptmx="/dev/ptmx"):
    """Returns (master_fd, slave_fd), both close-on-exec; the slave does not
    become the controlling terminal (make_controlling() does that)."""
    try:
        master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise SysError(f"open {ptmx}", errno=e.errno,
                       hint="is devpts mounted with ptmxmode=0666?") from None
    try:
        _ioctl_buf(master, TIOCSPTLCK, 4, f"unlockpt {ptmx}")  # takes an int *
        slave = _open_peer(master, ptmx)
    except BaseException:
        os.close(master)
        raise
    return master, slave


def _open_peer(master, ptmx):
    # TIOCGPTPEER opens the slave of this very master, so nothing planted at
    # /dev/pts/N inside the container can stand in for it.
    flags = os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC
    try:
        return fcntl.ioctl(master, TIOCGPTPEER, flags)
    except OSError as e:
        if e.errno not in (22, 25):  # EINVAL/ENOTTY: kernel older than 4.13
            raise SysError(f"open pty slave of {ptmx}", errno=e.errno) from None
    path = ptsname(master, ptmx)
    try:
        return os.open(path, flags)
    except OSError as e:
        raise SysError(f"open {path}", errno=e.errno) from None


def pty_number(master_fd):
    buf = _ioctl_buf(master_fd, TIOCGPTN, 4, "ptsname")
    return int.from_bytes(buf, sys.byteorder)


def ptsname(master_fd, ptmx="/dev/ptmx"):
    """The slave's path in the devpts instance that holds `ptmx`."""
    d = os.path.dirname(ptmx)
    if os.path.basename(d) != "pts":
        d = os.path.join(d, "pts")
    return os.path.join(d, str(pty_number(master_fd)))


def make_controlling(slave_fd):
    """In a new session (the caller did setsid): the slave becomes the
    controlling terminal and stdin, stdout and stderr. slave_fd itself stays
    open (it is close-on-exec); closing it is the caller's business."""
    _ioctl_int(slave_fd, TIOCSCTTY, 0, "set controlling terminal",
               hint="the process must lead a new session (setsid) first")
    for target in (0, 1, 2):
        if slave_fd != target:
            try:
                os.dup2(slave_fd, target)
            except OSError as e:
                raise SysError(f"dup2 pty slave onto fd {target}", errno=e.errno) from None


def get_winsize(fd):
    """(rows, cols) of the terminal on fd."""
    buf = _ioctl_buf(fd, TIOCGWINSZ, 8, "get window size")
    return int.from_bytes(buf[0:2], sys.byteorder), int.from_bytes(buf[2:4], sys.byteorder)


def set_winsize(fd, rows, cols):
    if not (0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
        raise SysError(f"window size {rows}x{cols}: rows and cols must be 0..65535")
    buf = rows.to_bytes(2, sys.byteorder) + cols.to_bytes(2, sys.byteorder) + bytes(4)
    try:
        fcntl.ioctl(fd, TIOCSWINSZ, buf)
    except OSError as e:
        raise SysError("set window size", errno=e.errno) from None


def copy_winsize(from_fd, to_fd):
    """Copies the window size when from_fd is a terminal; else nothing."""
    if os.isatty(from_fd):
        set_winsize(to_fd, *get_winsize(from_fd))


def socketpair():
    """(fd, fd): a connected AF_UNIX stream pair, close-on-exec."""
    import _socket
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    return a.detach(), b.detach()


def connect(sock_path):
    """A connected fd to the console socket. The runtime connects before
    the container's init pivots away from the host's paths."""
    import _socket
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        s.connect(sock_path)
    except OSError as e:
        s.close()
        raise SysError(f"console socket {sock_path}: cannot connect", errno=e.errno,
                       hint="--console-socket must name a listening unix socket") from None
    return s.detach()


def send_fd(sock_path, fd, name="/dev/ptmx"):
    """Hands fd to the process listening on the console socket sock_path."""
    conn = connect(sock_path)
    try:
        send_fd_to(conn, fd, name)
    finally:
        os.close(conn)


def send_fd_to(conn_fd, fd, name="/dev/ptmx"):
    """send_fd over an already connected socket (one end of socketpair())."""
    import _socket
    try:
        s = _socket.socket(fileno=conn_fd)
    except OSError as e:
        raise SysError(f"fd {conn_fd}: not a socket to send an fd over", errno=e.errno) from None
    try:
        _send(s, fd, name, f"socket fd {conn_fd}")
    finally:
        s.detach()


def _send(s, fd, name, what):
    import _socket
    data = name.encode()
    if not data or len(data) > MAX_NAME_LEN:
        raise SysError(f"{what}: fd name must be 1..{MAX_NAME_LEN} bytes")
    rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder, signed=True))]
    try:
        sent = s.sendmsg([data], rights)
    except OSError as e:
        raise SysError(f"{what}: send fd", errno=e.errno) from None
    if sent != len(data):
        raise SysError(f"{what}: short write sending fd ({sent} of {len(data)} bytes)")


def recv_fd(conn_fd):
    """Receives one fd sent by send_fd/send_fd_to; it is close-on-exec."""
    return recv_fd_named(conn_fd)[0]


def recv_fd_named(conn_fd):
    """(fd, name) from one send_fd message. conn_fd: a raw fd or an object
    with fileno() (a socket.socket); it is neither closed nor taken over."""
    import _socket
    raw = conn_fd if isinstance(conn_fd, int) else conn_fd.fileno()
    try:
        s = _socket.socket(fileno=raw)
    except OSError as e:
        raise SysError(f"fd {raw}: not a socket to receive an fd from", errno=e.errno) from None
    try:
        try:
            data, anc, flags, _ = s.recvmsg(MAX_NAME_LEN, _socket.CMSG_SPACE(4),
                                            _socket.MSG_CMSG_CLOEXEC)
        except OSError as e:
            raise SysError(f"socket fd {raw}: receive fd", errno=e.errno) from None
    finally:
        s.detach()
    fds = []
    for level, kind, payload in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True)
                    for i in range(0, usable, 4)]
    if len(fds) != 1:
        for extra in fds:
            os.close(extra)
        if not data and not anc:
            raise SysError(f"socket fd {raw}: peer closed before sending the fd")
        raise SysError(f"socket fd {raw}: expected one fd, got {len(fds)}")
    if flags & _socket.MSG_CTRUNC:
        os.close(fds[0])
        raise SysError(f"socket fd {raw}: control message truncated")
    return fds[0], data.decode(errors="replace")


def proxy(master_fd, stdin_fd=0, stdout_fd=1, child_pid=None):
    """Copies stdin -> master and master -> stdout until the master hangs up
    (every slave fd is closed: read gives EIO) or, with child_pid, until that
    process has exited and the output it left is drained. A tty on stdin is
    put in raw mode (the container's terminal does the line editing) and
    restored on return; its window size follows SIGWINCH onto the master.
    The caller must have closed its own copies of the slave, or the master
    never hangs up."""
    import select
    import termios
    import _signal

    saved = None
    if os.isatty(stdin_fd):
        saved = _make_raw(termios, stdin_fd)
        try:
            set_winsize(master_fd, *get_winsize(stdin_fd))
        except SysError:
            pass
    old_handler = installed = None
    try:
        if saved is not None:
            def on_winch(signum, frame):
                try:
                    set_winsize(master_fd, *get_winsize(stdin_fd))
                except SysError:
                    pass  # a resize lost is no reason to stop the session
            try:
                old_handler = _signal.signal(_signal.SIGWINCH, on_winch)
                installed = True
            except ValueError:
                pass  # not the main thread: sizes stay as they were at start
        _copy_loop(select, termios, master_fd, stdin_fd, stdout_fd, child_pid)
    finally:
        if installed:
            # None: the old handler was set from C; default is the best guess
            _signal.signal(_signal.SIGWINCH,
                           _signal.SIG_DFL if old_handler is None else old_handler)
        if saved is not None:
            try:
                termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
            except termios.error:
                pass


def _make_raw(termios, fd):
    # what cfmakeraw(3) does; output processing stays on the container's side
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        return None
    mode = list(saved)
    mode[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                 | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
    mode[1] &= ~termios.OPOST
    mode[2] &= ~(termios.CSIZE | termios.PARENB)
    mode[2] |= termios.CS8
    mode[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG
                 | termios.IEXTEN)
    mode[6] = list(mode[6])
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    # TCSANOW, not TCSAFLUSH: what the user typed ahead reaches the container
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    return saved


def _copy_loop(select, termios, master_fd, stdin_fd, stdout_fd, child_pid):
    IN, OUT = select.POLLIN, select.POLLOUT
    DONE = select.POLLHUP | select.POLLERR | select.POLLNVAL
    pidfd = -1
    if child_pid is not None:
        try:
            pidfd = os.pidfd_open(child_pid)
        except OSError:
            pidfd = -1  # already gone or reaped: rely on the master's hangup
    # non-blocking master: a child that stops reading its input must not
    # stop us from copying its output
    was_blocking = os.get_blocking(master_fd)
    os.set_blocking(master_fd, False)
    pending = b""
    stdin_open = True
    poller = select.poll()
    try:
        if pidfd >= 0:
            poller.register(pidfd, IN)
        while True:
            poller.register(master_fd, IN | (OUT if pending else 0))
            if stdin_open and not pending:
                poller.register(stdin_fd, IN)
            else:
                _unregister(poller, stdin_fd)
            for fd, ev in poller.poll():
                if fd == master_fd:
                    if ev & (IN | DONE):
                        if not _drain(master_fd, stdout_fd):
                            return
                    if ev & OUT and pending:
                        pending = pending[_write_some(master_fd, pending):]
                elif fd == stdin_fd:
                    data = _read(stdin_fd)
                    if data:
                        pending += data
                    elif data is not None:  # None: a non-blocking stdin was empty
                        stdin_open = False
                        # a pipe on stdin ran dry: tell the program as a
                        # terminal would, with the EOF character
                        if not os.isatty(stdin_fd):
                            pending += _eof_char(termios, master_fd)
                elif fd == pidfd:
                    _drain_after_exit(select, master_fd, stdout_fd)
                    return
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        try:
            os.set_blocking(master_fd, was_blocking)
        except OSError:
            pass


def _unregister(poller, fd):
    try:
        poller.unregister(fd)
    except KeyError:
        pass


def _read(fd):
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None
    except OSError as e:
        if e.errno == 5:  # EIO
            return b""
        raise SysError(f"read fd {fd}", errno=e.errno) from None


def _drain(master_fd, stdout_fd):
    """Copies what the master has; False once it has hung up."""
    while True:
        data = _read(master_fd)
        if data is None:
            return True
        if not data:
            return False
        _write_all(stdout_fd, data)


def _drain_after_exit(select, master_fd, stdout_fd):
    # the kernel moves slave output to the master side from a workqueue, so
    # the last lines can arrive just after the writer died: wait until the
    # master stays quiet a moment; a bound stops a chatty survivor keeping us
    import time
    deadline = time.monotonic() + 1.0
    p = select.poll()
    p.register(master_fd, select.POLLIN)
    while p.poll(50) and time.monotonic() < deadline:
        if not _drain(master_fd, stdout_fd):
            return


def _write_some(fd, data):
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError as e:
        if e.errno == 5:
            return len(data)  # the terminal is gone; the read side ends the loop
        raise SysError(f"write to pty master fd {fd}", errno=e.errno) from None


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            import select
            select.select([], [fd], [])
            continue
        except OSError as e:
            raise SysError(f"write to fd {fd}", errno=e.errno) from None
        view = view[n:]


def _eof_char(termios, master_fd):
    try:
        c = termios.tcgetattr(master_fd)[6][termios.VEOF]
    except termios.error:
        c = b"\x04"
    return c if isinstance(c, bytes) else bytes([c])


def _ioctl_int(fd, req, arg, what, hint=None):
    try:
        return fcntl.ioctl(fd, req, arg)
    except OSError as e:
        raise SysError(what, errno=e.errno, hint=hint) from None


def _ioctl_buf(fd, req, size, what):
    try:
        return fcntl.ioctl(fd, req, bytes(size))
    except OSError as e:
        raise SysError(what, errno=e.errno) from None
