"""`berth`: the CLI for people, Docker's verbs and flags, built only on the
Engine API (berth.client). Start-up matters: only this table and the
command's own module are imported."""
import sys

from berth.client.table import GLOBAL

# top-level verb -> module in berth.client.commands (function cmd_<verb>)
TOP = {v: "containers" for v in (
    "stop restart kill rm logs top cp export diff pause unpause rename update wait port").split()}
TOP.update({v: "run" for v in "run create start exec attach".split()})
TOP.update({v: "ps" for v in "ps stats".split()})
TOP.update({v: "images" for v in "images pull push load save import tag rmi history".split()})
TOP.update({v: "system" for v in "inspect events info version login logout".split()})
TOP["audit"] = "security"
# management groups -> (modules, {alias: verb}); a verb is found in the
# first module that has it
GROUPS = {
    "container": (("containers", "run", "ps"), {"ls": "ps", "list": "ps", "remove": "rm", "prune": "prune",
                                 "inspect": "inspect"}),
    "image": (("images",), {"ls": "images", "list": "images", "rm": "rmi", "remove": "rmi",
                         "prune": "prune", "inspect": "inspect", "sign": "sign", "verify": "verify",
                         "keygen": "keygen", "scan": "scan"}),
    "volume": (("volumes",), {"list": "ls", "remove": "rm"}),
    "network": (("networks",), {"list": "ls", "remove": "rm"}),
    "system": (("system",), {"df": "df", "prune": "prune", "info": "info", "events": "events"}),
}
COMMON = ("run", "exec", "ps", "build", "pull", "push", "images", "login", "logout", "version",
          "info", "audit")


def usage():
    """`berth --help`: every command and global option, one line each."""
    from berth.client.args import Spec
    from berth.client.table import COMMANDS, MANAGEMENT

    def block(title, names):
        rows = [(n, MANAGEMENT[n] if n in MANAGEMENT else COMMANDS[n][1]) for n in names]
        return f"{title}:\n" + "".join(f"  {n.ljust(11)} {d}\n" for n, d in rows) + "\n"
    common = [n for n in COMMON if n in COMMANDS]
    rest = sorted(n for n in TOP if n not in common)
    return ("\nUsage:  berth [OPTIONS] COMMAND\n\nA container engine's command line "
            "(Docker's verbs and flags)\n\n" + block("Common Commands", common)
            + block("Management Commands", sorted(MANAGEMENT)) + block("Commands", rest)
            + Spec(GLOBAL).help().replace("Options:", "Global Options:")
            + "\nRun 'berth COMMAND --help' for more information on a command.\n")


def group_commands(name):
    """(subcommand, table key) of a management command, e.g. ('ls', 'ps')."""
    from berth.client.table import COMMANDS
    modules, aliases = GROUPS[name]
    subs = set(aliases) | {v for m in modules for v in _verbs(m)}
    out = []
    for sub in sorted(subs):
        verb = aliases.get(sub, sub)
        key = f"{name} {sub}" if f"{name} {sub}" in COMMANDS else \
            f"{name} {verb}" if f"{name} {verb}" in COMMANDS else verb
        if key in COMMANDS:
            out.append((sub, key))
    return out


def group_usage(name):
    from berth.client.table import COMMANDS, MANAGEMENT
    rows = group_commands(name)
    width = max(len(s) for s, _ in rows)
    return (f"\nUsage:  berth {name} COMMAND\n\n{MANAGEMENT[name]}\n\nCommands:\n"
            + "".join(f"  {s.ljust(width)}   {COMMANDS[k][1]}\n" for s, k in rows)
            + f"\nRun 'berth {name} COMMAND --help' for more information on a command.\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from berth.client.args import UsageError, parse
    from berth.client.commands import Context
    try:
        gopts, rest = parse(argv, GLOBAL, interspersed=False)
    except UsageError as e:
        sys.stderr.write(f"berth: {e}\nSee 'berth --help'.\n")
        return 125
    if gopts["version"]:
        from berth.client.commands.system import client_version
        sys.stdout.write(f"berth version {client_version()}\n")
        return 0
    if not rest:
        (sys.stdout if gopts["help"] else sys.stderr).write(usage())
        return 0 if gopts["help"] else 1
    name, args = rest[0], rest[1:]
    command = name
    if name in GROUPS:
        modules, aliases = GROUPS[name]
        if not args or args[0] in ("-h", "--help"):
            (sys.stdout if args else sys.stderr).write(group_usage(name))
            return 0 if args else 1
        verb = aliases.get(args[0], args[0])
        command, args = f"{name} {args[0]}", args[1:]
    elif name in TOP:
        modules, verb = (TOP[name],), name
    else:
        sys.stderr.write(f"berth: '{name}' is not a berth command.\nSee 'berth --help'\n")
        return 1
    fn = _find(modules, verb)
    if fn is None:
        sys.stderr.write(f"berth: '{command}' is not a berth command.\nSee 'berth --help'\n")
        return 1
    ctx = Context(gopts, command)
    return run(ctx, fn, args, command)


def run(ctx, fn, args, command):
    """fn's exit status; every error is one line on stderr, never a
    traceback (-D/--debug shows the traceback of an unexpected one)."""
    from berth.client.api import APIError, ConnectError
    from berth.client.args import UsageError
    from berth.client.commands import Exit
    from berth.client.format import TemplateError
    try:
        return fn(ctx, args) or 0
    except Exit as e:
        return e.code
    except UsageError as e:
        sys.stderr.write(f"berth: {e}\nSee 'berth {command} --help'.\n")
        return 125
    except TemplateError as e:
        sys.stderr.write(f"berth: template: {e}\n")
        return 125
    except APIError as e:
        ctx.daemon_error(e)
        return ctx.error_code
    except ConnectError as e:
        ctx.fail(str(e))
        return ctx.error_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        ctx.fail(f"{(e.strerror or str(e)).lower()}{where}")
        return ctx.error_code
    except Exception as e:  # noqa: BLE001 - a person gets one line, not a traceback
        if ctx.gopts.get("debug"):
            import traceback
            traceback.print_exc()
        ctx.fail(f"unexpected error in '{command}': {type(e).__name__}: {e} "
                 "(run 'berth -D ...' for the traceback)")
        return ctx.error_code


def _find(modules, verb):
    import importlib
    for module in modules:
        fn = getattr(importlib.import_module("berth.client.commands." + module), "cmd_" + verb, None)
        if fn is not None:
            return fn
    return None


def _verbs(module):
    import importlib
    mod = importlib.import_module("berth.client.commands." + module)
    return [n[4:] for n in dir(mod) if n.startswith("cmd_")]
