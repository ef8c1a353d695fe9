"""Rootless mode: berthd started by an ordinary user re-executes itself as
root of a user namespace of its own (mount namespace too), mapped through
Debian's setuid newuidmap/newgidmap from the user's /etc/subuid and
/etc/subgid ranges:

    inside 0        -> the user's own uid
    inside 1..N     -> the first N subordinate ids

The host's network namespace is kept (containers reach it through
slirp4netns, see berth.engine.network.slirp); cgroups are not written
(nothing is delegated to the user on this host's hybrid layout), so
resource limits are refused with a clear error instead of being ignored.

The outer process stays as the user's handle on the daemon: it forwards
SIGTERM/SIGINT/SIGHUP and exits with the daemon's status."""
import os
import sys

from berth.errors import ConfigError
from berth.sys import procfs

# signal (and the enum module it pulls in, ~4 ms) is imported where it is
# used: the runtime imports this module on its hot path

ENV = "BERTH_ROOTLESS"        # "uid:gid" of the user, set for the inner daemon
FULL_MAP = "0 0 4294967295"


def in_user_namespace():
    """True when this process's user namespace is not the host's (the
    runtime under a rootless berthd, or a container)."""
    try:
        with open("/proc/self/uid_map") as f:
            return " ".join(f.read().split()) != FULL_MAP
    except OSError:
        return False


def active():
    """berthd (or anything it started) runs in rootless mode."""
    return bool(os.environ.get(ENV)) or in_user_namespace()


def opaque_xattr():
    """overlayfs's opaque-dir xattr: trusted.* needs the host's root; a
    user namespace mounts with userxattr and uses user.*"""
    return "user.overlay.opaque" if in_user_namespace() else "trusted.overlay.opaque"


def outer_ids():
    """The user's own (uid, gid) as the host sees them."""
    text = os.environ.get(ENV, "")
    uid, _, gid = text.partition(":")
    if uid.isdigit() and gid.isdigit():
        return int(uid), int(gid)
    return os.getuid(), os.getgid()


def subordinate(path, name, uid):
    """-> (start, count) of the first range for name or uid in path."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (name, str(uid)):
            continue
        if parts[1].isdigit() and parts[2].isdigit() and int(parts[2]) > 0:
            return int(parts[1]), int(parts[2])
    return None


def default_dirs(uid, home):
    """Data, exec and config roots of a rootless daemon (XDG, like Docker's
    rootless mode and Podman)."""
    xdg_data = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    xdg_conf = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    run = os.environ.get("XDG_RUNTIME_DIR")
    if not run or not os.access(run, os.W_OK):
        run = f"/tmp/berth-run-{uid}"
    return (os.path.join(xdg_data, "berth"), os.path.join(run, "berth"),
            os.path.join(xdg_conf, "berth"))


def _tool(name):
    import shutil
    path = shutil.which(name) or os.path.join("/usr/bin", name)
    if not os.access(path, os.X_OK):
        raise ConfigError(f"rootless mode needs {name} (Debian package uidmap)")
    return path


def _plan():
    import pwd
    uid, gid = os.getuid(), os.getgid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        raise ConfigError(f"rootless mode: uid {uid} has no entry in /etc/passwd") from None
    sub_u = subordinate("/etc/subuid", name, uid)
    sub_g = subordinate("/etc/subgid", name, uid)
    for what, rng in (("/etc/subuid", sub_u), ("/etc/subgid", sub_g)):
        if not rng:
            raise ConfigError(f"rootless mode: {what} has no range for {name}",
                              hint=f"usermod --add-subuids 100000-165535 --add-subgids "
                                   f"100000-165535 {name}")
    return uid, gid, sub_u, sub_g


KEEPER = "rootless-ns.pid"


def live_keeper(run_dir):
    """The pid of the process holding a previous daemon's namespaces, if it
    still runs (same start time, same owner), else None."""
    try:
        with open(os.path.join(run_dir, KEEPER)) as f:
            pid_text, start = f.read().split()
        pid = int(pid_text)
        # owner as this process sees it: the user outside, 0 inside
        if str(procfs.start_time(pid)) == start and os.stat(f"/proc/{pid}").st_uid == os.getuid():
            return pid
    except (OSError, ValueError):
        pass
    return None


def release_keeper(run_dir):
    """Daemon stop with no container left: nothing needs the namespaces."""
    pid = live_keeper(run_dir)
    if pid:
        os.kill(pid, 9)
    try:
        os.unlink(os.path.join(run_dir, KEEPER))
    except FileNotFoundError:
        pass


def _write_keeper(run_dir):
    """Start a `sleep infinity` (double-forked, a session of its own) that
    holds the user and mount namespaces, so containers and their mounts
    outlive this daemon and the next one joins them instead of making new
    ones; its pid and start time go to run_dir/rootless-ns.pid."""
    r, w = os.pipe()
    k1 = os.fork()
    if k1 == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                os.write(w, str(os.getpid()).encode())
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.closerange(3, 65536)
                os.execv("/bin/sleep", ["sleep", "infinity"])
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(k1, 0)
    with os.fdopen(r) as f:
        pid = int(f.read())
    path = os.path.join(run_dir, KEEPER)
    with open(path + ".tmp", "w") as f:
        f.write(f"{pid} {procfs.start_time(pid)}\n")
    os.rename(path + ".tmp", path)


def _enter(keeper):
    from berth.sys import libc
    fds = [os.open(f"/proc/{keeper}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in ("user", "mnt")]
    libc.setns(fds[0], libc.CLONE_NEWUSER, "the rootless user namespace")
    libc.setns(fds[1], libc.CLONE_NEWNS, "the rootless mount namespace")
    for fd in fds:
        os.close(fd)


def reexec(run_dir):
    """Run this berthd again as root of its user namespace: the one a
    previous daemon left (containers still running in it), else a new one.
    Returns the exit status to leave with (this process is the outer
    handle)."""
    import signal
    import subprocess
    from berth.sys import libc
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    keeper = live_keeper(run_dir)
    uid, gid = os.getuid(), os.getgid()
    if keeper is None:
        uid, gid, (su, nu), (sg, ng) = _plan()
        newuidmap, newgidmap = _tool("newuidmap"), _tool("newgidmap")
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(go_w)
            os.close(ready_r)
            if keeper is None:
                libc.unshare(libc.CLONE_NEWUSER | libc.CLONE_NEWNS)
            else:
                _enter(keeper)
            os.write(ready_w, b"u")
            if os.read(go_r, 1) != b"g":
                os._exit(1)
            os.setresgid(0, 0, 0)
            os.setgroups([])
            os.setresuid(0, 0, 0)
            if keeper is None:
                # mounts made here (overlays) must not travel back to the host's
                libc.mount("none", "/", None, libc.MS_REC | libc.MS_SLAVE)
                _write_keeper(run_dir)
            env = dict(os.environ, **{ENV: f"{uid}:{gid}"})
            # the same interpreter, flags and script: sys.orig_argv
            os.execve(sys.executable, list(sys.orig_argv), env)
        except BaseException as e:  # noqa: BLE001 - the child must never return
            print(f"berthd: rootless: {e}", file=sys.stderr, flush=True)
        os._exit(code)
    os.close(go_r)
    os.close(ready_w)
    try:
        if os.read(ready_r, 1) != b"u":
            raise ConfigError("rootless mode: could not create or join the user namespace "
                              "(is kernel.unprivileged_userns_clone 0?)")
        for tool, own, start, count in (() if keeper else
                                        ((newuidmap, uid, su, nu), (newgidmap, gid, sg, ng))):
            p = subprocess.run([tool, str(pid), "0", str(own), "1", "1", str(start), str(count)],
                               capture_output=True, text=True)
            if p.returncode:
                raise ConfigError(f"rootless mode: {os.path.basename(tool)} failed: "
                                  f"{p.stderr.strip() or p.returncode}")
        os.write(go_w, b"g")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(go_w)
        os.close(ready_r)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(s, lambda signum, frame: os.kill(pid, signum))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
