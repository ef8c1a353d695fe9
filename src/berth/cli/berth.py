"""`berth`: the CLI for people, Docker's verbs and flags, built only on the
Engine API (berth.client). Start-up matters: only this table and the
command's own module are imported."""
import sys

GLOBAL = ("H/host=* tls tlsverify tlscacert= tlscert= tlskey= D/debug l/log-level= config= "
          "c/context= v/version")

# top-level verb -> module in berth.client.commands (function cmd_<verb>)
TOP = {v: "containers" for v in (
    "run create start stop restart kill rm ps logs exec top stats cp export diff pause "
    "unpause rename update wait port attach").split()}
TOP.update({v: "images" for v in "images pull push load save import tag rmi history".split()})
TOP.update({v: "system" for v in "inspect events info version login logout".split()})
TOP["audit"] = "security"
# management groups -> (module, {alias: verb})
GROUPS = {
    "container": ("containers", {"ls": "ps", "list": "ps", "remove": "rm", "prune": "prune",
                                 "inspect": "inspect"}),
    "image": ("images", {"ls": "images", "list": "images", "rm": "rmi", "remove": "rmi",
                         "prune": "prune", "inspect": "inspect", "sign": "sign", "verify": "verify",
                         "keygen": "keygen", "scan": "scan"}),
    "volume": ("volumes", {"list": "ls", "remove": "rm"}),
    "network": ("networks", {"list": "ls", "remove": "rm"}),
    "system": ("system", {"df": "df", "prune": "prune", "info": "info", "events": "events"}),
}
USAGE = """
Usage:  berth [OPTIONS] COMMAND

A container engine's command line (Docker's verbs and flags)

Management Commands:
  container   Manage containers
  image       Manage images
  network     Manage networks
  system      Manage berth
  volume      Manage volumes

Commands:
  run create start stop restart kill rm ps logs exec top stats cp export diff
  pause unpause rename update wait port attach inspect events info version
  images pull push load save import tag rmi history
  audit       CIS-style checks of the daemon, images and containers (also: image scan)

Global Options:
  -H, --host string      Daemon socket to connect to (default $BERTH_HOST,
                         $DOCKER_HOST, your rootless daemon or
                         unix:///run/berth/berth.sock)
      --tls, --tlsverify, --tlscacert, --tlscert, --tlskey
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from berth.client.args import UsageError, parse
    from berth.client.commands import Context, Exit
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
        (sys.stdout if gopts["help"] else sys.stderr).write(USAGE)
        return 0 if gopts["help"] else 1
    name, args = rest[0], rest[1:]
    command = name
    if name in GROUPS:
        module, aliases = GROUPS[name]
        if not args or args[0] in ("-h", "--help"):
            sys.stdout.write(f"\nUsage:  berth {name} COMMAND\n\nCommands: "
                             f"{' '.join(sorted(set(aliases) | set(_verbs(module))))}\n")
            return 0 if args else 1
        verb = aliases.get(args[0], args[0])
        command, args = f"{name} {args[0]}", args[1:]
    elif name in TOP:
        module, verb = TOP[name], name
    else:
        sys.stderr.write(f"berth: '{name}' is not a berth command.\nSee 'berth --help'\n")
        return 1
    import importlib
    mod = importlib.import_module("berth.client.commands." + module)
    fn = getattr(mod, "cmd_" + verb, None)
    if fn is None:
        sys.stderr.write(f"berth: '{command}' is not a berth command.\nSee 'berth --help'\n")
        return 1
    ctx = Context(gopts, command)
    from berth.client.api import APIError, ConnectError
    try:
        return fn(ctx, args) or 0
    except Exit as e:
        return e.code
    except UsageError as e:
        sys.stderr.write(f"berth: {e}\nSee 'berth {command} --help'.\n")
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


def _verbs(module):
    import importlib
    mod = importlib.import_module("berth.client.commands." + module)
    return [n[4:] for n in dir(mod) if n.startswith("cmd_")]
