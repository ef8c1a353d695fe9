"""OCI hooks: each gets the container's state JSON on stdin, runs with
exactly the env the spec gives, and is killed when its timeout passes.
A failing hook fails the step that ran it (poststop only warns).

The hook's stdin, stdout and stderr are memfds, not pipes: a hook that
leaves a daemon behind holding its stdout (network hooks do) would
otherwise keep the runtime waiting for an EOF that never comes. Each hook
runs in a session of its own so a timeout kills the hook's children too,
not only the shell that started them."""
import os

from berth.errors import BerthError, ConfigError
from berth.oci import jsonio
from berth.oci.fields import objects

PHASES = ("prestart", "createRuntime", "createContainer", "startContainer",
          "poststart", "poststop")


def validate(hooks):
    if hooks is None:
        return
    if not isinstance(hooks, dict):
        raise ConfigError("hooks: must be an object")
    for phase, entries in hooks.items():
        if phase not in PHASES:
            raise ConfigError(f'hooks.{phase}: unknown hook phase "{phase}"',
                              hint="one of " + ", ".join(PHASES))
        for field, h in objects(entries, f"hooks.{phase}"):
            path = h.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(f"{field}.path: {path!r} is not an absolute path")
            t = h.get("timeout")
            if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t <= 0):
                raise ConfigError(f"{field}.timeout: {t!r} must be a positive number of seconds")
            for key in ("args", "env"):
                v = h.get(key)
                if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
                    raise ConfigError(f"{field}.{key}: must be a list of strings")
            for j, e in enumerate(h.get("env") or ()):
                if "=" not in e:
                    raise ConfigError(f'{field}.env[{j}]: "{e}" is not KEY=value')


def run(hooks, state, phase, field_prefix="hooks"):
    """Runs the hooks of one phase in order; the first failure raises
    BerthError "<prefix>.<phase>[i] <path>: <what happened>"."""
    if not hooks:
        return
    # only here: subprocess costs milliseconds, and most containers have no hooks
    import subprocess
    data = jsonio.dumps(state).encode()
    for i, h in enumerate(hooks):
        _run_one(subprocess, h, data, f"{field_prefix}.{phase}[{i}]")


def _memfd(name, data=b""):
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    if data:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_all(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def _run_one(subprocess, h, data, field):
    path = h["path"]
    # args[0] is argv[0] (busybox picks its applet by it); no args: the path
    args = h.get("args") or [path]
    env = {}
    for e in h.get("env") or ():
        k, _, v = e.partition("=")
        env[k] = v
    timeout = h.get("timeout")
    fds = [_memfd("hook-stdin", data), _memfd("hook-stdout"), _memfd("hook-stderr")]
    try:
        try:
            p = subprocess.Popen(args, executable=path, stdin=fds[0], stdout=fds[1],
                                 stderr=fds[2], env=env, close_fds=True,
                                 start_new_session=True)
        except OSError as e:
            raise BerthError(f"{field} {path}: cannot run", errno=e.errno) from None
        try:
            rc = p.wait(timeout)
        except BaseException as e:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait()
            if isinstance(e, subprocess.TimeoutExpired):
                raise BerthError(f"{field} {path}: timed out after {timeout}s and was killed") from None
            raise
        out = _read_all(fds[1])
        err = _read_all(fds[2])
    finally:
        for fd in fds:
            os.close(fd)
    if rc != 0:
        # "error running hook" and Go's "signal: <name>": runc's words, which
        # its users' tools and tests look for
        how = f"exit status {rc}" if rc > 0 else f"killed by signal {-rc} ({_signame(-rc)})"
        lines = err.decode(errors="replace").strip().splitlines()
        raise BerthError(f"{field} {path}: error running hook: {how}" +
                         (f": {lines[0]}" if lines else ""))
    if out:
        # runc discards it; passing it on to the runtime's log helps debugging
        os.write(2, out)


def _signame(n):
    import signal
    try:
        return "signal: " + (signal.strsignal(n) or str(n)).lower()
    except ValueError:
        return f"signal: {n}"
