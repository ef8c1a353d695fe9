"""`create`: build the container and leave its init waiting on exec.fifo.

Shared with `run`, which passes fifo=False and starts the init through the
sync channel instead (saving a fifo round trip)."""
import os

from berth.errors import BerthError
from berth.oci import spec
from berth.runtime import hooks as H
from berth.runtime.container import Container, now_rfc3339
from berth.runtime.teardown import destroy
from berth.sys.procfs import start_time


def checked_security(ctx, proc, linux):
    """Parses capabilities and compiles seccomp up front, so a bad rule fails
    before anything is created."""
    from berth.runtime.security import caps as C
    caps = C.parse(proc.get("capabilities"))
    for w in caps.warnings():
        # runc's own default spec lists ambient caps it cannot raise, quietly
        ctx.log("debug", w)
    seccomp = None
    if linux.get("seccomp"):
        from berth.runtime.security import seccomp as S
        # a cold compile of Docker's profile costs ~13 ms in libseccomp
        seccomp = S.compile(linux["seccomp"], cache_dir=os.path.join(ctx.root, ".seccomp-cache"))
    return caps, seccomp


def preserve_count(opts):
    v = opts.get("preserve-fds") or 0
    try:
        return int(v)
    except ValueError:
        raise BerthError(f"--preserve-fds {v!r}: not a number") from None


def check_preserved(n):
    """The fds to preserve must be the caller's: one it did not open would
    be taken by the runtime's own files (a state dir, a cgroup) and hand
    the container a way out."""
    if n < 0:
        raise BerthError(f"--preserve-fds {n}: must not be negative")
    for fd in range(3, 3 + n):
        try:
            os.fstat(fd)
        except OSError:
            raise BerthError(f"--preserve-fds {n}: fd {fd} is not open",
                             hint="the caller must pass fds 3.." f"{2 + n} open") from None


def create(ctx, cid, bundle=".", pid_file=None, console_socket=None, preserve_fds=0,
           no_pivot=False, fifo=True, console_fd=None, no_new_keyring=False, subreaper=False):
    """subreaper: the caller will wait for the container (run), so orphans of
    the container's first stage must come back to it."""
    check_preserved(preserve_fds)
    bundle = os.path.abspath(bundle)
    cfg = spec.load(bundle)
    rootfs, ns = spec.validate(cfg, bundle)
    proc = cfg["process"]
    linux = cfg.get("linux") or {}
    H.validate(cfg.get("hooks"))
    if proc.get("terminal") and console_socket is None and console_fd is None:
        raise BerthError("process.terminal: true needs --console-socket",
                         hint="or set terminal to false in config.json")
    # Everything slow comes before the cgroup mkdirs: those need the cgroup
    # mutex, which the CLI's warm-up child holds through its grace period;
    # the mkdirs themselves run while pid 1 starts on the rootfs.
    caps, seccomp = checked_security(ctx, proc, linux)
    from berth.runtime.process import parent
    from berth.runtime.process.init import Plan
    parent.preload(proc, cfg, container=True)
    if subreaper:
        from berth.sys import libc as L
        L.prctl(L.PR_SET_CHILD_SUBREAPER, 1)
    cg = _cgroup_for(linux, cid)
    if cg is not None and cg.frozen():
        # joining it would freeze the init mid-setup and hang create
        raise BerthError(f"container's cgroup unexpectedly frozen: {cg.freezer_dir()}",
                         hint="thaw it, or give the container another linux.cgroupsPath")
    busy = cg.procs_in_leaf() if cg is not None else 0
    if busy:
        # runc warns too; delete of either container then kills both
        ctx.warn(f"container's cgroup is not empty: {busy} process(es) found")
    from berth.runtime import mounts as M
    sources = M.bind_sources(cfg.get("mounts"), bundle, userns="user" in ns)
    c = Container(ctx.root, cid)
    try:
        c.make_dir()
    except BaseException:
        M.close_sources(sources)
        raise
    c.data = {"id": cid, "bundle": bundle, "rootfs": rootfs, "created": now_rfc3339(),
              "pid": 0, "config": cfg, "cgroup": cg.to_dict() if cg else None}
    dirfd = None
    try:
        c.save()  # the cgroup is on record before it exists: delete can always find it
        if fifo:
            os.mkfifo(c.fifo, 0o600)
            _fifo_for_the_process_user(c, linux, proc.get("user") or {})
            dirfd = os.open(c.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if console_socket is not None and proc.get("terminal"):
            from berth.runtime import tty
            console_fd = tty.connect(console_socket)

        def on_pid(pid):
            c.data["pid"] = pid
            c.data["pidStart"] = start_time(pid)
            c.save()

        def on_cgroup(pid):
            cg.create()
            cg.apply(linux.get("resources"), devices=linux.get("devices"))
            cg.add(pid)

        def on_hooks(pid):
            state = c.oci_state("creating")
            hooks = cfg.get("hooks") or {}
            H.run(hooks.get("prestart"), state, "prestart")
            H.run(hooks.get("createRuntime"), state, "createRuntime")

        plan = Plan(cfg=cfg, process=proc, rootfs=rootfs, cgroup=cg,
                    no_pivot=no_pivot,
                    join={t: p for t, p in ns.items() if p},
                    new=[t for t, p in ns.items() if not p],
                    state_dirfd=dirfd, wait_fifo=fifo, console_fd=console_fd,
                    preserve_fds=preserve_fds, caps=caps, seccomp=seccomp,
                    keyring=None if no_new_keyring else f"_ses.{cid}", debug=ctx.debug,
                    bind_sources=sources,
                    hook_state={"ociVersion": "1.0.2-dev", "id": cid, "status": "creating",
                                "bundle": bundle, "pid": 0,
                                "annotations": cfg.get("annotations") or {}})
        def on_listener(fd, pid):
            from berth.runtime.security import notify
            notify.send_listener(linux["seccomp"], fd, pid, c.oci_state("creating"))

        pid, chan = parent.spawn(plan, on_hooks=on_hooks, on_pid=on_pid, on_cgroup=on_cgroup,
                                 on_log=lambda text: ctx.log("debug", text),
                                 on_listener=on_listener)
        if pid_file:
            write_pid_file(pid_file, pid)
    except BaseException:
        destroy(ctx, c, run_poststop=False)
        raise
    finally:
        for fd in (dirfd, console_fd):
            if fd is not None:
                os.close(fd)
        M.close_sources(sources)
    return c, chan


def write_pid_file(path, pid):
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)
    except OSError as e:
        raise BerthError(f"--pid-file {path}: cannot write it", errno=e.errno) from None


def main(ctx, opts, args):
    c, chan = create(ctx, args[0], bundle=opts.get("bundle") or ".", pid_file=opts.get("pid-file"),
                     console_socket=opts.get("console-socket"),
                     preserve_fds=preserve_count(opts), no_pivot=opts.get("no-pivot"),
                     no_new_keyring=opts.get("no-new-keyring"))
    chan.close()
    return 0


def _fifo_for_the_process_user(c, linux, user):
    """The init opens exec.fifo after it has become the process's user, and
    without CAP_DAC_OVERRIDE (a non-root user, or root of its own user
    namespace) only the owner of the 0600 fifo may: it is given to that
    user's host id. In a user namespace the init also needs search on the
    state dir (runc makes its fifo 0622 instead; this one stays private)."""
    def host_id(key, cid):
        maps = linux.get(key)
        if not maps:
            return cid
        for m in maps:
            start, size = m.get("containerID", 0), m.get("size", 0)
            if start <= cid < start + size:
                return m.get("hostID", 0) + cid - start
        return None
    uid = host_id("uidMappings", user.get("uid", 0))
    gid = host_id("gidMappings", user.get("gid", 0))
    if not uid and not gid:
        return
    try:
        os.chown(c.fifo, uid if uid is not None else -1, gid if gid is not None else -1)
    except OSError:
        pass  # a rootless runtime cannot give away what it cannot map
    if linux.get("uidMappings"):
        os.chmod(c.dir, 0o711)


def _cgroup_for(linux, cid):
    """None for a rootless container that asks for no cgroup: a runtime in
    an unprivileged user namespace may not write the host's cgroupfs, and
    without limits there is nothing to put in one (runc --rootless does
    the same). The container's pid namespace still holds its processes."""
    from berth.sys.rootless import in_user_namespace
    if in_user_namespace() and not linux.get("cgroupsPath") and not linux.get("resources"):
        return None
    from berth.runtime.cgroups import open_cgroup
    return open_cgroup(linux.get("cgroupsPath"), cid)
