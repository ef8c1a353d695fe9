"""`kill`: send a signal to the init, or with --all to every process of the
container's cgroup."""
import os

from berth.errors import BerthError, Conflict
from berth.runtime.container import Container

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
    "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}
SIGKILL = SIGNALS["KILL"]


def parse_signal(text):
    t = text.upper()
    if t.isdigit():
        n = int(t)
        if 0 <= n < 65:  # 0 sends nothing: it checks that the process is there
            return n
    else:
        t = t[3:] if t.startswith("SIG") else t
        if t in SIGNALS:
            return SIGNALS[t]
        if t.startswith("RTMIN") or t.startswith("RTMAX"):
            off = int(t[6:] or 0) if len(t) > 5 else 0
            return 34 + off if t.startswith("RTMIN") else 64 - off
    raise BerthError(f"unknown signal {text!r}", hint="use a name like TERM or KILL, or a number")


def kill(ctx, cid, sig, all_procs=False):
    """As runc 1.1 does, down to the wording: containerd's runc shim
    recognises "container not running" in the error and takes the kill
    of an exited init as done (NotFound) rather than as a failure."""
    c = Container.load(ctx.root, cid)
    st = c.status()
    if all_procs:
        _kill_all(c, st, sig)
        return
    if st not in ("running", "created", "paused"):
        raise Conflict("container not running")
    os.kill(c.pid, sig)
    if st == "paused" and sig == SIGKILL:
        # a frozen task only dies once thawed (cgroup v1)
        c.cgroup().thaw()


def _kill_all(c, st, sig):
    """--all reaches whatever is left in the container's cgroup, also after
    the init has exited: the shim sends it when the init of a container
    sharing a pid namespace dies, and an empty or removed cgroup is not an
    error. A stopped container without a cgroup has nothing to reach, and
    its recorded pid may belong to someone else by now."""
    cg = c.cgroup()
    if cg is None:
        if st != "stopped":
            for pid in c.pids() or [c.pid]:
                _signal(pid, sig)
        return
    # frozen, the cgroup cannot gain a process between listing and signalling
    froze = st != "paused" and cg.pids() and _try_freeze(cg)
    try:
        for pid in cg.pids():
            _signal(pid, sig)
    finally:
        if froze or (st == "paused" and sig == SIGKILL):
            cg.thaw()


def _try_freeze(cg):
    try:
        cg.freeze()
    except BerthError:
        return False
    return True


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def main(ctx, opts, args):
    kill(ctx, args[0], parse_signal(args[1] if len(args) > 1 else "TERM"), opts.get("all"))
    return 0
