"""process.terminal on both runtimes: the pty master handed over a
--console-socket (create and exec -t), the window size from consoleSize,
the refusal without a socket, and the foreground `run` that proxies the
terminal itself."""
import array
import os
import pty
import select
import socket
import subprocess
import threading
import time

import pytest

SLEEP = ["sleep", "60"]
TTY_HI = ["sh", "-c", "busybox tty; echo hi"]


class ConsoleSocket:
    """The receiving end of --console-socket, as containerd or conmon hold
    it: accepts one connection and takes the fd sent over SCM_RIGHTS. It
    accepts in a thread so a runtime that sends before returning from
    create (both do) never waits on the test."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(20)
        self.got = None    # (name, [fds]) once received
        self.error = None
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(20)
                msg, anc, _flags, _ = conn.recvmsg(
                    4096, socket.CMSG_SPACE(4 * 4))
            fds = []
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(data[:len(data) - len(data) % a.itemsize])
                    fds += list(a)
            self.got = (msg.decode(errors="replace"), fds)
        except Exception as e:  # reported by receive()
            self.error = e

    def receive(self, timeout=20):
        """(name, master fd) of the one message; fails the test otherwise."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "nothing arrived on the console socket"
        assert self.error is None, f"console socket: {self.error!r}"
        name, fds = self.got
        assert len(fds) == 1, f"expected one fd, got {fds}"
        return name, fds[0]

    def close(self):
        self.sock.close()
        if self.got:
            for fd in self.got[1]:
                try:
                    os.close(fd)
                except OSError:
                    pass


@pytest.fixture
def console(tmp_path):
    made = []

    def make(name="console.sock"):
        c = ConsoleSocket(tmp_path / name)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def read_until_hangup(master, timeout=15):
    """Everything the container writes to its terminal, up to the moment
    the last slave fd closes (the master then reads EIO)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"terminal did not hang up; so far {buf!r}"
        r, _, _ = select.select([master], [], [], left)
        if not r:
            continue
        try:
            data = os.read(master, 4096)
        except OSError as e:
            if e.errno == 5:  # EIO: no slave left
                return buf
            raise
        if not data:
            return buf
        buf += data


def create_with_console(rt, bundle, sock, cid):
    return rt.run(["create", "--console-socket", sock.path, "--bundle", bundle, cid],
                  check=False)


# ---------------------------------------------------------------- create


def test_console_socket_gets_master(parity, busybox_bundle, console):
    def scenario(rt):
        sock = console(f"{rt.name}-create.sock")
        b = busybox_bundle(args=TTY_HI, changes={"process.terminal": True})
        cid = rt.new_id("tty")
        res = create_with_console(rt, b, sock, cid)
        assert res.returncode == 0, res
        name, master = sock.receive()
        assert os.isatty(master)
        rt.run(["start", cid])
        output = read_until_hangup(master)
        rt.wait_status(cid, "stopped")
        rt.run(["delete", cid])
        return name, output
    assert parity(scenario) == ("/dev/ptmx", b"/dev/pts/0\r\nhi\r\n")


def console_output(rt, sock, bundle, hint):
    """create with the console socket, start, and all the terminal shows."""
    cid = rt.new_id(hint)
    res = create_with_console(rt, bundle, sock, cid)
    assert res.returncode == 0, res
    _, master = sock.receive()
    rt.run(["start", cid])
    output = read_until_hangup(master)
    rt.wait_status(cid, "stopped")
    rt.run(["delete", cid])
    return output


def test_console_size(parity, busybox_bundle, console):
    def scenario(rt):
        b = busybox_bundle(args=["busybox", "stty", "size"],
                           changes={"process.terminal": True,
                                    "process.consoleSize": {"height": 33, "width": 101}})
        return console_output(rt, console(f"{rt.name}-size.sock"), b, "ttysize")
    assert parity(scenario) == b"33 101\r\n"


def test_the_process_user_owns_its_terminal(parity, busybox_bundle, console):
    def scenario(rt):
        b = busybox_bundle(args=["sh", "-c", "stat -c %u:%g $(busybox tty)"],
                           changes={"process.terminal": True, "process.user.uid": 1000,
                                    "process.user.gid": 100})
        return console_output(rt, console(f"{rt.name}-owner.sock"), b, "ttyowner")
    # the group is devpts's gid=5 of the spec's mount options
    assert parity(scenario) == b"1000:5\r\n"


def exec_tty(rt, cid, sock, extra=()):
    return rt.spawn(["exec", *extra, "-t", "--console-socket", sock.path, cid,
                     "sh", "-c", "busybox tty; echo hi; exit 4"])


def test_exec_tty_with_console_socket(parity, busybox_bundle, console):
    def scenario(rt):
        cid = rt.new_id("exectty")
        rt.run(["run", "-d", "--bundle", busybox_bundle(args=SLEEP), cid])
        sock = console(f"{rt.name}-exec.sock")
        # runc takes a console socket only from a detached exec
        fg = exec_tty(rt, cid, sock, extra=["-d"])
        name, master = sock.receive()
        output = read_until_hangup(master)
        rc = fg.wait().returncode
        rt.run(["delete", "-f", cid])
        return rc, name, output
    # the init has no terminal, so the exec'd process gets the first pty
    assert parity(scenario) == (0, "/dev/ptmx", b"/dev/pts/0\r\nhi\r\n")


def test_exec_tty_console_socket_in_foreground(runtime, busybox_bundle, console):
    cid = runtime.new_id("exectty")
    runtime.run(["run", "-d", "--bundle", busybox_bundle(args=SLEEP), cid])
    sock = console()
    fg = exec_tty(runtime, cid, sock)
    if runtime.name == "runc":
        # runc 1.1 refuses the socket unless exec detaches; berth allows it
        # and, staying in the foreground, reports the process's exit code
        res = fg.wait()
        assert res.returncode != 0
        assert "cannot use console socket" in res.stderr, res.stderr
        return
    name, master = sock.receive()
    assert (name, read_until_hangup(master)) == ("/dev/ptmx", b"/dev/pts/0\r\nhi\r\n")
    assert fg.wait().returncode == 4


def test_terminal_without_console_socket_fails_create(runtime, busybox_bundle, host):
    b = busybox_bundle(args=SLEEP, changes={"process.terminal": True})
    cid = runtime.new_id("nosock")
    res = runtime.run(["create", "--bundle", b, cid], check=False)
    assert res.returncode != 0
    assert runtime.run(["state", cid], check=False).returncode != 0
    assert host.cgroup_dirs(cid) == []
    if runtime.name == "berth":
        # runc says "cannot allocate tty if runc will detach without setting
        # console socket"; berth names the field in config.json that asks
        assert "process.terminal" in res.stderr, res.stderr
        assert "--console-socket" in res.stderr, res.stderr


# ---------------------------------------------------------------- run


def run_under_pty(rt, bundle, cid, timeout=20):
    """`run` in the foreground with its stdin, stdout and stderr on a pty,
    as from an interactive shell: (exit code, what the user's terminal
    showed)."""
    args = ["run", "--bundle", bundle, cid]
    rt._note(args)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(rt.argv(args), stdin=slave, stdout=slave,
                                stderr=slave, start_new_session=True)
        os.close(slave)
        slave = -1
        buf = b""
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                os.killpg(proc.pid, 9)
                proc.wait()
                raise AssertionError(f"run under a pty timed out; so far {buf!r}")
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    data = b""
                buf += data
                if data:
                    continue
            if proc.poll() is not None:
                # what is still buffered in the pty
                while select.select([master], [], [], 0.05)[0]:
                    try:
                        data = os.read(master, 4096)
                    except OSError:
                        break
                    if not data:
                        break
                    buf += data
                return proc.returncode, buf
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


def test_run_foreground_proxies_terminal(parity, busybox_bundle):
    def scenario(rt):
        b = busybox_bundle(args=["sh", "-c", "busybox tty; echo hi; exit 3"],
                           changes={"process.terminal": True})
        cid = rt.new_id("runtty")
        rc, shown = run_under_pty(rt, b, cid)
        return rc, shown
    assert parity(scenario) == (3, b"/dev/pts/0\r\nhi\r\n")
