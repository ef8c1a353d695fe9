"""berth-runtime: the runc-compatible command line (argv only; the work is in
berth.runtime.verbs). Parsed by hand because argparse costs ~11 ms of a
~15 ms start. Like runc (Go's flag package): `-flag` and `--flag` are the
same, `--flag=value` works, and flags end at the first positional argument."""
import os
import sys

from berth import __version__
from berth.errors import BerthError

OCI_SPEC = "1.0.2-dev"

V, B, M = "value", "bool", "multi"
GLOBAL = {"root": V, "log": V, "log-format": V, "debug": B, "systemd-cgroup": B,
          "rootless": V, "criu": V, "help": B, "version": B}
SHORT = {"b": "bundle", "d": "detach", "f": None, "q": "quiet", "a": "all", "t": "tty",
         "u": "user", "e": "env", "p": "process", "g": "additional-gids", "c": "cap",
         "r": "resources", "h": "help", "v": "version"}
_CREATE = {"bundle": V, "console-socket": V, "pid-file": V, "no-pivot": B,
           "no-new-keyring": B, "preserve-fds": V}
VERBS = {
    "create": (_CREATE, 1, "create a container"),
    "run": (dict(_CREATE, detach=B, keep=B), 1, "create and start a container"),
    "start": ({}, 1, "start a created container"),
    "state": ({}, 1, "print the state of a container"),
    "kill": ({"all": B}, 1, "send a signal to a container's init (default TERM)"),
    "delete": ({"force": B}, 1, "delete a container"),
    "list": ({"format": V, "quiet": B}, 0, "list containers"),
    "ps": ({"format": V}, 1, "list the processes of a container"),
    "exec": ({"console-socket": V, "cwd": V, "env": M, "tty": B, "user": V,
              "additional-gids": M, "process": V, "detach": B, "pid-file": V,
              "process-label": V, "apparmor": V, "no-new-privs": B, "cap": M,
              "preserve-fds": V, "cgroup": M, "ignore-paused": B}, 1,
             "run a process in a running container"),
    "pause": ({}, 1, "freeze every process of a container"),
    "resume": ({}, 1, "thaw a paused container"),
    "spec": ({"bundle": V, "rootless": B}, 0, "write a default config.json"),
    "features": ({}, 0, "print the features this runtime supports"),
    "events": ({"interval": V, "stats": B}, 1, "print a container's events and resource stats"),
    # refused by name: berth has no CRIU support (listed so that -h answers)
    "checkpoint": ({}, 1, "checkpoint a container (not supported)"),
    "restore": ({}, 1, "restore a checkpoint (not supported)"),
    "update": ({"resources": V, "memory": V, "memory-swap": V, "memory-reservation": V,
                "kernel-memory": V, "kernel-memory-tcp": V, "cpu-share": V, "cpu-shares": V,
                "cpu-period": V,
                "cpu-quota": V, "cpu-rt-period": V, "cpu-rt-runtime": V, "cpuset-cpus": V,
                "cpuset-mems": V, "pids-limit": V, "blkio-weight": V, "l3-cache-schema": V,
                "mem-bw-schema": V}, 1, "update a container's resource limits"),
}
# -f means --force for delete and --format elsewhere
_F = {"delete": "force"}


def parse(argv, table, verb=None):
    opts = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        name, eq, val = a.lstrip("-").partition("=")
        if len(name) == 1 and name in SHORT:
            name = SHORT[name] or _F.get(verb, "format")
        kind = table.get(name)
        if kind is None:
            raise BerthError(f"flag provided but not defined: -{name}",
                             hint=f"see berth-runtime {verb or ''} --help".replace("  ", " "))
        if kind == B:
            opts[name] = val.lower() not in ("false", "0") if eq else True
        else:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise BerthError(f"flag needs an argument: -{name}")
                val = argv[i]
            if kind == M:
                opts.setdefault(name, []).append(val)
            else:
                opts[name] = val
        i += 1
    return opts, argv[i:]


def reorder(argv, table):
    """Flags given after the positional arguments moved in front of them,
    as runc's parser (urfave/cli v1) does for every verb but exec and ps:
    `update ID --memory 1g` is `update --memory 1g ID`. A flag's value
    moves with it; nothing after "--" moves."""
    flags, rest = [], []
    value_next = False
    for i, a in enumerate(argv):
        if value_next and not _is_flag(a, table):
            flags.append(a)
            value_next = False
        elif a == "--":
            rest += argv[i:]
            break
        elif _is_flag(a, table):
            flags.append(a)
            value_next = "=" not in a
        else:
            rest.append(a)
            value_next = False
    return flags + rest


def _is_flag(a, table):
    if not a.startswith("-") or a == "-":
        return False
    name = a.lstrip("-").partition("=")[0]
    if len(name) == 1 and name in SHORT:
        return (SHORT[name] or "force") in table or (SHORT[name] or "format") in table
    return name in table


def _help(verb=None):
    from berth.cli import runtime_help
    if verb is None:
        return runtime_help.main_page(__version__)
    return runtime_help.verb_page(verb)


def dispatch(ctx, verb, opts, args):
    if verb in ("pause", "resume"):
        from berth.runtime.verbs import pause as mod
        return getattr(mod, verb)(ctx, opts, args)
    mod = __import__(f"berth.runtime.verbs.{verb}", fromlist=["main"])
    return mod.main(ctx, opts, args)


def main(argv=None):
    """berth-runtime ARGV; returns the exit status. Called with no argv, as
    the process's own entry point, it exits instead, skipping the
    interpreter's finalization: with the runtime's modules loaded that
    costs ~4.5 ms, a sixth of a whole `run`, and nothing needs it (output
    goes through os.write or files closed on the spot; no threads, no
    atexit)."""
    if argv is not None:
        return _main(argv)
    code = _main(sys.argv[1:])
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    os._exit(0 if code is None else code if isinstance(code, int) else 1)


def _main(argv):
    from berth.runtime.context import Context
    ctx = Context()
    verb = None
    try:
        gopts, rest = parse(argv, GLOBAL)
        if gopts.get("version"):
            # runc's three lines: dockerd parses "<name> version", "commit:", "spec:"
            os.write(1, f"berth-runtime version {__version__}\ncommit: berth-{__version__}\n"
                        f"spec: {OCI_SPEC}\n".encode())
            return 0
        if rest[:1] in (["help"], ["h"]) and len(rest) > 1:
            rest = [rest[1], "--help"]
        if not rest or gopts.get("help") or rest[0] in ("help", "h", "--help", "-h"):
            os.write(1 if rest or gopts.get("help") else 2, _help().encode())
            return 0 if rest or gopts.get("help") else 1
        ctx = Context(root=gopts.get("root") or "/run/berth-runtime", log=gopts.get("log"),
                      log_format=gopts.get("log-format") or "text", debug=gopts.get("debug"))
        ctx.open_log()
        verb = rest[0]
        if gopts.get("systemd-cgroup") and verb in ("create", "run"):
            # a "slice:prefix:name" path taken literally would put the
            # container outside its slice without a word
            raise BerthError("--systemd-cgroup: the systemd cgroup driver is not supported",
                             hint="use the cgroupfs driver (containerd: SystemdCgroup = false)")
        if verb not in VERBS:
            # urfave/cli's answer, and its status 3
            os.write(2, f"No help topic for '{verb}'\n".encode(errors="replace"))
            return 3
        if verb in ("create", "run", "exec"):
            # first thing: its grace period then overlaps our imports and checks
            from berth.runtime import warmup
            warmup.start()
        table, nargs, _ = VERBS[verb]
        table = dict(table, help=B)
        argv = rest[1:] if verb in ("exec", "ps") else reorder(rest[1:], table)
        if verb in ("checkpoint", "restore") and not {"-h", "--help"} & set(argv):
            raise BerthError(f"{verb}: checkpoint/restore (CRIU) is not supported by "
                             "berth-runtime", hint="stop and start the container instead")
        opts, args = parse(argv, table, verb)
        if opts.get("help"):
            os.write(1, _help(verb).encode())
            return 0
        if len(args) < nargs:
            raise BerthError(f"{verb}: missing container id",
                             hint=f"berth-runtime {verb} [flags] ID")
        return dispatch(ctx, verb, opts, args)
    except BerthError as e:
        from berth.errors import ConfigError
        # runc's words for a config it refuses; tools and its tests look for them
        msg = f"invalid configuration: {e}" if isinstance(e, ConfigError) else str(e)
        return _failed(ctx, verb, msg)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: B902 -- a traceback is a bug; the caller gets one line
        where = f": {e.filename}" if isinstance(e, OSError) and e.filename else ""
        return _failed(ctx, verb, f"internal error ({type(e).__name__}{where}): "
                                  f"{e.strerror if isinstance(e, OSError) and e.strerror else e}")


def _failed(ctx, verb, msg):
    ctx.log("error", msg)
    if ctx.log_path:
        os.write(2, f"berth-runtime: {msg}\n".encode(errors="replace"))
    # runc's exec fails with 255, so that a caller can tell the runtime's
    # failure from the process's own status; every other verb with 1
    return 255 if verb == "exec" else 1
