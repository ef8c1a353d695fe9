"""Exec output framing as dockerd frames it, compared in the same test with a
dockerd of its own: the *start* request's Tty decides (multiplexed when it
says false or says nothing), whatever the exec was created with."""
import os
import struct

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemons run as root")


def _exec_output(d, cid, create_tty, start_body):
    ex = d.json("POST", f"/containers/{cid}/exec",
                {"Cmd": ["echo", "hello"], "AttachStdout": True, "AttachStderr": True,
                 "Tty": create_tty}, expect=201)
    status, headers, data = d.api("POST", f"/exec/{ex['Id']}/start", start_body)
    assert status == 200, data
    return headers.get("content-type"), data


def _frames(data):
    out = []
    while data:
        kind, size = struct.unpack(">BxxxL", data[:8])
        out.append((kind, data[8:8 + size]))
        data = data[8 + size:]
    return out


@pytest.fixture
def both_running(berthd, dockerd):
    cids = []
    for d in (berthd, dockerd):
        d.load("alpine-3.20")
        c = d.json("POST", "/containers/create", {"Image": "alpine:latest", "Cmd": ["sleep", "300"],
                                                  "HostConfig": {"NetworkMode": "none"}}, expect=201)
        d.json("POST", f"/containers/{c['Id']}/start", expect=204)
        cids.append(c["Id"])
    yield list(zip((berthd, dockerd), cids))
    dockerd.api("DELETE", f"/containers/{cids[1]}?force=1")


@pytest.mark.parametrize("create_tty,start_body,framed", [
    (True, {"Detach": False, "Tty": False}, True),   # a pty's output, multiplexed
    (True, {"Detach": False}, True),                 # Tty left out: false
    (False, {"Detach": False, "Tty": True}, False),  # pipes' output, raw
    (True, {"Detach": False, "Tty": True}, False),
])
def test_start_tty_decides_the_framing(both_running, create_tty, start_body, framed):
    seen = []
    for d, cid in both_running:
        # (the content type says multiplexed from API 1.42 on; dockerd 20.10 speaks 1.41)
        _, data = _exec_output(d, cid, create_tty, start_body)
        if framed:
            frames = _frames(data)
            assert {k for k, _ in frames} == {1} and b"".join(p for _, p in frames).strip() == b"hello"
        else:
            assert data.strip() == b"hello"
        seen.append(data.replace(b"\r\n", b"\n"))
    assert seen[0] == seen[1]
