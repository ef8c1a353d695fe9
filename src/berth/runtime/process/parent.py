"""The runtime side of process creation (see sync.py for the protocol):
forks stage 1, answers its requests and returns the pid of the container's
process. On any failure it kills what it started before raising."""
import os

from berth.errors import BerthError
from berth.runtime.process import init
from berth.runtime.process.sync import Channel
from berth.sys import libc as L


def preload(process, cfg, container):
    """Imports everything the child may need. After pivot_root or
    setns(mount) the host's Python library is out of reach, so an import
    there would fail."""
    import fcntl  # noqa: F401  trampoline sealing
    import resource  # noqa: F401  rlimits
    from berth.runtime.security import caps  # noqa: F401
    if process.get("terminal"):
        import _socket  # noqa: F401
        import termios  # noqa: F401
        from berth.runtime import tty  # noqa: F401
    hooks = (cfg.get("hooks") or {}) if container else {}
    if hooks.get("createContainer") or hooks.get("startContainer"):
        import subprocess  # noqa: F401
        from berth.runtime import hooks as _h  # noqa: F401


def spawn(plan, on_hooks=None, on_pid=None, on_cgroup=None, on_log=None, on_listener=None):
    """Returns (init pid, channel). The channel stays open so that `run`
    can send "start"; the caller closes it. With plan.cgroup set,
    on_cgroup(pid) must put the process into it. on_log(text) gets the
    children's debug lines (plan.debug); on_listener(fd, pid) the seccomp
    listener of a notify filter (and closes it)."""
    preload(plan.process, plan.cfg, plan.container)
    # read before any namespace is joined: a rootless runtime's own view
    from berth.sys.rootless import in_user_namespace
    plan.in_userns = in_user_namespace()
    parent, child = Channel.pair()
    pid1 = os.fork()
    if pid1 == 0:
        parent.close()
        init.stage1(plan, child)
    child.close()
    init_pid = 0
    try:
        while True:
            kind, payload = parent.recv()
            if kind == "log":
                if on_log:
                    on_log(payload)
            elif kind == "userns":
                write_id_maps(pid1, plan.cfg)
                _send(parent, "ok")
            elif kind == "pid":
                init_pid = int(payload)
                os.waitpid(pid1, 0)
                pid1 = 0
                if on_pid:
                    on_pid(init_pid)
                if plan.cgroup is not None:
                    on_cgroup(init_pid)
                    _send(parent, "cgroup")
            elif kind == "hooks":
                if on_hooks:
                    on_hooks(init_pid)
                _send(parent, "ok")
            elif kind == "seccomp":
                fd = L.fd_of_process(init_pid, int(payload))
                on_listener(fd, init_pid)
                _send(parent, "ok")
            elif kind == "ready":
                return init_pid, parent
            elif kind == "error":
                raise BerthError(payload)
            else:
                raise BerthError("container init exited before it was ready")
    except BaseException:
        for pid in (pid1, init_pid):
            if pid:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        if pid1:
            os.waitpid(pid1, 0)
        parent.close()
        raise


def _send(chan, kind):
    """A child that failed has sent its error and exited: report that
    error, not the broken pipe our answer ran into."""
    try:
        chan.send(kind)
    except BrokenPipeError:
        got, payload = chan.recv()
        while got == "log":
            got, payload = chan.recv()
        if got == "error":
            raise BerthError(payload) from None
        raise BerthError("container init exited before it was ready") from None


def write_id_maps(pid, cfg):
    linux = cfg.get("linux") or {}
    for key, fname in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                       for m in linux.get(key) or ())
        try:
            with open(f"/proc/{pid}/{fname}", "w") as f:
                f.write(text)
        except OSError as e:
            raise BerthError(f"linux.{key}: kernel refused the mapping {text.strip()!r}",
                             errno=e.errno, hint="ranges must not overlap and host ids must exist") from None
