"""berthd's options: the command line and /etc/berth/daemon.json, with
Docker's key names where Docker has the option. A flag overrides the
file's key; a bad value or an unknown key stops the daemon with a message
that names the key. OPTIONS is the one table: argparse's flags, `berthd
--help`, the JSON keys and docs/configuration.md come from it.

    settle(parse_args(argv), rootless_mode, default_dirs) -> Namespace (every option set)"""
import argparse
import ipaddress
import json
import os

from berth.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")

# (flags, daemon.json key or None, kind, default, help); kinds: str, bool,
# int, list (repeatable flag / JSON array), map (repeatable k=v / JSON object)
OPTIONS = (
    (("-H", "--host"), "hosts", "list", [],
     "Socket to listen on, repeatable: unix:///path, tcp://host:port (mutual TLS unless "
     "--insecure-tcp) or fd:// (systemd socket activation) (default unix:///run/berth/berth.sock)"),
    (("--config-file",), None, "str", None,
     "The daemon's configuration file (default <config-dir>/daemon.json)"),
    (("--data-root",), "data-root", "str", None,
     "Persistent state: images, containers, volumes (default /var/lib/berth)"),
    (("--exec-root",), "exec-root", "str", None,
     "Run-time state: the socket, monitors, container state (default /run/berth)"),
    (("--config-dir",), "config-dir", "str", None,
     "Policy files: authz.json, trust policy, daemon.json (default /etc/berth)"),
    (("--group",), "group", "str", "berth",
     "Group that may use the unix socket (mode 0660)"),
    (("--log-level", "-l"), "log-level", "str", "info",
     "Logging level on stderr: debug, info, warn, error or fatal"),
    (("-D", "--debug"), "debug", "bool", False, "Same as --log-level debug"),
    (("--default-runtime",), "default-runtime", "str", "berth",
     "OCI runtime of containers that name none (berth, or one of --add-runtime)"),
    (("--add-runtime",), "runtimes", "map", {},
     'Another OCI runtime, NAME=PATH, repeatable (daemon.json: "runtimes": {"runc": {"path": "/usr/sbin/runc"}})'),
    (("--storage-driver",), "storage-driver", "str", None,
     "overlay or vfs (default overlay where the data root allows it)"),
    (("--log-opt",), "log-opts", "map", {},
     "Default options of the containers' logs: max-size=10m, max-file=3"),
    (("--tls",), "tls", "bool", False, "Use TLS on tcp:// hosts; implied by --tlsverify"),
    (("--tlsverify",), "tlsverify", "bool", False,
     "Use TLS and require client certificates signed by --tlscacert"),
    (("--tlscacert",), "tlscacert", "str", None, "CA that signs the clients' certificates"),
    (("--tlscert",), "tlscert", "str", None, "The daemon's TLS certificate"),
    (("--tlskey",), "tlskey", "str", None, "The daemon's TLS key"),
    (("--insecure-tcp",), "insecure-tcp", "bool", False,
     "Allow tcp:// without TLS (gives root to whoever reaches the port)"),
    (("--authz-policy",), "authz-policy", "str", None,
     "Authorization policy file (default <config-dir>/authz.json if it exists; docs/authz.md); "
     'daemon.json\'s "authorization-plugins": ["FILE"] names it too'),
    (("--audit-log",), "audit-log", "str", None,
     "Where every state-changing request is recorded (default <data-root>/audit.log)"),
    (("--trust-policy",), "trust-policy", "str", None,
     "Image signature policy (default <config-dir>/trust.json if it exists)"),
    (("--init-path",), "init-path", "str", "/usr/bin/tini-static",
     "The init that --init runs in containers (Debian's tini-static; none if it is missing)"),
    (("--userns-remap",), "userns-remap", "str", None,
     "auto: each container gets a uid/gid range of its own; UID:GID:SIZE: every container "
     "maps root to that range"),
    (("--icc",), "icc", "bool", False,
     "Allow traffic between containers on the default bridge (berth's default: off)"),
    (("--ip-forward",), "ip-forward", "bool", True,
     "Turn the host's IPv4 forwarding on while containers need it"),
    (("--ip-masq",), "ip-masq", "bool", True, "Masquerade the bridges' traffic to the outside"),
    (("--mtu",), "mtu", "int", 1500, "MTU of the containers' interfaces"),
    (("--bip",), "bip", "str", None, "The default bridge's address, e.g. 172.17.0.1/16"),
    (("--fixed-cidr",), "fixed-cidr", "str", None,
     "The containers' addresses on the default bridge, e.g. 172.17.1.0/24"),
    (("-b", "--bridge"), "bridge", "str", None, "Name of the default bridge (default berth0)"),
    (("--ipv6",), "ipv6", "bool", False,
     "A dual-stack default bridge (needs --fixed-cidr-v6)"),
    (("--fixed-cidr-v6",), "fixed-cidr-v6", "str", None,
     "The default bridge's IPv6 subnet, e.g. fd12:3456:789a:1::/64"),
    (("--no-dns-forward",), "no-dns-forward", "bool", False,
     "The embedded resolver answers container names only (NXDOMAIN otherwise)"),
    (("--loopback-registries-only",), "loopback-registries-only", "bool", False,
     "Refuse pulls and pushes to registries not on loopback"),
    (("--rootless-host-loopback",), "rootless-host-loopback", "bool", False,
     "Rootless: let containers reach the host's 127.0.0.1 as 10.0.2.2"),
    (("--monitor",), "monitor", "str", "",
     "Each container's monitor: a berth-monitor binary (default: the one beside berthd), "
     "or none for the Python shim"),
    (("--cgroup-parent",), "cgroup-parent", "str", "/berth",
     "Cgroup under which containers go (HostConfig.CgroupParent overrides)"),
    (("--live-restore",), "live-restore", "bool", True,
     "Containers keep running while the daemon is down (always: their monitors hold them)"),
    (("--http-header-timeout",), "http-header-timeout", "int", 30,
     "Seconds an API client has to send a request head"),
    (("--http-idle-timeout",), "http-idle-timeout", "int", 300,
     "Seconds an idle API connection is kept open"),
    (("--http-body-timeout",), "http-body-timeout", "int", 60,
     "Seconds a request body may stall (or trickle below 1 KiB/s after that)"),
    (("--max-connections",), "max-connections", "int", 0,
     "API connections served at once; past it only /_ping (0: from the fd limit, at most 4096)"),
)
# Docker's key for the same thing under another name
ALIASES = {"authorization-plugins": "authz-policy"}


def _bool(text):
    v = str(text).lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parser():
    p = argparse.ArgumentParser(
        prog="berthd", usage="berthd [OPTIONS]",
        description="berth's container engine daemon (Docker Engine API)",
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=36, width=100),
        epilog="Every option but --config-file can also be set in daemon.json under the "
               "name shown in docs/configuration.md (Docker's names where Docker has the "
               "option); a flag overrides the file.", argument_default=argparse.SUPPRESS)
    for flags, _key, kind, _default, text in OPTIONS:
        longest = max(flags, key=len)
        kw = {"dest": longest.lstrip("-").replace("-", "_"), "help": text}
        if kind == "bool":
            kw.update(nargs="?", const=True, type=_bool, metavar="bool")
        elif kind in ("list", "map"):
            kw.update(action="append", metavar="list" if kind == "list" else "key=value")
        elif kind == "int":
            kw.update(type=int, metavar="int")
        else:
            kw.update(metavar="string")
        p.add_argument(*flags, **kw)
    return p


def parse_args(argv):
    """Only the options the command line gives (the file fills the rest)."""
    return parser().parse_args(argv)


def _where(key, from_file, path):
    return f'{path}: key "{key}"' if from_file else f"--{key}"


def _check(key, kind, value, where):
    """A JSON value of the file, as the flag's parser would give it."""
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {json.dumps(value)}")
    elif kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {json.dumps(value)}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {json.dumps(value)}")
    elif kind == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {json.dumps(value)}")
    elif kind == "map":
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {json.dumps(value)}")
    return value


def read_file(path, required):
    """daemon.json -> {dest: value}; {} when it is absent and not required."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"--config-file {path}: no such file") from None
        return {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read", errno=e.errno) from None
    try:
        doc = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object of options")
    by_key = {key: (flags, kind) for flags, key, kind, _, _ in OPTIONS if key}
    out = {}
    for key, value in doc.items():
        name = ALIASES.get(key, key)
        if name not in by_key:
            raise ConfigError(f'{path}: unknown key "{key}"',
                              hint="known keys: " + ", ".join(sorted(by_key)))
        flags, kind = by_key[name]
        where = _where(key, True, path)
        if key == "authorization-plugins":
            value = _authz_plugins(value, where)
        elif key == "runtimes":
            value = _runtimes(value, where)
        else:
            _check(key, kind, value, where)
        out[max(flags, key=len).lstrip("-").replace("-", "_")] = (value, where)
    return out


def _authz_plugins(value, where):
    """Docker names authorization plugins; berth has one built-in policy
    engine, so the list names its policy file."""
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], str) \
            or not value[0].startswith("/"):
        raise ConfigError(f"{where}: berth has no plugins; give the path of a berth policy "
                          f'file, e.g. ["/etc/berth/authz.json"] (docs/authz.md)')
    return value[0]


def _runtimes(value, where):
    if not isinstance(value, dict):
        raise ConfigError(f'{where}: expected {{"NAME": {{"path": "/path/to/runtime"}}}}')
    out = {}
    for name, spec in value.items():
        path = spec.get("path") if isinstance(spec, dict) else None
        if not isinstance(path, str) or not path:
            raise ConfigError(f'{where}: runtime "{name}": expected {{"path": "/path/to/runtime"}}')
        out[name] = path
    return out


def _pairs(items, flag):
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        out[k] = v
    return out


def settle(args, rootless_mode, default_dirs):
    """Fill every option: the command line, else daemon.json, else the
    default; then check the values. default_dirs: (data, exec, config)."""
    given = vars(args)
    data, run, conf = default_dirs
    config_dir = given.get("config_dir")
    path = given.get("config_file")
    file_opts = read_file(path or os.path.join(config_dir or conf, "daemon.json"),
                          required=path is not None)
    if config_dir is None and "config_dir" in file_opts:
        config_dir = file_opts["config_dir"][0]
    out = argparse.Namespace(config_file=path)
    where = {}
    for flags, key, kind, default, _ in OPTIONS:
        dest = max(flags, key=len).lstrip("-").replace("-", "_")
        if dest == "config_file":
            continue
        if dest in given:
            value = given[dest]
            where[dest] = max(flags, key=len)
            if kind == "map":
                value = _pairs(value, max(flags, key=len))
        elif dest in file_opts:
            value, where[dest] = file_opts[dest]
        else:
            value = type(default)(default) if isinstance(default, (list, dict)) else default
            where[dest] = max(flags, key=len)
        setattr(out, dest, value)
    out.data_root = out.data_root or data
    out.exec_root = out.exec_root or run
    out.config_dir = config_dir or conf
    if rootless_mode:
        out.group = None
    if where.get("init_path") == "--init-path" and "init_path" not in given \
            and not os.path.exists(out.init_path or ""):
        out.init_path = None   # the default, and Debian's tini is not installed
    if out.debug:
        out.log_level = "debug"
    _validate(out, where)
    out.where = where
    return out


def _validate(o, where):
    if o.log_level not in LOG_LEVELS:
        raise ConfigError(f"{where['log_level']}: {o.log_level!r} is not a level: "
                          f"one of {', '.join(LOG_LEVELS)}")
    if not 68 <= o.mtu <= 65535:
        raise ConfigError(f"{where['mtu']}: {o.mtu} is not an MTU (68 to 65535)")
    for h in o.host:
        if not h.startswith(("unix://", "tcp://", "fd://")):
            raise ConfigError(f"{where['host']}: {h!r}: expected unix:///path, tcp://host:port "
                              "or fd://")
    for dest in ("bip", "fixed_cidr"):
        value = getattr(o, dest)
        if value:
            try:
                ipaddress.ip_interface(value)
            except ValueError:
                raise ConfigError(f"{where[dest]}: {value!r} is not an address/prefix like "
                                  "172.17.0.1/16") from None
    if not o.live_restore:
        raise ConfigError(f"{where['live_restore']}: berth's containers always outlive the "
                          "daemon (their monitors hold them); remove the option")
    for key in ("max-size", "max-file"):
        o.log_opt.setdefault(key, {"max-size": "0", "max-file": "1"}[key])
    unknown = set(o.log_opt) - {"max-size", "max-file"}
    if unknown:
        raise ConfigError(f"{where['log_opt']}: unknown log option {sorted(unknown)[0]!r}: "
                          "known options are max-size and max-file")
