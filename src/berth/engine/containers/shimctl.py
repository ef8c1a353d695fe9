"""berthd's side of the shim protocol (see berth/shim): launch, control
requests, and the exit record a shim leaves behind."""
import json
import os
import socket
import subprocess

from berth.errors import BerthError
from berth.sys.procfs import start_time


# the exit berthd records when a container's shim or monitor is gone without
# an exit record: the container may still run (nothing killed it), so its
# removal or next start deletes it in the runtime first
SHIM_LOST = "berth-shim died without an exit record"


class Zygote:
    """berthd's warm shim (berth/shim/zygote.py): forks each container's
    shim from an interpreter that has the shim loaded already. Started
    from berthd's main thread, it dies with berthd; launch() falls back to
    a fresh berth-shim whenever it is not there."""

    def __init__(self, shim, path):
        self.path = path
        self.proc = None
        try:
            self.proc = subprocess.Popen([shim, "--zygote", path], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            if self.proc.stdout.readline() != b"ready\n":
                self.close()
        except OSError:
            self.proc = None

    def _connect(self, timeout):
        """A connection to the zygote, or None if it is not there."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.settimeout(timeout)
        try:
            s.connect(self.path)
        except OSError:
            s.close()
            return None
        return s

    def launch(self, argv):
        """The ready report line, or None if the zygote could not be used
        (also when it died without a word: the shim is then exec'd)."""
        s = self._connect(120)
        if s is None:
            return None
        try:
            s.sendall((json.dumps({"argv": argv}) + "\n").encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return None
        finally:
            s.close()
        if not data.strip() and self.proc.poll() is not None:
            return None
        return data.decode(errors="replace").strip().splitlines()[-1:] or [""]

    def run_runtime(self, argv, stdin, stdout, stderr):
        """berth-runtime ARGV (no binary) in a fork of the zygote with the
        given fds as its stdio: a RuntimeProc, or None where the zygote
        cannot take it (the caller then runs the binary)."""
        s = self._connect(30)
        if s is None:
            return None
        try:
            socket.send_fds(s, [(json.dumps({"runtime": argv}) + "\n").encode()],
                            [stdin, stdout, stderr])
            pid = int(json.loads(_line(s) or b"{}")["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            s.close()
            return None
        return RuntimeProc(s, pid)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class RuntimeProc:
    """The part of subprocess.Popen that execs.py uses (pid, wait, kill,
    returncode; stdin/stdout/stderr as the caller sets them), for a verb
    running in a fork of the zygote: its exit status comes on the socket."""
    stdin = stdout = stderr = None

    def __init__(self, sock, pid):
        self.pid = pid
        self.returncode = None
        self._sock = sock

    def wait(self, timeout=None):
        if self.returncode is None:
            self._sock.settimeout(timeout)
            try:
                line = _line(self._sock)
            except socket.timeout:
                raise subprocess.TimeoutExpired("berth-runtime", timeout) from None
            except OSError:
                line = b""
            try:
                self.returncode = int(json.loads(line)["exit"])
            except (ValueError, KeyError, TypeError):
                self.returncode = 255   # the fork died without a word
            self._sock.close()
        return self.returncode

    def kill(self):
        if self.returncode is None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass


def _line(sock, limit=4096):
    """One short line, read a byte at a time: nothing after it is taken
    from the socket, so select() still sees what comes next."""
    out = b""
    while not out.endswith(b"\n") and len(out) < limit:
        b = sock.recv(1)
        if not b:
            break
        out += b
    return out


def probe_monitor(path):
    """path if it is a berth-monitor this daemon can run, else None: chosen
    once at berthd's start (docker info says which), so a container never
    finds out at its start that the monitor is missing."""
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return os.path.abspath(path) if out.startswith("berth-monitor ") else None


def launch(cfg, runtime, runtime_root, cid, bundle, shim_dir, log_path, tty, open_stdin,
           stdin_once, log_max_size=0, log_max_files=1, zygote=None):
    os.makedirs(shim_dir, mode=0o700, exist_ok=True)
    argv = [cfg.shim, "--id", cid, "--bundle", bundle, "--runtime", runtime,
            "--runtime-root", runtime_root, "--state-dir", shim_dir, "--log-path", log_path,
            "--no-start"]
    if log_max_size:
        argv += ["--log-max-size", str(log_max_size), "--log-max-files", str(log_max_files)]
    if tty:
        argv.append("--tty")
    if open_stdin:
        argv.append("--open-stdin")
    if stdin_once:
        argv.append("--stdin-once")
    if runtime == getattr(cfg, "builtin_runtime", None):
        argv.append("--runtime-in-process")
    if getattr(cfg, "monitor", None):
        argv += ["--monitor", cfg.monitor]
    lines = zygote.launch(argv[1:]) if zygote is not None else None
    if lines is not None:
        try:
            ready = json.loads(lines[0])
        except ValueError:
            ready = {"error": lines[0] or "berth-shim: exited before reporting ready"}
        if "error" in ready:
            raise BerthError(ready["error"])
        return ready
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    line = (p.stdout.strip().splitlines() or [""])[-1]
    try:
        ready = json.loads(line)
    except ValueError:
        ready = {"error": (p.stderr.strip() or line or f"berth-shim exited {p.returncode}")}
    if p.returncode != 0 or "error" in ready:
        raise BerthError(ready.get("error") or p.stderr.strip() or "berth-shim failed")
    return ready


def connect(shim_dir, name="control.sock", timeout=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        s.connect(os.path.join(shim_dir, name))
    except OSError:
        s.close()
        raise
    return s


def request(shim_dir, req, timeout=30):
    """One JSON line out, one back. timeout=None blocks (wait)."""
    return reply(send(shim_dir, req, timeout))


def send(shim_dir, req, timeout=30):
    """The request sent; reply(socket) reads the answer (later, elsewhere)."""
    s = connect(shim_dir, timeout=timeout)
    try:
        s.sendall(json.dumps(req).encode() + b"\n")
    except OSError:
        s.close()
        raise
    return s


def reply(s):
    """The answer to send()'s request; closes the connection."""
    try:
        f = s.makefile("rb")
        line = f.readline()
        if not line:
            raise ConnectionError("shim closed the control connection")
        return json.loads(line)
    finally:
        s.close()


def exit_record(shim_dir):
    try:
        with open(os.path.join(shim_dir, "exit.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def shim_alive(shim_dir):
    """The shim's pid while it runs, else 0. An exited shim the zygote has
    not reaped yet (its parent, while berthd runs) counts as gone."""
    try:
        with open(os.path.join(shim_dir, "shim.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return 0
    return pid if start_time(pid) is not None else 0


def wait_gone(pid, timeout=10):
    """Until process pid has ended (a pidfd wakes us at once)."""
    if not pid:
        return True
    import select
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return True   # already gone
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)
