"""One client connection of the Engine API, parsed by h11 (strict
HTTP/1.1, no I/O of its own).

Its life: the event loop (server.py) reads the request head without a
thread; a complete head goes to a worker thread, which reads the body,
runs the handler, writes the answer and hands the connection back to the
loop to wait for the next request (or closes it). A hijacked connection
(attach, exec) leaves HTTP: the handler owns the socket until it returns.

Limits: the head must arrive within header_timeout of its first byte, an
idle connection is closed after idle_timeout, a body that stalls for
body_timeout or trickles in slower than MIN_BODY_RATE after it is cut,
a client that does not read its answer for write_timeout is dropped.
Streaming answers (logs -f, events, stats, pull) have no deadline."""
import email.utils
import http
import json
import select
import socket
import ssl
import time

import h11

from berth.api.errors import BadRequest
from berth.errors import BerthError
from berth.api.http import Headers, Peer, Request, Response, split_target

MAX_HEAD = 256 << 10
MIN_BODY_RATE = 1024       # bytes/s, averaged, once body_timeout has passed
DRAIN_LIMIT = 64 << 20     # unread body bytes skipped to keep a connection


class Limits:
    def __init__(self, header_timeout=30.0, idle_timeout=300.0, body_timeout=60.0,
                 write_timeout=300.0, max_connections=4096):
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self.write_timeout = write_timeout
        self.max_connections = max_connections


class BodyTimeout(BadRequest):
    pass


class ClientGone(BerthError, BrokenPipeError):
    """The client of a hijacked connection left: an OSError to code that
    relays, and no bug to report (a berth error) if it reaches the app."""


class _Guarded:
    """Writes to a client that left raise ClientGone."""
    __slots__ = ()

    def sendall(self, data, *flags):
        try:
            return super().sendall(data, *flags)
        except (BrokenPipeError, ConnectionResetError):
            raise ClientGone("attach: the client closed the connection") from None

    def send(self, data, *flags):
        try:
            return super().send(data, *flags)
        except (BrokenPipeError, ConnectionResetError):
            raise ClientGone("attach: the client closed the connection") from None


class _HijackedSocket(_Guarded, socket.socket):
    __slots__ = ()


class _HijackedTLSSocket(_Guarded, ssl.SSLSocket):
    __slots__ = ()


def error_bytes(status, message):
    """A complete answer in Docker's error shape, for a connection that is
    closed after it (nothing h11 could frame: the request was not one)."""
    body = json.dumps({"message": message}).encode() + b"\n"
    reason = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ \
        else "Error"
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, sock, address, server, limits):
        self.sock = sock
        self.address = address
        self.server = server
        self.limits = limits
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.peer = None
        self.over_limit = False
        self.state = "head"          # handshake, head, busy, linger
        self.deadline = 0.0
        self.head_started = None     # when the first byte of this head came
        self.tls = isinstance(sock, ssl.SSLSocket)
        self._body_bytes = 0
        self._body_started = 0.0
        self.broken = False
        self.body_failed = False

    def fileno(self):
        return self.sock.fileno()

    # -- in the loop (non-blocking) -------------------------------------
    def wait_for_head(self, now):
        self.state = "head"
        self.head_started = None
        self.deadline = now + (min(5.0, self.limits.header_timeout) if self.over_limit
                               else self.limits.idle_timeout)

    def feed(self, data, now):
        """Bytes read by the loop. Returns an h11 event: a Request, or
        None while more is needed; raises h11.RemoteProtocolError."""
        if data and self.head_started is None:
            self.head_started = now
            self.deadline = min(self.deadline, now + self.limits.header_timeout)
        self.h11.receive_data(data)
        return self.next_head()

    def next_head(self):
        ev = self.h11.next_event()
        if ev is h11.NEED_DATA:
            return None
        if isinstance(ev, h11.ConnectionClosed):
            raise ConnectionResetError("the client closed the connection")
        if isinstance(ev, h11.Request):
            return ev
        raise h11.RemoteProtocolError(f"unexpected {type(ev).__name__} before a request")

    # -- in a worker thread (blocking) ------------------------------------
    def serve(self, ev):
        """Runs one request to its end. True: the connection can take
        another request; False: close it; None: it is closed already."""
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in ev.headers)
        method = ev.method.decode("ascii", "replace")
        if self.peer is None:
            self.peer = Peer.of(self.sock, self.address)
        if "content-length" in headers and "transfer-encoding" in headers:
            # two framings of one body: the way requests are smuggled past a proxy
            return self._refuse(400, "request has both Content-Length and Transfer-Encoding")
        try:
            path, version, query = split_target(ev.target.decode("latin-1"))
        except ValueError as e:
            return self._refuse(400, f"request target: {e}")
        if self.over_limit and path != "/_ping":
            return self._refuse(503, f"too many connections: berthd serves at most "
                                     f"{self.limits.max_connections} at once; try again later")
        req = Request(self, method, path, version, query, headers, self.peer)
        self._body_bytes, self._body_started = 0, time.monotonic()
        resp = self.server.app(req)
        if req.hijacked:
            self.close()
            return None
        keep = not self.body_failed
        if keep and self.h11.their_state is h11.SEND_BODY:
            try:
                self._drain()
            except (BadRequest, OSError):
                keep = False
        if self.h11.their_state is h11.ERROR:
            keep = False
        self.send(resp, method)
        if self.over_limit or not keep or self.broken:
            return False
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False

    def _refuse(self, status, message):
        self._write(error_bytes(status, message))
        return False

    def _drain(self):
        left = DRAIN_LIMIT
        while left > 0:
            part = self.read_body()
            if not part:
                return
            left -= len(part)
        raise BadRequest("request body: too much left unread")

    def read_body(self):
        """The next piece of the body, b"" at its end. BadRequest for a
        malformed body or one that does not come."""
        h = self.h11
        while True:
            if h.their_state is not h11.SEND_BODY:
                return b""
            try:
                ev = h.next_event()
            except h11.RemoteProtocolError as e:
                self.body_failed = True
                raise BadRequest(f"request body: {e}") from None
            if isinstance(ev, h11.Data):
                self._body_bytes += len(ev.data)
                return bytes(ev.data)
            if isinstance(ev, h11.EndOfMessage):
                return b""
            if ev is h11.NEED_DATA:
                if h.client_is_waiting_for_100_continue:
                    self._write(h.send(h11.InformationalResponse(status_code=100, headers=[])))
                try:
                    h.receive_data(self._recv_body())
                except BadRequest:
                    self.body_failed = True   # answered, then closed: never drained
                    raise
                continue
            raise BadRequest(f"request body: unexpected {type(ev).__name__}")

    def _recv_body(self):
        lim = self.limits
        elapsed = time.monotonic() - self._body_started
        if elapsed > lim.body_timeout and self._body_bytes < MIN_BODY_RATE * elapsed:
            raise BodyTimeout(f"request body: arriving slower than {MIN_BODY_RATE} bytes/s")
        self.sock.settimeout(lim.body_timeout)
        try:
            return self.sock.recv(1 << 16)
        except (socket.timeout, ssl.SSLWantReadError):
            raise BodyTimeout(f"request body: nothing came for {lim.body_timeout:g}s") from None
        except OSError as e:
            raise BadRequest(f"request body: {e.strerror or e}") from None

    def _write(self, data):
        self.sock.settimeout(self.limits.write_timeout)
        self.sock.sendall(data)

    def send(self, resp, method):
        if resp is None:
            resp = Response(500, b'{"message":"the handler gave no answer"}\n')
        headers = [("Content-Type", resp.content_type)] if resp.content_type else []
        headers += [("Api-Version", self.server.api_version), ("Docker-Experimental", "false"),
                    ("Ostype", "linux"), ("Server", "berthd"),
                    ("Date", email.utils.formatdate(usegmt=True))]
        headers += [(k, str(v)) for k, v in resp.headers.items()]
        body = resp.body
        fixed = isinstance(body, (bytes, bytearray))
        if fixed and resp.status not in (204, 304) and resp.status >= 200:
            headers.append(("Content-Length", str(len(body))))
        if self.h11.their_state is h11.ERROR or self.over_limit or self.body_failed:
            headers.append(("Connection", "close"))
        reason = http.HTTPStatus(resp.status).phrase.encode() \
            if resp.status in http.HTTPStatus._value2member_map_ else b""
        try:
            self._write(self.h11.send(h11.Response(status_code=resp.status, headers=headers,
                                                   reason=reason)))
            if fixed:
                if body and method != "HEAD" and resp.status not in (204, 304):
                    self._write(self.h11.send(h11.Data(data=bytes(body))))
            else:
                self._stream(body, method)
            self._write(self.h11.send(h11.EndOfMessage()))
        except (OSError, h11.LocalProtocolError):
            # the client left (or cannot be answered any more): close
            self.broken = True
        finally:
            close = getattr(body, "close", None)
            if not fixed and close:
                close()

    def _stream(self, body, method):
        for chunk in body:
            if method == "HEAD":
                break
            if chunk:
                # a stream has no deadline, one write that does not move has
                self._write(self.h11.send(h11.Data(data=bytes(chunk))))
            elif self._peer_gone():
                # an idle stream (logs -f, events) whose client left
                raise ConnectionResetError("client gone")

    def _peer_gone(self):
        """True if the client closed its end (readable with nothing to read)."""
        try:
            if not select.select([self.sock], [], [], 0)[0]:
                return False
            # the raw socket under TLS too: an EOF is an EOF
            return socket.socket.recv(self.sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def hijack(self, content_type):
        """For Request.hijack: the body read to its end, 101 (or a plain
        200 head) sent, the socket blocking without timeouts."""
        h = self.h11
        if h.their_state is h11.SEND_BODY:
            self._drain()
        if h.their_state is h11.MIGHT_SWITCH_PROTOCOL:
            self._write(h.send(h11.InformationalResponse(
                status_code=101, reason=b"UPGRADED",
                headers=[("Content-Type", content_type), ("Connection", "Upgrade"),
                         ("Upgrade", "tcp")])))
        else:
            self._write(f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\r\n".encode())
        self.sock.settimeout(None)
        # same layout: the class is swapped in place for the handler
        self.sock.__class__ = _HijackedTLSSocket if self.tls else _HijackedSocket
        return self.sock, h.trailing_data[0]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

