"""berthd's composition root: options -> Engine -> API app -> listeners.

    berthd [-H unix:///run/berth/berth.sock] [-H tcp://0.0.0.0:2376 --tlsverify
           --tlscacert ca.pem --tlscert cert.pem --tlskey key.pem]
           [--data-root /var/lib/berth] [--exec-root /run/berth] [--config-dir /etc/berth]
           [--default-runtime berth] [--add-runtime name=path] [--storage-driver overlay|vfs]
           [--log-opt max-size=10m --log-opt max-file=3] [--group berth]
"""
import argparse
import os
import pwd
import signal
import sys

from berth.errors import BerthError, ConfigError
from berth.sys import rootless


def parse_args(argv):
    p = argparse.ArgumentParser(prog="berthd", description="berth's container engine daemon")
    p.add_argument("-H", "--host", action="append", default=[])
    # rootless: XDG dirs of the user (berth.rootless.default_dirs)
    p.add_argument("--data-root", default=None, help="default /var/lib/berth")
    p.add_argument("--exec-root", default=None, help="default /run/berth")
    p.add_argument("--config-dir", default=None, help="default /etc/berth")
    p.add_argument("--group", default="berth")
    p.add_argument("--default-runtime", default="berth")
    p.add_argument("--add-runtime", action="append", default=[])
    p.add_argument("--storage-driver", default=None)
    p.add_argument("--log-opt", action="append", default=[])
    p.add_argument("--tlsverify", action="store_true")
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("--insecure-tcp", action="store_true",
                   help="allow TCP without TLS (gives root to whoever reaches the port)")
    p.add_argument("--authz-policy", default=None)
    p.add_argument("--audit-log", default=None)
    p.add_argument("--trust-policy", default=None)
    p.add_argument("--init-path", default="/usr/bin/tini-static" if os.path.exists(
        "/usr/bin/tini-static") else None, help="init for --init (Debian's tini-static)")
    p.add_argument("--userns-remap", default=None,
                   help="auto: each container gets a uid/gid range of its own; "
                        "UID:GID:SIZE: every container maps root to that range")
    p.add_argument("--icc", action="store_true",
                   help="allow traffic between containers on the default bridge (off: berth's default)")
    p.add_argument("--ip-forward", default="true", choices=("true", "false"))
    p.add_argument("--ip-masq", default="true", choices=("true", "false"))
    p.add_argument("--mtu", type=int, default=1500)
    p.add_argument("--bip", default=None, help="the default bridge's address, e.g. 172.17.0.1/16")
    p.add_argument("--fixed-cidr", default=None, help="containers' addresses on the default bridge")
    p.add_argument("-b", "--bridge", default=None, help="name of the default bridge")
    p.add_argument("--no-dns-forward", action="store_true",
                   help="the embedded resolver answers container names only (NXDOMAIN otherwise)")
    p.add_argument("--loopback-registries-only", action="store_true",
                   help="refuse pulls and pushes to registries not on loopback")
    p.add_argument("--rootless-host-loopback", action="store_true",
                   help="rootless: let containers reach the host's 127.0.0.1 as 10.0.2.2")
    p.add_argument("--monitor", default="",
                   help="each container's monitor: a berth-monitor binary (default: bin/'s), "
                        "or none for the Python shim")
    p.add_argument("--cgroup-parent", default="/berth",
                   help="cgroup under which containers go (HostConfig.CgroupParent overrides)")
    return p.parse_args(argv)


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


def _fill_dirs(args, rootless_mode):
    if rootless_mode:
        uid, _ = rootless.outer_ids()
        home = os.environ.get("HOME") or pwd.getpwuid(uid).pw_dir
        data, run, conf = rootless.default_dirs(uid, home)
        args.group = None
    else:
        data, run, conf = "/var/lib/berth", "/run/berth", "/etc/berth"
    args.data_root = args.data_root or data
    args.exec_root = args.exec_root or run
    args.config_dir = args.config_dir or conf


def build(args):
    from berth.api import audit, authz
    from berth.api.app import App, Router
    from berth.api.routes import register_all
    from berth.engine.core import Config, Engine
    from berth.engine.containers.manager import parse_size
    from berth.engine.paths import Paths

    runtimes = {}
    for item in args.add_runtime:
        name, eq, path = item.partition("=")
        if not eq or not name or not path:
            raise ConfigError(f"--add-runtime {item!r}: expected name=path")
        runtimes[name] = path
    log = {"max-size": "0", "max-file": "1"}
    for item in args.log_opt:
        k, eq, v = item.partition("=")
        if k not in log or not eq:
            raise ConfigError(f"--log-opt {item!r}: known options are max-size and max-file")
        log[k] = v
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
                 log_max_size=parse_size(log["max-size"], "--log-opt max-size"),
                 log_max_files=int(log["max-file"]), trust_policy=trust,
                 init_path=args.init_path, cgroup_parent=args.cgroup_parent,
                 rootless=rootless_mode, run_root=paths.run, monitor=args.monitor)
    if cfg.default_runtime not in cfg.runtimes:
        raise ConfigError(f"--default-runtime {cfg.default_runtime!r}: unknown runtime")
    cfg.loopback_registries_only = args.loopback_registries_only
    cfg.userns_remap = _userns_remap(args.userns_remap)
    cfg.daemon_options = vars(args)   # what `berth audit` checks
    cfg.icc = args.icc
    cfg.dns_forward = not args.no_dns_forward
    cfg.ip_forward = args.ip_forward == "true"
    cfg.ip_masq = args.ip_masq == "true"
    cfg.mtu = args.mtu
    cfg.bip, cfg.fixed_cidr, cfg.bridge_name = args.bip, args.fixed_cidr, args.bridge
    cfg.host_loopback = args.rootless_host_loopback
    engine = Engine(paths, cfg)
    policy = authz.load(args.authz_policy or paths.authz_policy,
                        required=args.authz_policy is not None)
    log_path = args.audit_log or paths.audit_log
    app = App(Router(), authorize=policy.check if policy else None,
              audit=audit.AuditLog(log_path).record)
    register_all(app.router, engine)
    return engine, app, paths


def listeners(args, app, paths):
    from berth.api import server
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
        if isinstance(addr, str) and os.path.exists(addr):
            os.unlink(addr)


def _listen(hosts, args, app, out):
    from berth.api import server
    for h in hosts:
        if h.startswith("unix://"):
            out.append(server.unix_server(h[len("unix://"):], app, args.group))
        elif h.startswith("tcp://"):
            tls = None
            if args.tlsverify or args.tlscacert:
                tls = server.tls_context(args.tlscacert, args.tlscert, args.tlskey)
            out.append(server.tcp_server(h[len("tcp://"):], app, tls, args.insecure_tcp))
        else:
            raise ConfigError(f"-H {h}: expected unix:///path or tcp://host:port")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if os.geteuid() != 0:
            _fill_dirs(args, True)
            return rootless.reexec(os.path.abspath(args.exec_root))
        _fill_dirs(args, rootless.active())
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
    print(f"berthd: listening on {', '.join(args.host or ['unix://' + paths.socket])}",
          file=sys.stderr, flush=True)
    from berth.api.server import serve_all
    try:
        serve_all(srvs)
    finally:
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
