"""The shim becomes berth-monitor: once the container runs (berthd's start
request served by loop.Monitor, start in this process), this process execs
the C monitor (src/berth/monitor/), which keeps its pid, its session, its
place as the container's subreaper and the fds named on its command line.
A monitor holds ~0.1 MB of private memory where this interpreter holds ~2.5.

What the Python loop knows at that moment goes along in a memfd
(--state-fd), one record a line, bytes in hex ("-" for none):
  conn FD attach|control FLAGS WAITS IN OUT   FLAGS: h header read, i o e
                                              its streams, r still reading
                                              ("-": none); WAITS: wait
                                              requests owed an answer; IN
                                              read, not yet taken; OUT not
                                              yet sent
  stdin DATA                                  for the container's stdin
  stdin-closing | stdin-closed
  partial stdout|stderr DATA                  a log line not ended yet
If the exec fails, the Python loop carries on: berthd sees the same
protocol either way."""
import os

from berth.shim.main import log


def _hex(data):
    return bytes(data).hex() or "-"


def state(mon):
    """The Python loop's state as berth-monitor reads it."""
    lines = []
    for c in mon.conns.values():
        flags = "".join(f for f, on in (("h", c.header), ("i", c.stdin), ("o", c.stdout),
                                        ("e", c.stderr), ("r", c.reading)) if on) or "-"
        lines.append(f"conn {c.fd} {c.kind} {flags} {mon.waiters.count(c)} "
                     f"{_hex(c.inbuf)} {_hex(c.out)}")
    if mon.stdin_buf:
        lines.append(f"stdin {_hex(mon.stdin_buf)}")
    if mon.stdin_closed:
        lines.append("stdin-closed")
    elif mon.stdin_closing:
        lines.append("stdin-closing")
    for stream, buf in mon.log.partial.items():
        if buf:
            lines.append(f"partial {stream} {_hex(buf)}")
    return "".join(line + "\n" for line in lines).encode()


def argv(opts, io, mon, listeners, state_fd):
    """berth-monitor's command line (its main.c documents it) and the fds
    it is handed."""
    cmd = [opts.monitor, "--id", opts.id, "--runtime", opts.runtime,
           "--runtime-root", opts.runtime_root, "--state-dir", opts.state_dir,
           "--log-path", opts.log_path, "--init-pid", str(mon.init_pid), "--started",
           "--state-fd", str(state_fd)]
    if opts.log_max_size:
        cmd += ["--log-max-size", str(opts.log_max_size),
                "--log-max-files", str(opts.log_max_files)]
    for flag in ("tty", "open_stdin", "stdin_once"):
        if getattr(opts, flag):
            cmd.append("--" + flag.replace("_", "-"))
    fds = [state_fd] + list(mon.conns)
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
    """Returns only when the exec failed (said in shim.log); opts.monitor
    is then None: this interpreter stays the monitor."""
    state_fd = os.memfd_create("berth-monitor-state")
    try:
        data = state(mon)
        while data:
            data = data[os.write(state_fd, data):]
        os.lseek(state_fd, 0, os.SEEK_SET)
        cmd, fds = argv(opts, io, mon, listeners, state_fd)
        for fd in fds:
            os.set_inheritable(fd, True)
        try:
            os.execv(cmd[0], cmd)
        except OSError as e:
            log(f"cannot run {cmd[0]}: {e.strerror}; the Python shim monitors the container")
        for fd in fds[1:]:
            os.set_inheritable(fd, False)
    finally:
        os.close(state_fd)
    opts.monitor = None
