"""HTTP/1.1 for the Engine API: requests, responses, chunked streams and
connection hijacking (attach and exec take over the socket, as Docker's
clients expect after `Upgrade: tcp`).

A handler gets a Request and returns a Response; a Response whose body is
an iterator is sent chunked, one chunk per item, flushed at once (logs -f,
events, stats, pull progress). Handlers that hijack call req.hijack() and
return None: the connection is theirs and is closed afterwards."""
import json
import socket
import struct
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit, unquote

from berth.api.errors import BadRequest, HTTPError

MAX_JSON = 16 << 20
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


class Response:
    def __init__(self, status=200, body=b"", content_type="application/json", headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


def json_response(obj, status=200, headers=None):
    return Response(status, json.dumps(obj).encode() + b"\n", headers=headers)


def empty(status=204):
    return Response(status, b"", content_type=None)


def json_stream(items):
    """Newline-delimited JSON, as Docker streams events, stats and progress.
    A None item becomes an empty chunk: nothing is sent, but the server
    checks that the client is still there."""
    for obj in items:
        yield b"" if obj is None else json.dumps(obj).encode() + b"\n"


class Peer:
    """Who is asking: SO_PEERCRED on the Unix socket, the certificate's
    subject over mutual TLS."""

    def __init__(self, uid=None, gid=None, pid=None, cert_subject=None, address=None):
        self.uid, self.gid, self.pid = uid, gid, pid
        self.cert_subject = cert_subject
        self.address = address

    def describe(self):
        if self.cert_subject:
            return f"tls:{self.cert_subject}@{self.address}"
        return f"uid={self.uid} gid={self.gid} pid={self.pid}"

    @classmethod
    def of(cls, conn, address):
        if getattr(conn, "family", None) == socket.AF_UNIX:
            try:
                raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                pid, uid, gid = struct.unpack("3i", raw)
                return cls(uid, gid, pid)
            except OSError:
                return cls()
        subject = None
        getpeercert = getattr(conn, "getpeercert", None)
        if getpeercert:
            cert = getpeercert() or {}
            for rdn in cert.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        subject = value
        return cls(cert_subject=subject, address=str(address))


class Request:
    def __init__(self, handler, method, path, version, query, peer):
        self.handler = handler
        self.method = method
        self.path = path
        self.version = version
        self.query = query
        self.headers = handler.headers
        self.peer = peer
        self.params = {}
        self._body = None
        self._reader = None
        self.hijacked = False

    # -- query string -------------------------------------------------
    def q(self, name, default=None):
        values = self.query.get(name)
        return values[0] if values else default   # Go's Form.Get: the first

    def qbool(self, name, default=False):
        v = self.q(name)
        if v is None:
            return default
        return v.lower() in ("1", "true", "yes")

    def qint(self, name, default=None):
        v = self.q(name)
        if v in (None, ""):
            return default
        try:
            return int(v)
        except ValueError:
            raise BadRequest(f"query parameter {name}: {v!r} is not an integer")

    def qjson(self, name, default=None):
        v = self.q(name)
        if not v:
            return default
        try:
            obj = json.loads(v)
        except ValueError as e:
            raise BadRequest(f"query parameter {name}: invalid JSON: {e}")
        return default if obj is None else obj   # null: Go's nil map, as if absent

    # -- body ---------------------------------------------------------
    def stream(self):
        """The request body as a file-like object (length-delimited or
        chunked), for large uploads such as image archives."""
        if self._reader is None:
            self._reader = _BodyReader(self.handler.rfile, self.headers)
        return self._reader

    def body(self, limit=MAX_JSON):
        if self._body is None:
            data = self.stream().read(limit + 1)
            if len(data) > limit:
                raise HTTPError(413, f"request body is larger than {limit} bytes")
            self._body = data
        return self._body

    def json(self, default=None, limit=MAX_JSON):
        data = self.body(limit)
        if not data.strip():
            if default is not None:
                return default
            raise BadRequest("request body: expected a JSON object, got nothing")
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise BadRequest(f"request body: malformed JSON: {e}")
        if obj is None and default is not None:
            return default   # Go decodes null into a zero value, as if nothing was sent
        if default is not None and not isinstance(obj, type(default)):
            raise BadRequest(f"request body: expected a JSON {type(default).__name__}")
        return obj

    # -- hijack -------------------------------------------------------
    def hijack(self, content_type=RAW_STREAM):
        """Answers 101 (or 200 to clients that did not ask to upgrade)
        and hands over the socket. Bytes the client already sent that sit
        in the read buffer come back as the second value."""
        h = self.handler
        upgrade = "upgrade" in (self.headers.get("Connection") or "").lower()
        if upgrade:
            head = (f"HTTP/1.1 101 UPGRADED\r\nContent-Type: {content_type}\r\n"
                    "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\r\n"
        h.wfile.write(head.encode())
        h.wfile.flush()
        self.hijacked = True
        h.close_connection = True
        return h.connection, h.rfile


class _BodyReader:
    def __init__(self, rfile, headers):
        self.rfile = rfile
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        try:
            self.left = int(headers.get("Content-Length") or 0)
        except ValueError:
            raise BadRequest("Content-Length: not a number")
        self.chunk_left = 0
        self.done = False

    def read(self, n=-1):
        if n is None or n < 0:
            parts = []
            while True:
                part = self.read(1 << 20)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        if not self.chunked:
            if self.left <= 0:
                return b""
            data = self.rfile.read(min(n, self.left))
            if not data:
                raise BadRequest("request body: connection closed early")
            self.left -= len(data)
            return data
        if self.done:
            return b""
        if self.chunk_left == 0:
            line = self.rfile.readline(1024)
            try:
                self.chunk_left = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest("request body: bad chunk header")
            if self.chunk_left == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
                return b""
        data = self.rfile.read(min(n, self.chunk_left))
        if not data:
            raise BadRequest("request body: connection closed early")
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            self.rfile.readline(1024)
        return data

    def drain(self):
        while self.read(1 << 16):
            pass


def split_target(target):
    """'/v1.43/containers/json?all=1' -> ('/containers/json', '1.43', query)."""
    parts = urlsplit(target)
    path = unquote(parts.path)
    version = None
    if path.startswith("/v"):
        head, _, rest = path[2:].partition("/")
        if head.replace(".", "", 1).isdigit() and "." in head:
            version, path = head, "/" + rest
    return path, version, parse_qs(parts.query, keep_blank_values=True)


class Handler(BaseHTTPRequestHandler):
    """One connection; self.server.app is the dispatcher (Request ->
    Response)."""
    protocol_version = "HTTP/1.1"
    server_version = "berthd"

    def log_message(self, fmt, *args):
        pass

    def _serve(self):
        path, version, query = split_target(self.path)
        peer = Peer.of(self.connection, self.client_address)
        req = Request(self, self.command, path, version, query, peer)
        resp = self.server.app(req)
        if req.hijacked:
            return
        if self.command in ("POST", "PUT", "DELETE"):
            # unread body would be parsed as the next request
            try:
                req.stream().drain()
            except Exception:
                self.close_connection = True
        self.send(resp)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def send(self, resp):
        self.send_response(resp.status)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        self.send_header("Api-Version", self.server.api_version)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        body = resp.body
        if isinstance(body, (bytes, bytearray)):
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in body:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                elif _peer_gone(self.connection):
                    # an idle stream (logs -f, events) whose client left
                    self.close_connection = True
                    return
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            close = getattr(body, "close", None)
            if close:
                close()


def _peer_gone(sock):
    """True if the client closed its end (readable with nothing to read)."""
    import select
    try:
        if not select.select([sock], [], [], 0)[0]:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def writer_stream(write, chunk=1 << 16):
    """Runs write(fileobj) in a thread and yields what it writes, so a
    tar of any size streams out without being held in memory. An error in
    write() ends the stream early (the client sees a truncated body)."""
    import os
    import threading
    r, w = os.pipe()

    def run():
        with os.fdopen(w, "wb") as f:
            try:
                write(f)
            except (BrokenPipeError, OSError):
                pass
            except Exception:  # noqa: BLE001 - reported by the truncated stream
                import traceback
                traceback.print_exc()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    with os.fdopen(r, "rb") as f:
        while True:
            data = f.read1(chunk) if hasattr(f, "read1") else f.read(chunk)
            if not data:
                break
            yield data
    t.join()
