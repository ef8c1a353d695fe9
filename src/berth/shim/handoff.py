"""The shim becomes berth-monitor: once the container is created, the
listeners are open and berthd has the ready report, this process execs the
C monitor (src/berth/monitor/), which keeps its pid, its session, its place
as the container's subreaper and the fds named on its command line. A
monitor holds ~0.1 MB of private memory where this interpreter holds ~2.5.

If the exec fails, the Python loop (loop.Monitor) carries on in its place:
berthd sees the same protocol either way."""
import os

from berth.shim.main import log


def argv(opts, io, mon, listeners):
    """berth-monitor's command line (its main.c documents it) and the fds
    it is handed."""
    cmd = [opts.monitor, "--id", opts.id, "--runtime", opts.runtime,
           "--runtime-root", opts.runtime_root, "--state-dir", opts.state_dir,
           "--log-path", opts.log_path, "--init-pid", str(mon.init_pid)]
    if opts.log_max_size:
        cmd += ["--log-max-size", str(opts.log_max_size),
                "--log-max-files", str(opts.log_max_files)]
    for flag in ("tty", "open_stdin", "stdin_once", "no_start"):
        if getattr(opts, flag):
            cmd.append("--" + flag.replace("_", "-"))
    fds = []
    for name, fd in (("stdin", io.stdin), ("stdout", io.stdout), ("stderr", io.stderr),
                     ("master", io.master), ("attach", listeners[0].fileno()),
                     ("control", listeners[1].fileno())):
        if fd is not None:
            cmd += [f"--{name}-fd", str(fd)]
            fds.append(fd)
    if opts.zygote and opts.runtime_main is not None:
        # the zygote runs berth-runtime's verbs only: never another runtime's
        cmd += ["--zygote", opts.zygote]
    for path in mon.oom_files:
        cmd += ["--oom-file", path]
    cmd += ["--oom-before", str(mon.oom_before)]
    return cmd, fds


def exec_monitor(opts, io, mon, listeners):
    """Returns only when the exec failed (said in shim.log)."""
    cmd, fds = argv(opts, io, mon, listeners)
    for fd in fds:
        os.set_inheritable(fd, True)
    try:
        os.execv(cmd[0], cmd)
    except OSError as e:
        log(f"cannot run {cmd[0]}: {e.strerror}; the Python shim monitors the container")
    for fd in fds:
        os.set_inheritable(fd, False)
