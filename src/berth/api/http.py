"""What a route handler sees of HTTP: a Request (method, path, query,
headers, body, hijack) and the Response it returns. The wire side (h11,
the event loop, timeouts) is in connection.py and server.py.

A Response whose body is an iterator is sent chunked, one chunk per item,
flushed at once (logs -f, events, stats, pull progress). Handlers that
hijack call req.hijack() and return None: the connection is theirs and is
closed afterwards."""
import json
import re
import socket
import struct
from urllib.parse import parse_qs, urlsplit, unquote

from berth.api.errors import BadRequest, HTTPError

MAX_JSON = 16 << 20
# Deeper than any Engine API body; json's C decoder would otherwise stop
# at the interpreter's recursion limit with a RecursionError (a 500)
MAX_JSON_DEPTH = 256
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


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def loads(data, what="request body"):
    """JSON from a client, with the depth bounded: BadRequest naming
    `what` for malformed or too deeply nested input."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        depth = top = 0
        for ch in _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
            depth += 1 if ch in b"[{" else -1
            top = max(top, depth)
        if top > MAX_JSON_DEPTH:
            raise BadRequest(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadRequest(f"{what}: JSON nested too deeply") from None
    except ValueError as e:
        raise BadRequest(f"{what}: malformed JSON: {e}") from None


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


class Headers:
    """Request headers, looked up without regard to case; repeated
    headers are joined with commas."""

    def __init__(self, pairs=()):
        self._d = {}
        for name, value in pairs:
            k = name.lower()
            self._d[k] = f"{self._d[k]}, {value}" if k in self._d else value

    def get(self, name, default=None):
        return self._d.get(name.lower(), default)

    def __getitem__(self, name):
        return self._d.get(name.lower())

    def __contains__(self, name):
        return name.lower() in self._d

    def items(self):
        return self._d.items()


class Request:
    """conn: the connection's side that reads the body and hijacks
    (connection.Connection)."""

    def __init__(self, conn, method, path, version, query, headers, peer):
        self.conn = conn
        self.method = method
        self.path = path
        self.version = version
        self.query = query
        self.headers = headers
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
        obj = loads(v, f"query parameter {name}")
        return default if obj is None else obj   # null: Go's nil map, as if absent

    # -- body ---------------------------------------------------------
    def stream(self):
        """The request body as a file-like object (length-delimited or
        chunked), for large uploads such as image archives."""
        if self._reader is None:
            self._reader = BodyReader(self.conn)
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
        obj = loads(data)
        if obj is None and default is not None:
            return default   # Go decodes null into a zero value, as if nothing was sent
        if default is not None and not isinstance(obj, type(default)):
            raise BadRequest(f"request body: expected a JSON {type(default).__name__}")
        return obj

    # -- hijack -------------------------------------------------------
    def hijack(self, content_type=RAW_STREAM):
        """Answers 101 (or 200 to clients that did not ask to upgrade)
        and hands over the socket, blocking and without timeouts. Bytes
        the client sent past the request come back in the second value
        (peek/read1, as stream.buffered reads them)."""
        sock, early = self.conn.hijack(content_type)
        self.hijacked = True
        return sock, Leftover(early)


class Leftover:
    """The bytes a client sent right after a hijacked request."""

    def __init__(self, data):
        self.data = data

    def peek(self, n=1):
        return self.data

    def read1(self, n=-1):
        n = len(self.data) if n is None or n < 0 else n
        out, self.data = self.data[:n], self.data[n:]
        return out


class BodyReader:
    """The request body as a file (read(n)); framing, limits and timeouts
    are the connection's."""

    def __init__(self, conn):
        self.conn = conn
        self.pending = b""

    def read(self, n=-1):
        """Up to n bytes (all with n < 0), fewer only at the end."""
        parts, have = [self.pending], len(self.pending)
        self.pending = b""
        while n is None or n < 0 or have < n:
            part = self.conn.read_body()
            if not part:
                break
            parts.append(part)
            have += len(part)
        data = b"".join(parts)
        if n is not None and 0 <= n < len(data):
            data, self.pending = data[:n], data[n:]
        return data

    def read1(self, n=-1):
        if not self.pending:
            self.pending = self.conn.read_body()
        n = len(self.pending) if n is None or n < 0 else n
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def drain(self):
        self.pending = b""
        while self.conn.read_body():
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
