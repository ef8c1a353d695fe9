"""The verbs that hold a container's streams: run, create, start -a,
attach and exec, with the raw terminal, resizes and detach keys."""
import os
import sys

from berth.client.args import UsageError
from berth.client.commands import Exit
from berth.client.runopts import create_body, env_list, kv_file, terminal_size


def _create(ctx, o, image, cmd, detach=False):
    """POST /containers/create, pulling the image first when it is missing
    (--pull missing, the default) as docker does. Returns the id."""
    from berth.client.api import APIError
    from berth.client.commands.images import full_name, pull
    body = create_body(o, image, cmd, detach)
    policy = o["pull"] or "missing"
    if policy not in ("missing", "always", "never"):
        raise UsageError(f'invalid pull option: {policy!r}: must be one of "always", "missing" or "never"')
    if policy == "always":
        pull(ctx, image, quiet=o["quiet"], out=ctx.err)
    params = {"name": o["name"], "platform": o["platform"]}
    if o["cidfile"] and os.path.exists(o["cidfile"]):
        raise UsageError(f"container ID file found, make sure the other container isn't running "
                         f"or delete {o['cidfile']}")
    try:
        r = ctx.client.post("/containers/create", body, **params)
    except APIError as e:
        # only a missing image is pulled (a missing user in the image is a 404 too)
        if e.status != 404 or policy != "missing" or "no such image" not in str(e).lower():
            raise
        ref = full_name(image).replace("docker.io/library/", "").replace("docker.io/", "")
        ctx.err.write(f"Unable to find image '{ref}' locally\n")
        pull(ctx, image, quiet=o["quiet"], out=ctx.err)
        r = ctx.client.post("/containers/create", body, **params)
    for w in r.get("Warnings") or []:
        ctx.warn(w)
    if o["cidfile"]:
        with open(o["cidfile"], "x") as f:
            f.write(r["Id"])
    return r["Id"]


def cmd_create(ctx, argv):
    ctx.error_code = 125
    o, args = ctx.parse(argv, "create", min_args=1,
                        interspersed=False)
    ctx.out.write(_create(ctx, o, args[0], args[1:], detach=True) + "\n")


def cmd_run(ctx, argv):
    ctx.error_code = 125
    o, args = ctx.parse(argv, "run", min_args=1,
                        interspersed=False)
    detach = o["detach"]
    if not detach:
        detach_keys(ctx, o["detach_keys"])   # bad keys fail before anything is created
    cid = _create(ctx, o, args[0], args[1:], detach)
    if detach:
        _start(ctx, cid)
        ctx.out.write(cid + "\n")
        return 0
    proxy = "--sig-proxy=false" not in argv
    return attach_run(ctx, cid, tty=o["tty"], stdin=o["interactive"], start=True,
                      condition="removed" if o["rm"] else "next-exit", sig_proxy=proxy and not o["tty"],
                      keys_flag=o["detach_keys"])


def _start(ctx, cid):
    from berth.client.api import APIError
    try:
        ctx.client.request("POST", f"/containers/{cid}/start").close()
    except APIError as e:
        msg = str(e)
        ctx.daemon_error(e)
        low = msg.lower()
        if "not found" in low or "no such file" in low:
            raise Exit(127)
        if "permission denied" in low or "cannot execute" in low:
            raise Exit(126)
        raise Exit(ctx.error_code)


# -- attached streams ------------------------------------------------------------------

class Terminal:
    """Raw mode on the local terminal for -t, restored on exit."""

    def __init__(self, fd=0):
        self.fd = fd
        self.saved = None

    def __enter__(self):
        import termios
        import tty
        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def _resize(ctx, path):
    size = terminal_size()
    if size:
        try:
            ctx.client.request("POST", path, {"h": size.lines, "w": size.columns}).close()
        except Exception:  # noqa: BLE001 - a resize that fails does not end the session
            pass


def detach_keys(ctx, flag):
    """The detach keys in force, checked: (spec, bytes)."""
    from berth.client import creds, detach
    spec = detach.configured(flag, creds.config_path())
    return spec, detach.parse(spec)


def pump(ctx, conn, tty, stdin, keys=None):
    """Copies stdin -> conn (thread) and conn -> stdout/stderr until the
    output ends; True if the user typed the detach keys (with a TTY)."""
    import socket
    import threading
    from berth.client.detach import Escape
    out, err = sys.stdout.buffer, sys.stderr.buffer
    sys.stdout.flush()
    escape = Escape(keys) if tty and keys else None
    detached = []

    def feed():
        try:
            while True:
                data = os.read(0, 65536)
                if not data:
                    break
                if escape:
                    data, done = escape.feed(data)
                    if done:
                        if data:
                            conn.send(data)
                        detached.append(True)
                        conn.sock.shutdown(socket.SHUT_RDWR)   # ends the output loop
                        return
                if data:
                    conn.send(data)
        except OSError:
            pass
        if not tty:
            conn.close_write()

    if stdin:
        threading.Thread(target=feed, daemon=True).start()
    if tty:
        while True:
            data = conn.recv()
            if not data:
                break
            out.write(data)
            out.flush()
    else:
        for kind, data in conn.frames():
            w = err if kind == 2 else out
            w.write(data)
            w.flush()
    conn.close()
    return bool(detached)


def attach_run(ctx, cid, tty, stdin, start, condition="next-exit", sig_proxy=False,
               keys_flag=None):
    """attach (hijacked) + start + wait; returns the container's exit code,
    or 0 when the user detached (the container keeps running)."""
    import signal
    c = ctx.client
    spec, keys = detach_keys(ctx, keys_flag)
    ws, wf = c.send("POST", f"/containers/{cid}/wait", {"condition": condition})
    conn = c.hijack("POST", f"/containers/{cid}/attach",
                    {"stream": 1, "stdin": int(stdin), "stdout": 1, "stderr": 1,
                     "detachKeys": spec if stdin else None})
    term = Terminal() if tty and stdin and os.isatty(0) else None
    if sig_proxy:
        def proxy(signum, frame):
            try:
                c.request("POST", f"/containers/{cid}/kill", {"signal": signum}).close()
            except Exception:  # noqa: BLE001
                pass
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(s, proxy)
    try:
        if term:
            term.__enter__()
        if start:
            _start(ctx, cid)
        if tty:
            _resize(ctx, f"/containers/{cid}/resize")
            signal.signal(signal.SIGWINCH, lambda *a: _resize(ctx, f"/containers/{cid}/resize"))
        detached = pump(ctx, conn, tty, stdin, keys if stdin else None)
    finally:
        if term:
            term.__exit__()
    if detached:
        ws.close()
        return 0
    return _wait_answer(ctx, c, ws, wf)


def _wait_answer(ctx, c, ws, wf):
    from berth.client.api import APIError
    try:
        r = c.answer(ws, wf).json() or {}
    except APIError as e:
        ctx.daemon_error(e)
        return 125
    if (r.get("Error") or {}).get("Message"):
        ctx.fail(r["Error"]["Message"])
    return int(r.get("StatusCode", 0))


def _inspect(ctx, name):
    return ctx.client.get(f"/containers/{name}/json")


def cmd_start(ctx, argv):
    o, args = ctx.parse(argv, "start", min_args=1)
    if o["attach"] or o["interactive"]:
        if len(args) > 1:
            ctx.fail("you cannot start and attach multiple containers at once")
            raise Exit(1)
        info = _inspect(ctx, args[0])
        cfg = info.get("Config") or {}
        return attach_run(ctx, info["Id"], cfg.get("Tty", False), o["interactive"] and cfg.get("OpenStdin"),
                          start=True, sig_proxy=not cfg.get("Tty"), keys_flag=o["detach_keys"])
    ctx.each(args, lambda n: ctx.client.request("POST", f"/containers/{n}/start").close())


def cmd_attach(ctx, argv):
    o, args = ctx.parse(argv, "attach",
                        min_args=1, max_args=1)
    info = _inspect(ctx, args[0])
    cfg = info.get("Config") or {}
    stdin = cfg.get("OpenStdin") and not o["no_stdin"]
    return attach_run(ctx, info["Id"], cfg.get("Tty", False), stdin, start=False,
                      sig_proxy=not cfg.get("Tty") and "--sig-proxy=false" not in argv,
                      keys_flag=o["detach_keys"])


def cmd_exec(ctx, argv):
    o, args = ctx.parse(argv, "exec",
                        min_args=2, interspersed=False)
    env = []
    for f in o["env_file"]:
        env += kv_file(f)
    c = ctx.client
    body = {"AttachStdin": o["interactive"] and not o["detach"], "AttachStdout": not o["detach"],
            "AttachStderr": not o["detach"], "Tty": o["tty"], "Env": env_list(env + o["env"]),
            "Cmd": args[1:], "User": o["user"] or "", "WorkingDir": o["workdir"] or "",
            "Privileged": o["privileged"]}
    spec, keys = detach_keys(ctx, o["detach_keys"])
    if o["interactive"]:
        body["DetachKeys"] = spec
    size = terminal_size() if o["tty"] else None
    if size:
        body["ConsoleSize"] = [size.lines, size.columns]
    eid = c.post(f"/containers/{args[0]}/exec", body)["Id"]
    if o["detach"]:
        c.request("POST", f"/exec/{eid}/start", body={"Detach": True, "Tty": o["tty"]}).close()
        return 0
    import signal
    conn = c.hijack("POST", f"/exec/{eid}/start",
                    body={"Detach": False, "Tty": o["tty"], "ConsoleSize": body.get("ConsoleSize")})
    term = Terminal() if o["tty"] and o["interactive"] and os.isatty(0) else None
    try:
        if term:
            term.__enter__()
        if o["tty"]:
            _resize(ctx, f"/exec/{eid}/resize")
            signal.signal(signal.SIGWINCH, lambda *a: _resize(ctx, f"/exec/{eid}/resize"))
        detached = pump(ctx, conn, o["tty"], o["interactive"], keys if o["interactive"] else None)
    finally:
        if term:
            term.__exit__()
    if detached:
        return 0
    r = c.get(f"/exec/{eid}/json") or {}
    code = r.get("ExitCode")
    return 126 if code is None else int(code)
