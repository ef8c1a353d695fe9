"""Detach keys in the daemon, as dockerd: on an attach (or exec) with a
terminal, ctrl-p ctrl-q (or the detachKeys asked for) ends the stream and
leaves the container running, a partial match goes through, a bad key
list is a 400; the same raw requests go to berthd and to a dockerd of
the test's own."""
import json
import os
import socket
import time

import pytest

import peer_util


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")


def hijack(sock_path, path, body=b"", send=b"", wait=5.0):
    """-> (status line, bytes received, closed by the daemon?)"""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.settimeout(wait)
    try:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                  .encode() + body)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        status = head.split(b"\r\n")[0].decode().split(" ", 2)[1]
        if status != "101":
            return status, b"", True
        time.sleep(0.3)
        s.sendall(send)
        out = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return status, out, True
                out += chunk
        except socket.timeout:
            return status, out, False
    finally:
        s.close()


def detaching(sock, docker, api):
    seen = {}
    docker("run", "-d", "-it", "--name", "dk", "alpine", "cat", check=True)
    try:
        q = "/containers/dk/attach?stream=1&stdin=1&stdout=1&stderr=1"
        seen["default keys"] = hijack(sock, q, send=b"\x10\x11")
        seen["own keys"] = hijack(sock, q + "&detachKeys=ctrl-x,y", send=b"a\x18y")[0::2]
        partial = hijack(sock, q, send=b"a\x10b\n", wait=2)
        # (what the terminal echoes depends on timing: only that it went through)
        seen["partial"] = (partial[0], b"a\x10b" in partial[1], partial[2])
        seen["bad keys"] = hijack(sock, q + "&detachKeys=bogus")[0]
        seen["still running"] = docker("inspect", "-f", "{{.State.Status}}", "dk").stdout
        status, created = api("POST", "/containers/dk/exec",
                              {"Cmd": ["cat"], "Tty": True, "AttachStdin": True,
                               "AttachStdout": True, "DetachKeys": "ctrl-e"})
        seen["exec created"] = status
        detached = hijack(sock, f"/exec/{created['Id']}/start",
                          json.dumps({"Tty": True}).encode(), send=b"\x05")
        seen["exec detach"] = detached[0::2]
        # dockerd 20.10 kills the exec it detaches from (later dockerds and
        # Docker's documentation: it runs on); berth keeps it running
        seen["exec running"] = (detached[1], api("GET", f"/exec/{created['Id']}/json",
                                                 None)[1]["Running"])
        seen["bad exec keys"] = api("POST", "/containers/dk/exec",
                                    {"Cmd": ["true"], "DetachKeys": "nope"})[0]
    finally:
        docker("rm", "-f", "dk")
    return seen


def test_detach_keys_as_dockerd(berthd, dockerd):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")

    ours = detaching(berthd.sock, berthd.docker, lambda *a: peer_util.api(berthd, *a))
    theirs = detaching(dockerd.sock, dockerd.docker, lambda *a: peer_util.api(dockerd, *a))
    assert ours.pop("exec running") == (b"", True)
    assert theirs.pop("exec running")[1] is False
    assert ours == theirs
    assert ours["default keys"] == ("101", b"", True) and ours["exec detach"] == ("101", True)
    assert ours["partial"] == ("101", True, False)
