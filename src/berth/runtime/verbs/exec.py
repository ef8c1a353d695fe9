"""`exec`: run another process in a running container. The process starts
from the container's own process spec (user, env, caps...) with the
command line's overrides, or comes whole from -p process.json."""
import os

from berth.errors import BerthError, Conflict
from berth.oci import jsonio, spec
from berth.runtime.container import Container
from berth.runtime.process import parent
from berth.runtime.process.init import Plan
from berth.runtime.verbs.create import (check_preserved, checked_security, preserve_count,
                                        write_pid_file)
from berth.runtime.verbs.run import forward_signals, wait_exit
from berth.sys import libc as L

NS_FILES = {"user": "user", "mount": "mnt", "uts": "uts", "ipc": "ipc", "network": "net",
            "cgroup": "cgroup", "pid": "pid", "time": "time"}


def build_process(base, opts, args):
    if opts.get("process"):
        proc = jsonio.load_file(opts["process"], opts["process"])
        spec.check_process(proc, field=opts["process"])
        return proc
    proc = dict(base)
    proc["args"] = list(args)
    proc["terminal"] = bool(opts.get("tty"))
    if opts.get("cwd"):
        proc["cwd"] = opts["cwd"]
    if opts.get("env"):
        keys = {e.split("=", 1)[0] for e in opts["env"]}
        proc["env"] = [e for e in proc.get("env") or () if e.split("=", 1)[0] not in keys] + opts["env"]
    if opts.get("user"):
        uid, _, gid = opts["user"].partition(":")
        try:
            proc["user"] = dict(proc.get("user") or {}, uid=int(uid), gid=int(gid or 0))
        except ValueError:
            raise BerthError(f"--user {opts['user']!r}: expected uid[:gid] numbers") from None
    if opts.get("additional-gids"):
        proc.setdefault("user", {})["additionalGids"] = [int(g) for g in opts["additional-gids"]]
    if opts.get("cap"):
        caps = {k: list(v) for k, v in (proc.get("capabilities") or {}).items()}
        for k in ("bounding", "effective", "permitted", "ambient"):
            caps[k] = caps.get(k, []) + [c for c in opts["cap"] if c not in caps.get(k, [])]
        proc["capabilities"] = caps
    if opts.get("no-new-privs"):
        proc["noNewPrivileges"] = True
    spec.check_process(proc, field="process")
    return proc


def joins(pid, cfg):
    out = {}
    for ns in (cfg.get("linux") or {}).get("namespaces") or ():
        t = ns["type"]
        path = f"/proc/{pid}/ns/{NS_FILES[t]}"
        # joining the namespace we are already in is refused for user namespaces
        if os.stat(path).st_ino != os.stat(f"/proc/self/ns/{NS_FILES[t]}").st_ino:
            out[t] = path
    return out


def exec_(ctx, cid, opts, args):
    check_preserved(preserve_count(opts))
    c = Container.load(ctx.root, cid)
    st = c.status()
    if st == "paused" and not opts.get("ignore-paused"):
        raise Conflict(f"cannot exec in a paused container {cid}",
                       hint="use --ignore-paused to override: the process then waits "
                            "for the container to resume")
    if st not in ("running", "created", "paused"):
        raise Conflict(f"cannot exec in a {st} container {cid}")
    cfg = c.config
    if not args and not opts.get("process"):
        raise BerthError("exec: no command given", hint="berth-runtime exec ID COMMAND [ARG...]")
    proc = build_process(cfg["process"], opts, args)
    caps, seccomp = checked_security(ctx, proc, cfg.get("linux") or {})
    detach = opts.get("detach")
    console_fd = master_end = None
    if proc.get("terminal"):
        from berth.runtime import tty
        if opts.get("console-socket"):
            console_fd = tty.connect(opts["console-socket"])
        elif detach:
            raise BerthError("exec -t -d needs --console-socket")
        else:
            master_end, console_fd = tty.socketpair()
    L.prctl(L.PR_SET_CHILD_SUBREAPER, 1)
    cg = c.cgroup()
    if opts.get("cgroup"):
        if cg is None:
            raise BerthError(f"--cgroup: container {cid} has no cgroup")
        cg = sub_cgroup(cg, opts["cgroup"])
    # the parent moves only the final process in: stage 1 stays outside, so
    # exec needs one free slot under a pids limit, as runc's does
    plan = Plan(cfg=cfg, process=proc, container=False, join=joins(c.pid, cfg),
                cgroup=cg, wait_fifo=False, console_fd=console_fd,
                preserve_fds=preserve_count(opts), caps=caps, seccomp=seccomp, debug=ctx.debug)
    try:
        def on_listener(fd, pid):
            from berth.runtime.security import notify
            notify.send_listener(cfg["linux"]["seccomp"], fd, pid, c.oci_state())

        pid, chan = parent.spawn(plan, on_cgroup=(lambda p: _join(cg, p)) if cg is not None else None,
                                 on_log=lambda text: ctx.log("debug", text),
                                 on_listener=on_listener)
    finally:
        if console_fd is not None:
            os.close(console_fd)
    pty = None
    if master_end is not None:
        from berth.runtime import tty
        pty = tty.recv_fd(master_end)
        os.close(master_end)
        tty.copy_winsize(0, pty)  # before the program can ask for it
    if opts.get("pid-file"):
        try:
            write_pid_file(opts["pid-file"], pid)
        except BaseException:
            # the process waits for "start": it must not outlive the error
            os.kill(pid, 9)
            chan.close()
            raise
    chan.send("start")
    chan.close()
    if detach:
        return 0
    forward_signals(pid)
    if pty is not None:
        from berth.runtime import tty
        tty.proxy(pty, child_pid=pid)
    return wait_exit(pid)


def sub_cgroup(cg, specs):
    """--cgroup [<controller>[,<controller>]:]<path>: the exec joins a
    sub-cgroup of the container's, one path for all hierarchies or one per
    controller (runc's syntax). The path must stay inside the container's."""
    from berth.runtime.cgroups import Cgroup
    subs = {}
    for spec_ in specs:
        ctrls, sep, path = spec_.rpartition(":") if ":" in spec_ else ("", "", spec_)
        if spec_.count(":") > 1:
            raise BerthError(f"--cgroup {spec_!r}: expected [<controller>:]<path>")
        if not sep and len(specs) > 1:
            raise BerthError(f"--cgroup {spec_!r}: give a <controller>: prefix when "
                             "--cgroup is given more than once")
        for ctrl in ctrls.split(",") if sep else [""]:
            subs[ctrl] = path
    known = {c for h in cg.hierarchies for c in h["controllers"]}
    for ctrl in subs:
        if ctrl and ctrl not in known:
            raise BerthError(f"--cgroup: unknown controller {ctrl}",
                             hint="one of " + ", ".join(sorted(known)))
    d = cg.to_dict()
    for h in d["hierarchies"]:
        sub = subs.get("") if "" in subs else next(
            (subs[c] for c in h["controllers"] if c in subs), None)
        if sub is None:
            continue
        new = os.path.normpath(os.path.join(h["dir"], sub.lstrip("/")))
        if new != h["dir"] and not new.startswith(h["dir"] + "/"):
            raise BerthError(f"--cgroup: {sub} is not a sub cgroup path")
        h["dir"], h["made"] = new, []
    return Cgroup.from_dict(d)


def _join(cg, pid):
    """Cgroup.add, with runc's wording: a missing --cgroup sub-cgroup is the
    likely failure, and tools match "adding pid ... no such file"."""
    from berth.errors import SysError
    for h in cg.hierarchies:
        path = f"{h['dir']}/cgroup.procs"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
        except OSError as e:
            why = (e.strerror or str(e)).lower()
            raise SysError(f"exec: adding pid {pid} to cgroups: {path}: {why}") from None


def main(ctx, opts, args):
    return exec_(ctx, args[0], opts, args[1:])
