"""Relaying a hijacked client connection to a container's stdio: the
shim's attach socket, an exec's pipes or its pty master. Docker's
multiplexed framing (8-byte header: stream, 0, 0, 0, big-endian length)
marks stdout and stderr when there is no TTY."""
import os
import selectors
import socket
import struct

STDIN, STDOUT, STDERR = 0, 1, 2
DEFAULT_DETACH_KEYS = b"\x10\x11"   # ctrl-p ctrl-q
DETACHED = "detached"
_CTRL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def detach_keys(text):
    """Docker's detach key list ("ctrl-p,ctrl-q", "a,ctrl-x") -> bytes;
    "" is the default, ctrl-p ctrl-q."""
    if not text:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in str(text).split(","):
        if len(key) == 1:
            out.append(ord(key))
        elif key.startswith("ctrl-") and len(key) == 6 and ("a" <= key[5].lower() <= "z"
                                                           or key[5] in _CTRL):
            c = key[5].lower()
            out.append(ord(c) - ord("a") + 1 if "a" <= c <= "z" else _CTRL[c])
        else:
            from berth.errors import ConfigError
            raise ConfigError(f"Invalid detach keys ({text}) provided")
    return bytes(out)


class Escape:
    """dockerd's escape proxy, byte by byte: the bytes of a partial match
    go through once it fails; a full match detaches and is not sent."""

    def __init__(self, keys):
        self.keys, self.pos = keys, 0

    def feed(self, data):
        """-> (bytes to pass on, detached?)"""
        out = bytearray()
        for b in data:
            if b == self.keys[self.pos]:
                self.pos += 1
                if self.pos == len(self.keys):
                    return bytes(out), True
                continue
            out += self.keys[:self.pos]
            out.append(b)
            self.pos = 0
        return bytes(out), False


def frame(stream, data):
    return struct.pack(">BxxxI", stream, len(data)) + data


def buffered(sock, rfile):
    """Bytes the HTTP layer already read past the request head."""
    if rfile is None:
        return b""
    sock.setblocking(False)
    try:
        data = rfile.peek(1 << 16)
        return rfile.read1(len(data)) if data else b""
    except (BlockingIOError, OSError, ValueError):
        return b""
    finally:
        sock.setblocking(True)


def _write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def relay(client, early, sources, sink, close_sink_on_eof=True, detach=None):
    """client: the hijacked socket. sources: [(fd, stream or None)] read
    until EOF and sent to the client (framed when stream is not None).
    sink: an fd (or socket) that gets what the client sends, or None.
    detach: the detach keys that end the relay (DETACHED is returned).
    Returns when every source has ended (True), or the client went (False)."""
    escape = Escape(detach) if detach and sink is not None else None
    sel = selectors.DefaultSelector()
    live = 0
    for fd, stream in sources:
        sel.register(fd, selectors.EVENT_READ, ("src", stream))
        live += 1
    sink_fd = sink.fileno() if isinstance(sink, socket.socket) else sink
    client_open = True
    if sink_fd is not None:
        if early:
            hit = False
            if escape:
                early, hit = escape.feed(early)
            try:
                _write_all(sink_fd, early)
            except OSError:
                pass
            if hit:
                sel.close()
                return DETACHED
        sel.register(client, selectors.EVENT_READ, ("client", None))
    try:
        while live:
            for key, _ in sel.select():
                kind, stream = key.data
                if kind == "client":
                    try:
                        data = client.recv(1 << 16)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(client)
                        client_open = False
                        if close_sink_on_eof:
                            _close_sink(sink)
                        continue
                    hit = False
                    if escape:
                        data, hit = escape.feed(data)
                    try:
                        _write_all(sink_fd, data)
                    except OSError:
                        pass
                    if hit:
                        return DETACHED
                    continue
                try:
                    data = os.read(key.fd, 1 << 16)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fd)
                    live -= 1
                    continue
                try:
                    client.sendall(frame(stream, data) if stream is not None else data)
                except OSError:
                    return False
        return True
    finally:
        sel.close()
        del client_open


def _close_sink(sink):
    if isinstance(sink, socket.socket):
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    elif sink is not None:
        try:
            os.close(sink)
        except OSError:
            pass
