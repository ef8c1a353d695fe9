"""berthd's composition root: options (berth.daemon_config: flags and
/etc/berth/daemon.json) -> Engine -> API app -> listeners.

    berthd [-H unix:///run/berth/berth.sock] [-H tcp://0.0.0.0:2376 --tlsverify
           --tlscacert ca.pem --tlscert cert.pem --tlskey key.pem] [-H fd://]
           [--config-file /etc/berth/daemon.json] [--log-level info] ...   (berthd --help)

The log goes to stderr, one line an event with a timestamp and a level
(logfmt, as dockerd's): time="..." level=info msg="..."."""
import logging
import os
import pwd
import signal
import socket
import sys
import time

from berth.daemon_config import parse_args, settle
from berth.errors import BerthError, ConfigError
from berth.sys import rootless

log = logging.getLogger("berth")


def http_limits(args):
    """The HTTP layer's bounds. Each connection costs a descriptor: the
    soft fd limit is raised to the hard one (no privilege needed) and a
    quarter of it is kept for everything else berthd opens."""
    import resource
    from berth.api.connection import Limits
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    cap = max(64, min(4096, soft * 3 // 4 - 256))
    for name in ("http_header_timeout", "http_idle_timeout", "http_body_timeout"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')}: must be a positive number of seconds")
    if args.max_connections < 0:
        raise ConfigError("--max-connections: must be positive")
    return Limits(header_timeout=args.http_header_timeout,
                  idle_timeout=args.http_idle_timeout,
                  body_timeout=args.http_body_timeout,
                  max_connections=min(args.max_connections or cap, cap))


def _userns_remap(text):
    if not text:
        return None
    if text in ("auto", "default"):
        return "auto"
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or int(parts[0]) == 0 \
            or int(parts[2]) == 0:
        raise ConfigError(f"--userns-remap {text!r}: expected auto or UID:GID:SIZE "
                          "(a non-root range)")
    return tuple(int(p) for p in parts)


def _default_dirs(rootless_mode):
    if rootless_mode:
        uid, _ = rootless.outer_ids()
        home = os.environ.get("HOME") or pwd.getpwuid(uid).pw_dir
        return rootless.default_dirs(uid, home)
    return "/var/lib/berth", "/run/berth", "/etc/berth"


class _Logfmt(logging.Formatter):
    def format(self, record):
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace("\\", "\\\\").replace('"', '\\"')
        level = {"WARNING": "warning", "CRITICAL": "fatal"}.get(record.levelname,
                                                               record.levelname.lower())
        return f'time="{t}.{int(record.msecs):03d}Z" level={level} msg="{msg}"'


def setup_logging(level):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Logfmt())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
                   "error": logging.ERROR, "fatal": logging.CRITICAL}[level])


def build(args):
    from berth.api import audit, authz
    from berth.api.app import App, Router
    from berth.api.routes import register_all
    from berth.engine.core import Config, Engine
    from berth.engine.containers.manager import parse_size
    from berth.engine.paths import Paths

    runtimes = dict(args.add_runtime)
    logopt = args.log_opt
    paths = Paths(args.data_root, args.exec_root, args.config_dir)
    rootless_mode = rootless.active()
    if rootless_mode and args.userns_remap:
        raise ConfigError("--userns-remap: a rootless daemon already runs in a user "
                          "namespace of its own; there is no range left to remap into")
    # the policy applies from the moment the file exists (no restart needed)
    if args.trust_policy and not os.path.exists(args.trust_policy):
        raise ConfigError(f"--trust-policy {args.trust_policy}: no such file")
    trust = args.trust_policy or paths.trust_policy
    cfg = Config(runtimes=runtimes, default_runtime=args.default_runtime,
                 storage_driver=args.storage_driver,
                 log_max_size=parse_size(logopt["max-size"], f"{args.where['log_opt']} max-size"),
                 log_max_files=_int(logopt["max-file"], f"{args.where['log_opt']} max-file"),
                 trust_policy=trust,
                 init_path=args.init_path, cgroup_parent=args.cgroup_parent,
                 rootless=rootless_mode, run_root=paths.run, monitor=args.monitor)
    if cfg.default_runtime not in cfg.runtimes:
        raise ConfigError(f"{args.where['default_runtime']} {cfg.default_runtime!r}: unknown "
                          f"runtime", hint="known: " + ", ".join(sorted(cfg.runtimes)))
    cfg.loopback_registries_only = args.loopback_registries_only
    cfg.userns_remap = _userns_remap(args.userns_remap)
    cfg.daemon_options = vars(args)   # what `berth audit` checks
    cfg.icc = args.icc
    cfg.dns_forward = not args.no_dns_forward
    cfg.ip_forward = args.ip_forward
    cfg.ip_masq = args.ip_masq
    cfg.mtu = args.mtu
    cfg.bip, cfg.fixed_cidr, cfg.bridge_name = args.bip, args.fixed_cidr, args.bridge
    cfg.ipv6, cfg.fixed_cidr_v6 = args.ipv6, args.fixed_cidr_v6
    cfg.host_loopback = args.rootless_host_loopback
    engine = Engine(paths, cfg)
    policy = authz.load(args.authz_policy or paths.authz_policy,
                        required=args.authz_policy is not None)
    log_path = args.audit_log or paths.audit_log
    app = App(Router(), authorize=policy.check if policy else None,
              audit=audit.AuditLog(log_path).record)
    register_all(app.router, engine)
    return engine, app, paths


def _int(text, where):
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a number") from None


def listeners(args, app, paths):
    hosts = args.host or ["unix://" + paths.socket]
    out = []
    try:
        _listen(hosts, args, app, out)
    except BaseException:
        close_all(out)   # a refused TCP listener must not leave the socket behind
        raise
    return out


def close_all(servers):
    for s in servers:
        s.server_close()
        addr = s.server_address
        # systemd's sockets are systemd's to remove
        if isinstance(addr, str) and os.path.exists(addr) and not getattr(s, "inherited", False):
            os.unlink(addr)


def systemd_sockets():
    """The listening sockets systemd passed (LISTEN_FDS, from fd 3 on)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    n = int(os.environ.get("LISTEN_FDS") or 0)
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)   # not for the monitors and runtimes we start
    return [socket.socket(fileno=3 + i) for i in range(n)]


def _inherited(sock, app):
    from berth.api import server
    if sock.family != socket.AF_UNIX:
        raise ConfigError("-H fd://: berthd takes only unix sockets from systemd (TCP needs "
                          "TLS: use -H tcp://... --tlsverify)")
    srv = server.Listener(sock, app)
    srv.inherited = True
    return srv


def notify(state):
    """sd_notify(3): tell systemd (Type=notify) we are ready or stopping."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), addr)
    except OSError as e:
        log.warning("could not notify systemd: %s", e)


def _listen(hosts, args, app, out):
    from berth.api import server
    for h in hosts:
        if h.startswith("fd://"):
            socks = systemd_sockets()
            if not socks:
                raise ConfigError("-H fd://: systemd passed no sockets (start berthd through "
                                  "berth.socket, or use -H unix:///run/berth/berth.sock)")
            out.extend(_inherited(s, app) for s in socks)
        elif h.startswith("unix://"):
            out.append(server.unix_server(h[len("unix://"):], app, args.group))
        elif h.startswith("tcp://"):
            tls = None
            if args.tlsverify or args.tlscacert:
                tls = server.tls_context(args.tlscacert, args.tlscert, args.tlskey)
            out.append(server.tcp_server(h[len("tcp://"):], app, tls, args.insecure_tcp))
        else:
            raise ConfigError(f"-H {h}: expected unix:///path, tcp://host:port or fd://")


def main(argv=None):
    given = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if os.geteuid() != 0:
            args = settle(given, True, _default_dirs(True))
            return rootless.reexec(os.path.abspath(args.exec_root))
        mode = rootless.active()
        args = settle(given, mode, _default_dirs(mode))
        setup_logging(args.log_level)
        limits = http_limits(args)
        engine, app, paths = build(args)
        srvs = listeners(args, app, paths)
    except BerthError as e:
        print(f"berthd: {e}", file=sys.stderr)
        return 1
    with open(paths.pidfile + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(paths.pidfile + ".tmp", paths.pidfile)
    engine.restore()

    def stop(signum, frame):
        raise SystemExit(0)
    import faulthandler
    # `kill -USR1 <berthd>` dumps every thread's stack to berthd's stderr
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("berthd %s listening on %s (data root %s, exec root %s)", _version(),
             ", ".join(args.host or ["unix://" + paths.socket]), paths.root, paths.run)
    notify("READY=1")
    from berth.api.server import serve_all
    try:
        serve_all(srvs, limits)
    finally:
        notify("STOPPING=1")
        log.info("berthd stopping; containers keep running (live restore)")
        # containers keep running: their shims hold them (live restore)
        running = any(c.running for c in engine.containers.list(all=True))
        engine.close()
        if engine.config.rootless and not running:
            rootless.release_keeper(paths.run)
        close_all(srvs)
        try:
            os.unlink(paths.pidfile)
        except OSError:
            pass
    return 0


def _version():
    from berth import __version__
    return __version__
