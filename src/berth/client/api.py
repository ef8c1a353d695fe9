"""A minimal Engine API client: HTTP/1.1 over AF_UNIX or TCP (optionally
mutual TLS), one connection per request (`Connection: close`), JSON bodies,
chunked streaming reads, and hijacked connections for attach/exec.

Hijack: the request carries `Connection: Upgrade` and `Upgrade: tcp`; the
daemon answers 101 (200 from daemons that ignore the upgrade) and the socket
becomes a raw byte pipe. Without a TTY the daemon multiplexes stdout and
stderr: each frame is an 8-byte header [stream, 0, 0, 0, size (uint32 BE)]
followed by size bytes (stream 0 stdin, 1 stdout, 2 stderr)."""
import json
import os
import socket

# the newest API this client speaks, and the oldest it will fall back to:
# it asks the daemon (/_ping's API-Version header) and uses the lower one,
# as the docker CLI does, so a dockerd 20.10 (1.41) is spoken to at 1.41
API_VERSION = "1.43"
MIN_API_VERSION = "1.24"
DEFAULT_HOST = "unix:///run/berth/berth.sock"


def default_host(env):
    """root: the system daemon; anyone else: their rootless daemon's socket
    when one is there (berthd's XDG_RUNTIME_DIR or /tmp fallback)."""
    uid = os.geteuid()
    if uid == 0:
        return DEFAULT_HOST
    for run in (env.get("XDG_RUNTIME_DIR"), f"/tmp/berth-run-{uid}"):
        if run and os.path.exists(os.path.join(run, "berth", "berth.sock")):
            return "unix://" + os.path.join(run, "berth", "berth.sock")
    return DEFAULT_HOST
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


class APIError(Exception):
    """The daemon answered with an error status; str() is its message."""

    def __init__(self, status, message):
        self.status = status
        super().__init__(message)


class ConnectError(Exception):
    """The daemon could not be reached."""


def quote(value, safe=b""):
    return "".join(chr(b) if b in _SAFE or b in safe else "%%%02X" % b for b in str(value).encode())


def query_string(params):
    parts = []
    for k, v in (params or {}).items():
        if v is None:
            continue
        for item in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(item, bool):
                item = int(item)
            elif isinstance(item, dict):
                item = json.dumps(item, separators=(",", ":"))
            parts.append(f"{quote(k)}={quote(item)}")
    return "?" + "&".join(parts) if parts else ""


class Response:
    """Status line and headers read; the body is read on demand."""

    def __init__(self, sock, rfile):
        self.sock, self.rfile = sock, rfile
        line = rfile.readline(65537)
        if not line:
            raise ConnectError("the daemon closed the connection without an answer")
        parts = line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ConnectError(f"malformed answer from the daemon: {line[:80]!r}")
        self.status = int(parts[1])
        self.headers = {}
        while True:
            h = rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        n = self.headers.get("content-length")
        self.remaining = int(n) if n is not None and not self.chunked else None
        if self.status in (101, 204, 304):
            self.remaining = 0

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def chunks(self, size=65536):
        """The body, piece by piece, as the daemon sends it."""
        r = self.rfile
        if self.chunked:
            while True:
                line = r.readline(1024)
                if not line:
                    return
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while r.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                while n:
                    data = r.read1(min(n, size)) if hasattr(r, "read1") else r.read(min(n, size))
                    if not data:
                        return
                    n -= len(data)
                    yield data
                r.readline(16)
        elif self.remaining is not None:
            while self.remaining > 0:
                data = r.read1(min(self.remaining, size))
                if not data:
                    return
                self.remaining -= len(data)
                yield data
        else:
            while True:
                data = r.read1(size)
                if not data:
                    return
                yield data

    def read(self):
        return b"".join(self.chunks())

    def json(self):
        data = self.read()
        self.close()
        return json.loads(data) if data.strip() else None

    def json_stream(self):
        """Concatenated or newline-separated JSON objects, as they come."""
        dec = json.JSONDecoder()
        buf = ""
        tail = b""
        try:
            for data in self.chunks():
                data = tail + data
                try:
                    text = data.decode()
                    tail = b""
                except UnicodeDecodeError:
                    cut = len(data) - 3
                    text, tail = data[:cut].decode("utf-8", "replace"), data[cut:]
                buf += text
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        obj, end = dec.raw_decode(buf)
                    except ValueError:
                        break
                    buf = buf[end:]
                    yield obj
        finally:
            self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Hijacked:
    """A raw two-way pipe after an upgrade: recv() / send() / close_write()."""

    def __init__(self, sock, rfile, content_type):
        self.sock, self.rfile, self.content_type = sock, rfile, content_type

    def recv(self, n=65536):
        try:
            return self.rfile.read1(n)
        except (ConnectionResetError, OSError):
            return b""

    def send(self, data):
        self.sock.sendall(data)

    def close_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def frames(self):
        """(stream, bytes) pairs of a multiplexed stream."""
        buf = b""
        while True:
            while len(buf) < 8:
                data = self.recv()
                if not data:
                    return
                buf += data
            kind, size = buf[0], int.from_bytes(buf[4:8], "big")
            buf = buf[8:]
            while len(buf) < size:
                data = self.recv(max(65536, size - len(buf)))
                if not data:
                    if buf:
                        yield kind, buf
                    return
                buf += data
            yield kind, buf[:size]
            buf = buf[size:]


def demux(chunks):
    """(stream, bytes) from an iterator of byte pieces in the 8-byte framing."""
    buf = b""
    for data in chunks:
        buf += data
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            yield buf[0], buf[8:8 + size]
            buf = buf[8 + size:]


class Client:
    def __init__(self, host=None, tls=False, tlsverify=False, cacert=None, cert=None, key=None):
        env = os.environ
        self.host = host or env.get("BERTH_HOST") or env.get("DOCKER_HOST") or default_host(env)
        self.tls = tls or tlsverify
        self.tlsverify = tlsverify
        self.cacert, self.cert, self.key = cacert, cert, key
        # DOCKER_API_VERSION pins the version and skips the negotiation
        self.version = env.get("BERTH_API_VERSION") or env.get("DOCKER_API_VERSION") or None
        if self.version and not _version_tuple(self.version):
            raise ConnectError(f"DOCKER_API_VERSION {self.version!r}: expected a version like 1.41")

    @property
    def prefix(self):
        if self.version is None:
            self.version = self.negotiate()
        return f"/v{self.version}"

    def negotiate(self):
        """The API version to speak: the daemon's, if older than ours."""
        s, rfile = self.send("GET", "/_ping", versioned=False)
        try:
            resp = Response(s, rfile)
        except OSError as e:
            s.close()
            raise ConnectError(f"the daemon's answer did not arrive: {e}") from None
        server = resp.header("api-version") or MIN_API_VERSION
        resp.close()
        if not _version_tuple(server):
            return API_VERSION
        if _version_tuple(server) < _version_tuple(MIN_API_VERSION):
            raise ConnectError(f"the daemon at {self.host} speaks API {server}; berth needs "
                               f"{MIN_API_VERSION} or later")
        return min(server, API_VERSION, key=_version_tuple)

    # -- connection ----------------------------------------------------
    def connect(self):
        host = self.host
        try:
            if host.startswith("unix://"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(host[len("unix://"):])
                return s
            if host.startswith(("tcp://", "https://", "http://")):
                hostport = host.split("://", 1)[1].split("/", 1)[0]
                name, _, port = hostport.rpartition(":")
                if not name:
                    name, port = hostport, "2376" if self.tls else "2375"
                name = name.strip("[]")
                s = socket.create_connection((name, int(port)))
                if self.tls or host.startswith("https://"):
                    s = self._wrap(s, name)
                return s
        except PermissionError:
            raise ConnectError(
                f"permission denied while connecting to the berth daemon at {host}: the socket "
                "is for root and the 'berth' group; add yourself to it (sudo usermod -aG berth "
                "$USER, then log in again) or run berth as root") from None
        except OSError as e:
            raise ConnectError(f"cannot connect to the berth daemon at {host}: "
                               f"{e.strerror or e} (is berthd running? start it with "
                               "'systemctl start berth' or 'berthd &')") from None
        raise ConnectError(f"unsupported host {host!r}: use unix:///path or tcp://host:port")

    def _wrap(self, s, name):
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.tlsverify:
            ctx.load_verify_locations(self.cacert) if self.cacert else ctx.load_default_certs()
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx.wrap_socket(s, server_hostname=name)

    # -- requests ------------------------------------------------------
    def send(self, method, path, params=None, body=None, headers=None, upgrade=False,
             versioned=True):
        """Sends the request and returns (socket, rfile) before reading the
        answer. body: dict/list (JSON), bytes, or a file object (chunked)."""
        prefix = self.prefix if versioned else ""
        s = self.connect()
        from berth import __version__
        hdrs = {"Host": "berth", "User-Agent": "berth-cli/" + __version__}
        data = None
        stream = None
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, (bytes, bytearray)):
            data = bytes(body)
            hdrs["Content-Type"] = "application/x-tar"
        elif body is not None:
            stream = body
            hdrs["Content-Type"] = "application/x-tar"
            hdrs["Transfer-Encoding"] = "chunked"  # as docker sends files
        if data is not None:
            hdrs["Content-Length"] = str(len(data))
        elif stream is None and method in ("POST", "PUT"):
            hdrs["Content-Length"] = "0"
        if upgrade:
            hdrs["Connection"] = "Upgrade"
            hdrs["Upgrade"] = "tcp"
        else:
            hdrs["Connection"] = "close"
        hdrs.update(headers or {})
        target = prefix + quote(path, safe=b"/:@") + query_string(params)
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        try:
            s.sendall(head.encode() + b"\r\n" + (data or b""))
            if stream is not None:
                while True:
                    piece = stream.read(1 << 16)
                    if not piece:
                        break
                    s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered early (an error); read it below
        except OSError as e:  # TLS refusals surface at the first write
            s.close()
            raise ConnectError(f"cannot talk to the berth daemon at {self.host}: {e}") from None
        return s, s.makefile("rb")

    def request(self, method, path, params=None, body=None, headers=None):
        s, rfile = self.send(method, path, params, body, headers)
        return self.answer(s, rfile, method)

    @staticmethod
    def answer(s, rfile, method="POST"):
        try:
            resp = Response(s, rfile)
        except OSError as e:
            s.close()
            raise ConnectError(f"the daemon's answer did not arrive: {e}") from None
        if method == "HEAD":
            resp.remaining, resp.chunked = 0, False
        if resp.status >= 400:
            data = resp.read()
            resp.close()
            raise APIError(resp.status, error_message(data, resp.status))
        return resp

    def get(self, path, **params):
        return self.request("GET", path, params).json()

    def post(self, path, body=None, **params):
        return self.request("POST", path, params, body).json()

    def delete(self, path, **params):
        return self.request("DELETE", path, params).json()

    def hijack(self, method, path, params=None, body=None):
        s, rfile = self.send(method, path, params, body, upgrade=True)
        resp = self.answer(s, rfile)
        if resp.status not in (101, 200):
            resp.close()
            raise APIError(resp.status, f"unexpected answer to an attach: {resp.status}")
        return Hijacked(s, rfile, resp.header("content-type", ""))


def _version_tuple(text):
    try:
        return tuple(int(p) for p in text.split("."))
    except (AttributeError, ValueError):
        return ()


def error_message(data, status):
    try:
        obj = json.loads(data)
        if isinstance(obj, dict) and "message" in obj:
            return str(obj["message"])
    except ValueError:
        pass
    text = data.decode("utf-8", "replace").strip()
    return text or f"HTTP status {status}"
