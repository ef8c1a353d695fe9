"""The API's HTTP layer against bad, slow and too many clients, byte for
byte over the Unix socket. Where dockerd's answer is the reference, the
same bytes go to a dockerd of the module's own (conftest's `dockerd`) and
both answers are compared; berthd must also answer in Docker's JSON error shape.

berthd runs here with short timeouts (2 s for a head or a stalled body,
4 s idle) so that the cuts are seen in a test's time."""
import json
import os
import socket
import time

import pytest

from daemons import private_berthd

HEADER_T, IDLE_T, BODY_T = 2, 4, 2


@pytest.fixture(scope="module")
def berthd():
    with private_berthd() as d:
        d.extra_args = ["--http-header-timeout", str(HEADER_T), "--http-idle-timeout",
                        str(IDLE_T), "--http-body-timeout", str(BODY_T)]
        d.restart()
        yield d


def connect(path, timeout=30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def exchange(path, data, timeout=20, drip=None):
    """Sends data (a byte at a time every `drip` seconds, if given) and
    reads until the daemon closes: (status, body, seconds, closed)."""
    s = connect(path, timeout)
    t0 = time.monotonic()
    out, closed = b"", False
    try:
        if drip:
            for b in data:
                try:
                    s.sendall(bytes([b]))
                except OSError:
                    break
                time.sleep(drip)
        else:
            s.sendall(data)
        while True:
            part = s.recv(65536)
            if not part:
                closed = True
                break
            out += part
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.") else None
    return status, out.partition(b"\r\n\r\n")[2], time.monotonic() - t0, closed


def json_message(body):
    msg = json.loads(body)["message"]
    assert isinstance(msg, str) and msg
    return msg


MALFORMED = {
    "garbage request line": b"\x16\x03\x01 nonsense\r\n\r\n",
    "no HTTP version": b"GET /_ping\r\n\r\n",
    "space in header name": b"GET /_ping HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    "negative chunk size": b"POST /containers/create HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                           b"\r\n-5\r\nhello\r\n0\r\n\r\n",
    "chunk size not hex": b"POST /containers/create HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "huge chunk extension": b"POST /containers/create HTTP/1.1\r\nHost: x\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n2;" + b"e" * (300 << 10)
                            + b"\r\n{}\r\n0\r\n\r\n",
    "bad Content-Length": b"POST /containers/create HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 12x\r\n\r\n{}",
    "huge header": b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (2 << 20) + b"\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_gets_400_and_close(berthd, dockerd, case):
    status, body, took, closed = exchange(berthd.sock, MALFORMED[case])
    ref = exchange(dockerd.sock, MALFORMED[case], timeout=10)[0]
    assert 400 <= status < 500, (case, status, body)
    # the reference refuses each one too: 4xx, a 500 (Debian's dockerd 20.10
    # for a negative chunk size) or a dropped connection; berthd always
    # says 4xx, in JSON
    assert ref is None or ref >= 400, (case, "dockerd", ref)
    json_message(body)
    assert closed and took < 10


def test_content_length_with_transfer_encoding_refused(berthd):
    # (dockerd lets Transfer-Encoding win; berthd refuses the smuggling shape)
    req = (b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
           b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
           b"2\r\n{}\r\n0\r\n\r\n")
    status, body, _, closed = exchange(berthd.sock, req)
    assert status == 400 and closed
    assert "Transfer-Encoding" in json_message(body)


def test_unknown_method_answers_json(berthd, dockerd):
    req = b"BREW /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    status, body, _, _ = exchange(berthd.sock, req, timeout=IDLE_T + 6)
    ref, _, _, _ = exchange(dockerd.sock, req, timeout=IDLE_T + 6)
    assert status in (404, 405) and ref in (404, 405), (status, ref)
    json_message(body)


def test_deep_json_is_400(berthd, dockerd):
    body = b"[" * 100000 + b"]" * 100000
    req = (b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body
    status, answer, _, _ = exchange(berthd.sock, req)
    ref, _, _, _ = exchange(dockerd.sock, req)
    assert status == 400 and ref >= 400, (status, ref, answer[:200])   # dockerd 20.10: 500
    assert "nested" in json_message(answer)
    filters = "[" * 5000
    status, answer, _, _ = exchange(berthd.sock, f"GET /containers/json?filters={filters} "
                                    "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status == 400, answer[:200]


def test_short_body_is_cut(berthd):
    req = (b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 100\r\n\r\n{\"Image\":")
    status, body, took, closed = exchange(berthd.sock, req, timeout=BODY_T + 20)
    assert status == 400 and closed, (status, body)
    assert BODY_T - 0.5 < took < BODY_T + 10
    assert "request body" in json_message(body)


def test_huge_chunk_size_is_cut(berthd):
    req = (b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n{}")
    status, body, took, closed = exchange(berthd.sock, req, timeout=BODY_T + 20)
    assert status == 400 and closed and took < BODY_T + 10, (status, body)


def test_slow_drip_head_is_cut(berthd):
    req = b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 40 + b"\r\n\r\n"
    status, body, took, closed = exchange(berthd.sock, req, timeout=HEADER_T + 20, drip=0.2)
    assert closed and took < HEADER_T + 5, took
    assert status == 408 and "head" in json_message(body)


def test_idle_connection_closed_but_stream_kept(berthd):
    idle = connect(berthd.sock)
    events = connect(berthd.sock)
    events.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    head = events.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    time.sleep(IDLE_T + HEADER_T + 1.5)
    assert idle.recv(10) == b""        # cut, and quietly
    idle.close()
    # the stream outlived every deadline: it still delivers
    berthd.json("POST", "/volumes/create", {"Name": "hardening-vol"})
    try:
        events.settimeout(20)
        got = b""
        while b"hardening-vol" not in got:
            part = events.recv(65536)
            assert part, "the events stream was closed"
            got += part
    finally:
        events.close()
        berthd.api("DELETE", "/volumes/hardening-vol")


def _threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def test_idle_connections_cost_no_thread(berthd):
    pid = berthd.proc.pid
    before = _threads(pid)
    events = connect(berthd.sock)
    events.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    assert events.recv(4096).startswith(b"HTTP/1.1 200")
    socks, refused = [], 0
    try:
        for _ in range(2000):
            try:
                socks.append(connect(berthd.sock, timeout=5))
            except OSError:
                refused += 1
        assert refused == 0
        assert _threads(pid) <= before + 3, (before, _threads(pid))
        t0 = time.monotonic()
        status, _, _ = berthd.api("GET", "/_ping", timeout=10)
        assert status == 200 and time.monotonic() - t0 < 2
    finally:
        for s in socks:
            s.close()
    t0 = time.monotonic()
    assert berthd.api("GET", "/_ping", timeout=10)[0] == 200
    assert time.monotonic() - t0 < 2
    # the stream is still there
    events.setblocking(False)
    try:
        assert events.recv(1) != b""
    except BlockingIOError:
        pass
    events.close()


def test_connection_bound_keeps_ping(berthd):
    berthd.extra_args = berthd.extra_args + ["--max-connections", "20"]
    berthd.restart()
    socks = []
    try:
        for _ in range(20):
            socks.append(connect(berthd.sock))
        time.sleep(0.3)
        assert berthd.api("GET", "/_ping", timeout=10)[0] == 200
        status, _, body = berthd.api("GET", "/containers/json", timeout=10)
        assert status == 503 and "too many connections" in json_message(body)
        for s in socks[:5]:
            s.close()
        del socks[:5]
        time.sleep(0.5)
        assert berthd.api("GET", "/containers/json", timeout=10)[0] == 200
    finally:
        for s in socks:
            s.close()
        berthd.extra_args = berthd.extra_args[:-2]
        berthd.restart()


def test_keep_alive_and_pipelining(berthd):
    s = connect(berthd.sock)
    try:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        got = b""
        while got.count(b"\r\n\r\nOK") < 3:
            part = s.recv(65536)
            assert part
            got += part
        assert got.count(b"HTTP/1.1 200") == 3
    finally:
        s.close()


def test_client_leaving_mid_stream_leaves_no_thread(berthd):
    pid = berthd.proc.pid
    before = _threads(pid)
    for _ in range(10):
        s = connect(berthd.sock)
        s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(4096)
        s.close()

    def settled():
        return _threads(pid) <= before
    deadline = time.monotonic() + 30
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert settled(), (before, _threads(pid))
    assert "Traceback" not in berthd.log()


def test_no_traceback_in_log(berthd):
    # last in the module: every case above went to this one daemon
    assert "Traceback" not in berthd.log()
