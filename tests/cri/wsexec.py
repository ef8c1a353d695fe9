"""The client half of the CRI stream server's exec over a websocket, as
`kubectl exec` speaks it through the API server: protocol
v4.channel.k8s.io, each binary message one byte of channel (1 stdout,
2 stderr, 3 the final status as JSON) then the data. Enough for a command
without stdin; the stdlib has no websocket client, and this is ~60 lines.
Run as a program (inside the node's network namespace) it prints JSON."""
import base64
import json
import os
import socket
import struct
from urllib.parse import urlsplit

PROTOCOL = "v4.channel.k8s.io"


def run(url, timeout=30):
    """{1: stdout bytes, 2: stderr bytes}, and the status dict of channel 3."""
    u = urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET {u.path}?{u.query} HTTP/1.1\r\nHost: {u.netloc}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Sec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n").encode())
        f = sock.makefile("rb")
        status_line = f.readline().decode()
        if " 101 " not in status_line:
            raise AssertionError(f"exec stream refused: {status_line.strip()}")
        while f.readline() not in (b"\r\n", b""):
            pass
        out = {1: b"", 2: b""}
        status = {}
        for data in _messages(f):
            if not data:
                continue
            channel, body = data[0], data[1:]
            if channel == 3:
                status = json.loads(body) if body else {}
            elif channel in out:
                out[channel] += body
        return out, status
    finally:
        sock.close()


def _messages(f):
    """Whole messages until a close frame or the end of the stream."""
    message = b""
    while True:
        head = f.read(2)
        if len(head) < 2:
            return
        fin, opcode = head[0] & 0x80, head[0] & 0x0F
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", f.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", f.read(8))[0]
        payload = f.read(n)  # the server does not mask
        if opcode == 8:
            return
        if opcode in (0, 1, 2):
            message += payload
            if fin:
                yield message
                message = b""


def exit_code(status):
    """The command's exit code from a v4 status: Success, or a NonZeroExitCode
    failure whose causes carry ExitCode."""
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or ():
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    raise AssertionError(f"exec failed: {status}")


if __name__ == "__main__":
    # the stream server listens on the node's loopback: the tests run this
    # inside the node's network namespace (Node.in_netns)
    import sys
    streams, st = run(sys.argv[1])
    print(json.dumps({"stdout": streams[1].decode(errors="replace"),
                      "stderr": streams[2].decode(errors="replace"), "status": st}))
