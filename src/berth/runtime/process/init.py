"""The container side of process creation: stage 1 enters the cgroup and the
namespaces, stage 2 (the container's pid 1, or the exec'd process) builds the
container and execs. The message protocol is in sync.py.

Both stages run in forked children of the runtime and never return: they
exec or _exit. Errors go to the parent as an "error" message."""
import os

from berth.errors import BerthError, SysError
from berth.runtime import rootfs as R
from berth.runtime import trampoline
from berth.runtime.process import setup
from berth.sys import libc as L

NS_FLAGS = {
    "user": L.CLONE_NEWUSER, "mount": L.CLONE_NEWNS, "uts": L.CLONE_NEWUTS,
    "ipc": L.CLONE_NEWIPC, "network": L.CLONE_NEWNET, "cgroup": L.CLONE_NEWCGROUP,
    "pid": L.CLONE_NEWPID, "time": L.CLONE_NEWTIME,
}


class Plan:
    """What the parent decided, inherited by fork. `join` maps namespace
    type to a path to setns into; `new` lists types to unshare."""

    def __init__(self, **kw):
        self.cfg = None
        self.process = None
        self.rootfs = None
        self.join = {}
        self.new = []
        self.cgroup = None         # the runtime moves the process in after stage 1 forks it
        self.in_userns = False      # the runtime itself runs in a user namespace (rootless)
        self.container = True      # False for exec: no rootfs work
        self.no_pivot = False
        self.state_dirfd = None    # create: where exec.fifo is
        self.wait_fifo = True      # run waits on the channel instead
        self.console_fd = None     # connected console socket
        self.preserve_fds = 0
        self.caps = None
        self.seccomp = None
        self.hook_state = None
        self.keyring = None        # name of a new session keyring, if any
        self.debug = False         # send "log" lines (runc's --debug steps)
        self.bind_sources = None   # mounts.bind_sources(): {index: path or tree fd}
        self.__dict__.update(kw)


def stage1(plan, chan):
    try:
        _enter(plan, chan)
        pid = os.fork()
        if pid == 0:
            stage2(plan, chan)
        chan.send("pid", str(pid))
        os._exit(0)
    except BaseException as e:  # noqa: B902 -- a forked child must never return
        _fail(chan, e)


def _debug(plan, chan, text):
    # runc's words for the same steps, which users grep --debug output for
    if plan.debug:
        chan.send("log", text)


def _enter(plan, chan):
    _debug(plan, chan, "nsexec container setup: stage 1 enters the namespaces")
    # open every path first: joining the mount namespace hides host paths
    fds = {t: os.open(p, os.O_RDONLY | os.O_CLOEXEC) for t, p in plan.join.items()}
    if "user" in fds:
        L.setns(fds.pop("user"), L.CLONE_NEWUSER, "user namespace")
    elif "user" in plan.new:
        L.unshare(L.CLONE_NEWUSER)
        chan.send("userns")
        chan.expect("ok")
    if "user" in plan.join or "user" in plan.new:
        try:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        except OSError as e:
            raise BerthError("user namespace: cannot become its root (is container id 0 mapped?)",
                             errno=e.errno) from None
    for t in sorted(fds, key=lambda t: t == "mount"):
        L.setns(fds[t], NS_FLAGS[t], f"{t} namespace {plan.join[t]}")
        os.close(fds[t])
    flags = 0
    for t in plan.new:
        # a cgroup namespace is rooted where its creator is: pid 1 makes it
        # after it has been moved into the container's cgroup
        if t != "user" and not (t == "cgroup" and plan.cgroup is not None):
            flags |= NS_FLAGS[t]
    if flags:
        L.unshare(flags)
    offsets = (plan.cfg or {}).get("linux", {}).get("timeOffsets") if "time" in plan.new else None
    if offsets:
        _time_offsets(offsets)


def _time_offsets(offsets):
    lines = []
    for clock in ("monotonic", "boottime"):
        o = offsets.get(clock)
        if o:
            lines.append(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n")
    try:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write("".join(lines))
    except OSError as e:
        raise BerthError("linux.timeOffsets: cannot set offsets", errno=e.errno) from None


def stage2(plan, chan):
    try:
        _build(plan, chan)
    except BaseException as e:  # noqa: B902
        _fail(chan, e)


def _build(plan, chan):
    cfg = plan.cfg
    proc = plan.process
    _debug(plan, chan, "child process in init(): stage 2 sets up the "
           + ("container" if plan.container else "process"))
    os.setsid()
    L.prctl(L.PR_SET_DUMPABLE, 0)
    if plan.keyring:
        try:
            L.join_session_keyring(plan.keyring)
        except SysError as e:
            # kernels without keys, or a seccomp profile of the caller, refuse it
            if e.errno not in (38, 1, 13):
                raise
    # a rootless runtime is already in an unprivileged user namespace
    userns = "user" in plan.new or "user" in plan.join or plan.in_userns
    mnt_new = plan.container and "mount" in plan.new
    if mnt_new:
        rootfd, nxt = R.prepare_before_cgroup(cfg, plan.rootfs, plan.bind_sources)
    if plan.cgroup is not None:
        # meanwhile the runtime made the cgroup (create; waiting out the
        # kernel's grace period for the first migration) and moved us in
        chan.expect("cgroup")
    if plan.container:
        # a rootless container without a cgroup gets an empty /sys/fs/cgroup,
        # not the daemon's own cgroups
        cgroups = (R.cgroup_sources() if plan.cgroup is not None or not plan.in_userns
                   else []) if mnt_new else None
        if plan.cgroup is not None and "cgroup" in plan.new:
            L.unshare(L.CLONE_NEWCGROUP)
        if mnt_new:
            R.prepare_rest(rootfd, cfg, nxt, userns, cgroups, plan.bind_sources)
        hooks = cfg.get("hooks") or {}
        if hooks.get("prestart") or hooks.get("createRuntime"):
            chan.send("hooks")
            chan.expect("ok")
        if hooks.get("createContainer"):
            from berth.runtime import hooks as H
            if mnt_new:
                os.chdir(plan.rootfs)  # runc runs them from the rootfs
            # hooks in the container's namespaces see its pid as it sees it
            H.run(hooks["createContainer"], dict(plan.hook_state, pid=os.getpid()),
                  "createContainer")
        if mnt_new:
            R.pivot(plan.rootfs, plan.no_pivot)
            os.close(rootfd)
        # sysctls go in before /proc/sys turns read-only
        R.set_sysctls((cfg.get("linux") or {}).get("sysctl"))
        if mnt_new:
            R.finish(cfg)
        if cfg.get("hostname"):
            L.sethostname(cfg["hostname"])
        if cfg.get("domainname"):
            L.setdomainname(cfg["domainname"])
    setup.oom_score(proc)
    setup.rlimits(proc)
    if proc.get("terminal"):
        _terminal(plan, proc)
    setup.chdir(proc.get("cwd") or "/")
    env = setup.user_env(proc)
    args = proc["args"]
    path = setup.lookup(args[0], env)
    tramp = trampoline.make()
    nnp = proc.get("noNewPrivileges")
    notify = plan.seccomp is not None and plan.seccomp.notify
    if plan.seccomp is not None and not nnp:
        _load_seccomp(plan, chan)
    setup.switch_user(proc, plan.caps)
    if nnp:
        L.prctl(L.PR_SET_NO_NEW_PRIVS, 1)
        if notify:
            # the runtime must still be there to hand the listener on
            _load_seccomp(plan, chan)
    _debug(plan, chan, "init: closing the pipe to signal completion" if plan.container
           else f"setns_init: about to exec {path}")
    chan.send("ready")
    if plan.wait_fifo:
        _wait_fifo(plan.state_dirfd)
    else:
        chan.expect("start")
    chan.close()
    start_hooks = plan.container and (cfg.get("hooks") or {}).get("startContainer")
    late = plan.seccomp is not None and nnp and not notify
    if late and start_hooks:
        # a startContainer hook is the container's own code: it runs under
        # the container's filter, as with runc (else as late as possible)
        plan.seccomp.load()
    if start_hooks:
        from berth.runtime import hooks as H
        H.run(start_hooks, dict(plan.hook_state, pid=os.getpid(), status="created"),
              "startContainer")
    setup.close_fds(plan.preserve_fds)
    if late and not start_hooks:
        plan.seccomp.load()
    trampoline.execute(tramp, path, args, env)


def _load_seccomp(plan, chan):
    listener = plan.seccomp.load()
    if listener is not None:
        # write() is the one syscall before the agent has the fd: compile()
        # refuses to notify it
        chan.send("seccomp", str(listener))
        chan.expect("ok")
        os.close(listener)


def _terminal(plan, proc):
    from berth.runtime import tty
    master, slave = tty.open_pty()
    size = proc.get("consoleSize")
    if size:
        tty.set_winsize(master, size["height"], size["width"])
    if plan.console_fd is None:
        raise BerthError("process.terminal: true needs --console-socket (or run in the foreground)")
    tty.send_fd_to(plan.console_fd, master)
    os.close(master)
    os.close(plan.console_fd)
    # the process's user owns its terminal, so it can control it (runc's
    # fixStdioPermissions); the group stays devpts's (gid=5 in the spec)
    uid = (proc.get("user") or {}).get("uid", 0)
    if uid:
        os.fchown(slave, uid, -1)
    tty.make_controlling(slave)
    if slave > 2:
        os.close(slave)


def _wait_fifo(dirfd):
    # blocks until `start` opens the fifo for reading
    fd = os.open("exec.fifo", os.O_WRONLY | os.O_CLOEXEC, dir_fd=dirfd)
    os.write(fd, b"0")
    os.close(fd)
    os.close(dirfd)


def _fail(chan, e):
    if isinstance(e, BrokenPipeError):
        msg = "the runtime went away before the container was ready; giving up"
    else:
        msg = str(e) if isinstance(e, BerthError) else f"{type(e).__name__}: {e}"
    try:
        chan.send("error", msg)
    except OSError:
        try:
            os.write(2, f"berth-runtime: {msg}\n".encode())
        except OSError:
            pass
    os._exit(1)
