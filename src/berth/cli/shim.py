"""berth-shim: argv only (the work is in berth.shim). Parsed by hand, as
berth-runtime's is: argparse would cost start-up time and memory in every
container's monitor.

berth-shim --id ID --bundle DIR --runtime BIN --runtime-root DIR
           --state-dir DIR --log-path FILE [--log-max-size BYTES]
           [--log-max-files N] [--tty] [--open-stdin] [--stdin-once] [--no-start]
           [--runtime-in-process] [--monitor BIN]

--no-start: report after `create` and run `start` on the control op
{"op":"start"}, so berthd can connect attach clients first.

--runtime-in-process: the runtime is berth-runtime; run its verbs in a fork
of this interpreter (berth.cli.runtime.main) instead of exec'ing a fresh
one, ~10 ms less per verb.

--monitor: once the container is created and the ready report sent, exec
berth-monitor (C) to hold it; without it this interpreter stays the
container's monitor."""
import os
import sys

VALUES = {"id", "bundle", "runtime", "runtime-root", "state-dir", "log-path",
          "log-max-size", "log-max-files", "monitor"}
FLAGS = {"tty", "open-stdin", "stdin-once", "no-start", "runtime-in-process"}
REQUIRED = ("id", "bundle", "runtime", "runtime-root", "state-dir", "log-path")
INTS = ("log-max-size", "log-max-files")


class UsageError(Exception):
    pass


def parse(argv):
    opts = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in ("-h", "--help"):
            raise UsageError(__doc__.split("\n\n", 1)[1].strip())
        if not arg.startswith("-"):
            raise UsageError(f"unexpected argument {arg!r}")
        name, eq, value = arg.lstrip("-").partition("=")
        if name in FLAGS:
            if eq:
                raise UsageError(f"--{name} takes no value")
            opts[name] = True
        elif name in VALUES:
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"--{name} needs a value")
                value = argv[i]
                i += 1
            opts[name] = value
        else:
            raise UsageError(f"unknown option --{name}")
    missing = [f"--{n}" for n in REQUIRED if not opts.get(n)]
    if missing:
        raise UsageError("missing " + ", ".join(missing))
    for n in INTS:
        if n in opts:
            try:
                opts[n] = int(opts[n])
            except ValueError:
                raise UsageError(f"--{n} must be an integer, not {opts[n]!r}") from None
            if opts[n] < (0 if n == "log-max-size" else 1):
                raise UsageError(f"--{n} out of range: {opts[n]}")
    return {k.replace("-", "_"): v for k, v in opts.items()}


def main(argv=None, report_fd=None, zygote=None):
    """report_fd: see berth.shim.main.run; zygote: the socket of the zygote
    this shim is a fork of (both passed by the zygote's forks)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--zygote"] and len(argv) == 2:
        from berth.shim.zygote import serve
        runtime_main = _import_runtime()   # once, shared by every fork
        return serve(argv[1], main, runtime_main)
    try:
        kw = parse(argv)
    except UsageError as e:
        sys.stderr.write(f"berth-shim: {e}\n")
        msg = str(e).splitlines()[0].replace("\\", "\\\\").replace('"', '\\"')
        os.write(1, f'{{"error":"berth-shim: {msg}"}}\n'.encode())
        return 2
    from berth.shim.main import Options, run
    kw["zygote"] = zygote
    if kw.pop("runtime_in_process", False):
        kw["runtime_main"] = _import_runtime()
        kw["runtime_here"] = _runtime_here
    return run(Options(**kw), report_fd)


def _runtime_here(root, verb, cid):
    """berth-runtime --root ROOT start CID, or delete -f CID, in this
    process (berth.shim.main.run_verb); raises BerthError."""
    from berth.runtime.context import Context
    ctx = Context(root=root)
    if verb == "start":
        from berth.runtime.verbs.start import start
        start(ctx, cid)
    else:
        from berth.runtime.verbs.delete import delete
        delete(ctx, cid, force=True)


def _import_runtime():
    """berth-runtime's entry point and the modules `create` needs."""
    from berth.cli.runtime import main as runtime_main
    from berth.runtime import (container, context, hooks, mounts, rootfs,  # noqa: F401
                               teardown, trampoline, tty, warmup)
    from berth.runtime.cgroups import manager  # noqa: F401
    # what create imports on its own (manager leaves them to it)
    from berth.runtime.cgroups import cpu, cpuset, devices, memory, mounts, pids  # noqa: F401
    from berth.runtime.process import init, parent, setup, sync  # noqa: F401
    from berth.runtime.security import caps, seccomp  # noqa: F401
    from berth.runtime.verbs import create, delete, start, exec as _exec  # noqa: F401
    from berth.sys import caps as _caps, mountinfo, rootless, seccomp as _seccomp  # noqa: F401
    _seccomp.preload()
    import fcntl, resource, termios  # noqa: F401,E401
    try:
        import _sha256  # noqa: F401 (the seccomp cache key)
    except ImportError:
        pass
    return runtime_main
