"""`run`: create + start, then (unless -d) wait for the container's exit,
forwarding signals, and delete it. Exits with the container's status."""
import os
import _signal

from berth.runtime.container import Container
from berth.runtime.teardown import destroy
from berth.runtime.verbs import create as C
from berth.runtime.verbs.start import poststart

FORWARDED = (1, 2, 3, 10, 12, 15, 28)  # HUP INT QUIT USR1 USR2 TERM WINCH


def wait_exit(pid, on_signal=None):
    """Reaps children until `pid` exits (we are a subreaper, so orphans of
    the container land here); returns its exit code as a shell would."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if got == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
                else 128 + os.WTERMSIG(status)


def forward_signals(pid):
    def handler(sig, _frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    for s in FORWARDED:
        _signal.signal(s, handler)


def run(ctx, cid, opts):
    detach = opts.get("detach")
    master_end = console_fd = None
    bundle = opts.get("bundle") or "."
    cfg_terminal = False
    if not opts.get("console-socket") and not detach:
        from berth.oci import spec
        cfg_terminal = bool((spec.load(os.path.abspath(bundle)).get("process") or {}).get("terminal"))
        if cfg_terminal:
            from berth.runtime import tty
            master_end, console_fd = tty.socketpair()
    try:
        c, chan = C.create(ctx, cid, bundle=bundle, pid_file=opts.get("pid-file"),
                           console_socket=opts.get("console-socket"),
                           preserve_fds=C.preserve_count(opts),
                           no_pivot=opts.get("no-pivot"), fifo=False, console_fd=console_fd,
                           no_new_keyring=opts.get("no-new-keyring"), subreaper=True)
    except BaseException:
        if master_end is not None:
            os.close(master_end)
        raise
    console_fd = None
    try:
        pty = None
        if master_end is not None:
            from berth.runtime import tty
            pty = tty.recv_fd(master_end)
            os.close(master_end)
            tty.copy_winsize(0, pty)  # before the program can ask for it
        chan.send("start")
        chan.close()
        poststart(ctx, c)
        if detach:
            return 0
        forward_signals(c.pid)
        if pty is not None:
            from berth.runtime import tty
            tty.proxy(pty, child_pid=c.pid)
        code = wait_exit(c.pid)
    except BaseException:
        destroy(ctx, c)
        raise
    if not opts.get("keep"):
        destroy(ctx, Container.load(ctx.root, cid))
    return code


def main(ctx, opts, args):
    return run(ctx, args[0], opts)
