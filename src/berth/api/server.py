"""Listening sockets: the Unix socket (root:berth, 0660) and, only with
mutual TLS, TCP. Plain TCP hands root to anyone who can reach the port,
so it needs an explicit force flag and is announced loudly."""
import grp
import os
import socket
import socketserver
import ssl
import sys
import threading

from berth.api.app import API_VERSION
from berth.api.http import Handler
from berth.errors import BerthError, ConfigError


class _Mixin(socketserver.ThreadingMixIn):
    daemon_threads = True
    block_on_close = False
    api_version = API_VERSION
    # `docker rm -f a b c ...` connects once per name, all at once
    request_queue_size = 512

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            return   # the client went away: nothing to report
        super().handle_error(request, client_address)


class UnixServer(_Mixin, socketserver.UnixStreamServer):
    pass


class TCPServer(_Mixin, socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self, address, handler, tls=None):
        self.tls = tls
        super().__init__(address, handler)

    def get_request(self):
        conn, addr = super().get_request()
        if self.tls:
            # the handshake happens in the connection's own thread: a client
            # that connects and says nothing must not stall the accept loop
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def finish_request(self, request, client_address):
        if self.tls:
            request.settimeout(30)
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):
                return
            request.settimeout(None)
        super().finish_request(request, client_address)



def unix_server(path, app, group="berth"):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            raise BerthError(f"{path}: another daemon is listening there")
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
        finally:
            probe.close()
    old = os.umask(0o117)
    try:
        srv = UnixServer(path, Handler)
    finally:
        os.umask(old)
    if group is None:
        # rootless: the socket is the user's alone
        os.chmod(path, 0o600)
    else:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            gid = 0
        os.chown(path, 0, gid)
        os.chmod(path, 0o660)
    srv.app = app
    return srv


def tls_context(ca, cert, key):
    for what, p in (("--tlscacert", ca), ("--tlscert", cert), ("--tlskey", key)):
        if not p or not os.path.exists(p):
            raise ConfigError(f"{what}: {p or '(not given)'} does not exist",
                              hint="TCP needs mutual TLS: --tlsverify with CA, cert and key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tcp_server(addr, app, tls=None, force_insecure=False):
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"--host tcp://{addr}: needs host:port")
    if tls is None:
        if not force_insecure:
            raise ConfigError(f"--host tcp://{addr}: refusing plain TCP",
                              hint="use --tlsverify --tlscacert --tlscert --tlskey, or "
                                   "--insecure-tcp if you really mean to give root to the network")
        print(f"WARNING: berthd is listening on tcp://{addr} WITHOUT TLS: anyone who can "
              "reach it controls this machine as root", file=sys.stderr, flush=True)
    srv = TCPServer((host.strip("[]") or "127.0.0.1", int(port)), Handler, tls)
    srv.app = app
    return srv


def serve_all(servers):
    threads = []
    for srv in servers[1:]:
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        threads.append(t)
    servers[0].serve_forever()
