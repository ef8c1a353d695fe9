"""Listening sockets and the event loop that serves them: the Unix socket
(root:berth, 0660) and, only with mutual TLS, TCP. Plain TCP hands root to
anyone who can reach the port, so it needs an explicit force flag and is
announced loudly.

One thread runs the loop (a selector): it accepts, does TLS handshakes,
reads request heads and enforces the header and idle deadlines, so an
idle or slow connection costs a file descriptor and no thread. A complete
head goes to a worker thread (connection.Connection.serve), which hands
the connection back when the answer is out.

At max_connections a new client is still accepted, but it is served
/_ping only (so `docker info`-style health checks keep working) and
anything else gets 503; past that, new connections are closed at once."""
import collections
import errno
import grp
import os
import selectors
import socket
import ssl
import sys
import threading
import time
import traceback

import h11

from berth.api.app import API_VERSION
from berth.api.connection import Connection, Limits, error_bytes
from berth.errors import BerthError, ConfigError

BACKLOG = 4096
OVERFLOW = 256        # beyond max_connections: /_ping only, then refused
LINGER = 2.0          # after an error answer, unread input is discarded this long


class Listener:
    def __init__(self, sock, app, tls=None):
        self.socket = sock
        self.app = app
        self.tls = tls
        self.server_address = sock.getsockname()
        self.api_version = API_VERSION

    def server_close(self):
        self.socket.close()


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
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o117)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise BerthError(f"{path}: cannot listen: {e.strerror}") from None
    finally:
        os.umask(old)
    sock.listen(BACKLOG)
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
    return Listener(sock, app)


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
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, int(port)), family=family, backlog=BACKLOG)
    except OSError as e:
        raise BerthError(f"--host tcp://{addr}: cannot listen: {e.strerror}") from None
    return Listener(sock, app, tls)


def serve_all(servers, limits=None):
    Loop(servers, limits or Limits()).run()


class Loop:
    def __init__(self, servers, limits):
        self.servers = servers
        self.limits = limits
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.back = collections.deque()    # (conn, keep) from workers
        self.watched = set()               # connections the loop reads from
        self.open = 0
        self.paused = {}                   # listener -> when to accept again

    def run(self):
        for srv in self.servers:
            srv.socket.setblocking(False)
            self.sel.register(srv.socket, selectors.EVENT_READ, srv)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        next_sweep = 0.0
        while True:
            events = self.sel.select(timeout=0.5)
            now = time.monotonic()
            for key, mask in events:
                d = key.data
                if d is None:
                    self._drain_wake()
                elif isinstance(d, Listener):
                    self._accept(d, now)
                else:
                    self._ready(d, mask, now)
            self._take_back(now)
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + 0.5

    # -- accepting ----------------------------------------------------
    def _accept(self, srv, now):
        lim = self.limits
        for _ in range(256):
            try:
                sock, addr = srv.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # out of descriptors: stop accepting for a moment, not spin
                    self.sel.unregister(srv.socket)
                    self.paused[srv] = now + 0.25
                return
            if self.open >= lim.max_connections + OVERFLOW:
                sock.close()
                continue
            sock.setblocking(False)
            if srv.tls:
                try:
                    sock = srv.tls.wrap_socket(sock, server_side=True,
                                               do_handshake_on_connect=False)
                except (ssl.SSLError, OSError):
                    sock.close()
                    continue
            conn = Connection(sock, addr, srv, lim)
            conn.over_limit = self.open >= lim.max_connections
            self.open += 1
            if srv.tls:
                conn.state = "handshake"
                conn.deadline = now + min(lim.header_timeout, 10.0)
            else:
                conn.wait_for_head(now)
            self.sel.register(sock, selectors.EVENT_READ, conn)
            self.watched.add(conn)

    # -- reading heads ------------------------------------------------
    def _ready(self, conn, mask, now):
        if conn.state == "handshake":
            if not self._handshake(conn, now):
                return
        if conn.state == "linger":
            try:
                if not conn.sock.recv(1 << 16):
                    self._drop(conn)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except OSError:
                self._drop(conn)
            return
        try:
            data = conn.sock.recv(1 << 16)
            while conn.tls and conn.sock.pending():
                data += conn.sock.recv(conn.sock.pending())
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            self._drop(conn)
            return
        self._head(conn, lambda: conn.feed(data, now), now)

    def _handshake(self, conn, now):
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
            return False
        except ssl.SSLWantWriteError:
            self.sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
            return False
        except (ssl.SSLError, OSError, ValueError):
            self._drop(conn)
            return False
        self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
        conn.wait_for_head(now)
        return conn.sock.pending() > 0

    def _head(self, conn, step, now):
        try:
            ev = step()
        except h11.RemoteProtocolError as e:
            status = e.error_status_hint if 400 <= e.error_status_hint < 600 else 400
            self._reject(conn, status, f"bad request: {e}", now)
            return
        except OSError:
            self._drop(conn)
            return
        if ev is not None:
            self._dispatch(conn, ev, now)

    def _dispatch(self, conn, ev, now):
        self.sel.unregister(conn.sock)
        self.watched.discard(conn)
        conn.state = "busy"
        conn.sock.setblocking(True)
        t = threading.Thread(target=self._work, args=(conn, ev), daemon=True,
                             name="http-" + ev.method.decode("ascii", "replace"))
        try:
            t.start()
        except RuntimeError:
            conn.sock.setblocking(False)
            self.sel.register(conn.sock, selectors.EVENT_READ, conn)
            self.watched.add(conn)
            self._reject(conn, 503, "berthd cannot start another worker; try again later", now)

    def _work(self, conn, ev):
        try:
            keep = conn.serve(ev)
        except (OSError, h11.LocalProtocolError):
            keep = False       # the client went away mid-answer
        except Exception:  # noqa: BLE001 - a bug in this layer: say so, keep serving
            print(f"berthd: connection {conn.peer.describe() if conn.peer else '?'}:",
                  file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            keep = False
        self.back.append((conn, keep))
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass

    def _drain_wake(self):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _take_back(self, now):
        while self.back:
            conn, keep = self.back.popleft()
            if keep is None:
                self.open -= 1       # hijacked: closed by its worker
                continue
            conn.sock.setblocking(False)
            self.sel.register(conn.sock, selectors.EVENT_READ, conn)
            self.watched.add(conn)
            if not keep:
                self._linger(conn, now)
                continue
            conn.wait_for_head(now)
            if conn.h11.trailing_data[0]:
                conn.head_started = now
                conn.deadline = min(conn.deadline, now + self.limits.header_timeout)
            # a pipelined request may be buffered already
            self._head(conn, conn.next_head, now)

    # -- ending ---------------------------------------------------------
    def _reject(self, conn, status, message, now):
        try:
            conn.sock.send(error_bytes(status, message))
        except (OSError, ValueError):
            pass
        self._linger(conn, now)

    def _linger(self, conn, now):
        """Half-close and read what the client still sends for a moment:
        closing with unread input would reset the connection and could
        lose the answer just sent."""
        conn.state = "linger"
        conn.deadline = now + LINGER
        try:
            socket.socket.shutdown(conn.sock, socket.SHUT_WR)
        except OSError:
            self._drop(conn)

    def _drop(self, conn):
        if conn in self.watched:
            self.watched.discard(conn)
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.close()
        self.open -= 1

    def _sweep(self, now):
        for srv, when in list(self.paused.items()):
            if now >= when:
                del self.paused[srv]
                self.sel.register(srv.socket, selectors.EVENT_READ, srv)
        for conn in [c for c in self.watched if c.deadline <= now]:
            if conn.state == "head" and conn.head_started is not None:
                self._reject(conn, 408, "request head not received within "
                                        f"{self.limits.header_timeout:g}s", now)
            else:
                self._drop(conn)
