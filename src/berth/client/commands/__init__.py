"""What every command module shares: the Context (global options, the API
client, output streams, flag parsing) and the per-target loop."""
import sys

from berth.client.args import Spec, UsageError, parse

_specs = {}


def command_spec(key):
    """(usage, description, parsed Spec) of a command of berth.client.table."""
    if key not in _specs:
        from berth.client.table import COMMANDS
        usage, about, flags = COMMANDS[key]
        _specs[key] = (usage, about, Spec(flags))
    return _specs[key]


def help_text(key):
    """What `berth KEY --help` prints, laid out as docker's."""
    usage, about, spec = command_spec(key)
    options = spec.help()
    return f"\nUsage:  berth {usage}\n\n{about}\n" + (f"\n{options}" if options else "")


class Exit(Exception):
    """Ends the command with this status, the message already printed."""

    def __init__(self, code):
        self.code = code
        super().__init__(code)


class Context:
    def __init__(self, gopts, command=""):
        self.gopts = gopts
        self.command = command
        self.out = sys.stdout
        self.err = sys.stderr
        self.error_code = 1  # run/create: 125, as docker
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from berth.client.api import Client
            import os
            g = self.gopts
            host = g["host"][-1] if g["host"] else None
            verify = g["tlsverify"] or bool(os.environ.get("DOCKER_TLS_VERIFY"))
            certs = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")

            def pem(flag, name):
                if g[flag]:
                    return g[flag]
                path = os.path.join(certs, name)
                return path if (verify or g["tls"]) and os.path.exists(path) else None
            self._client = Client(host, tls=g["tls"], tlsverify=verify, cacert=pem("tlscacert", "ca.pem"),
                                  cert=pem("tlscert", "cert.pem"), key=pem("tlskey", "key.pem"))
        return self._client

    def parse(self, argv, key, min_args=0, max_args=None, interspersed=True):
        """argv -> (options, positionals) by the command table's entry `key`;
        --help prints the usage, description and every flag."""
        usage, about, spec = command_spec(key)
        opts, args = parse(argv, spec, interspersed)
        if opts["help"]:
            self.out.write(help_text(key))
            raise Exit(0)
        if opts.get("format"):
            from berth.client.format import check
            check(opts["format"])   # a broken template fails before the daemon is asked
        if len(args) < min_args or (max_args is not None and len(args) > max_args):
            if max_args == 0:
                want = "no arguments"
            elif min_args == max_args:
                want = f"exactly {min_args} argument{'s' * (min_args != 1)}"
            elif len(args) < min_args:
                want = f"at least {min_args} argument{'s' * (min_args != 1)}"
            else:
                want = f"at most {max_args} argument{'s' * (max_args != 1)}"
            self.err.write(f"berth: '{self.command or key}' requires {want}.\n"
                           f"See 'berth {self.command or key} --help'.\n\nUsage:  berth {usage}\n\n"
                           f"{about}\n")
            raise Exit(1)
        return opts, args

    def warn(self, text):
        self.err.write(f"WARNING: {text}\n")

    def fail(self, text):
        self.err.write(f"berth: {text}\n")

    def daemon_error(self, e):
        self.err.write(f"berth: Error response from daemon: {e}\n")

    def confirm(self, warning):
        self.err.write(f"WARNING! {warning}\nAre you sure you want to continue? [y/N] ")
        self.err.flush()
        answer = sys.stdin.readline().strip().lower()
        return answer in ("y", "yes")

    def each(self, names, fn, echo=True):
        """fn(name) for every name; prints the name on success (as docker
        does) and every failure on stderr; exit 1 if any failed."""
        from berth.client.api import APIError
        failed = False
        for name in names:
            try:
                out = fn(name)
                if echo:
                    self.out.write(f"{out if isinstance(out, str) else name}\n")
                    self.out.flush()
            except APIError as e:
                self.daemon_error(e)
                failed = True
        if failed:
            raise Exit(1)


def labels(values):
    out = {}
    for v in values:
        k, _, val = v.partition("=")
        out[k] = val
    return out


def filters(values):
    """-f key=value (repeatable) -> the API's {"key": ["value", ...]}."""
    out = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not eq:
            raise UsageError(f'bad format of filter (expected name=value): {v}')
        out.setdefault(k, []).append(val)
    return out or None


def prune_report(ctx, title, items, freed):
    from berth.client.format import human_size
    if items:
        ctx.out.write(f"{title}:\n" + "".join(f"{i}\n" for i in items) + "\n")
    ctx.out.write(f"Total reclaimed space: {human_size(freed or 0)}\n")
