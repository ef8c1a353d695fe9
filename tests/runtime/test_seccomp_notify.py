"""Seccomp user notification through a real agent, on both runtimes: the
runtime connects to linux.seccomp.listenerPath and sends the container's
state with the listener fd; the agent's answer is what the syscall returns,
also from an exec'd process."""
import errno
import fcntl
import json
import os
import socket
import struct
import threading
import time

import pytest

# struct seccomp_notif is 80 bytes, struct seccomp_notif_resp 24 (linux/seccomp.h)
NOTIF_RECV = 0xC0502100
NOTIF_SEND = 0xC0182101
SYS_MKDIR, SYS_MKDIRAT = 83, 258


class Agent:
    """Answers every notified syscall with ENOMEDIUM; records what it got."""

    def __init__(self, path):
        self.path = str(path)
        self.messages = []
        self.nrs = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                msg, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            self.messages.append(json.loads(msg))
            threading.Thread(target=self._answer, args=(fds[0],), daemon=True).start()

    def _answer(self, fd):
        try:
            while True:
                buf = bytearray(80)
                fcntl.ioctl(fd, NOTIF_RECV, buf)
                nid, _pid, _flags, nr = struct.unpack_from("=QIIi", buf)
                self.nrs.append(nr)
                resp = struct.pack("=QqiI", nid, 0, -errno.ENOMEDIUM, 0)
                try:
                    fcntl.ioctl(fd, NOTIF_SEND, bytearray(resp))
                except OSError:
                    pass  # the caller is gone
        except OSError:
            pass  # the container is gone: the listener hangs up
        finally:
            os.close(fd)

    def close(self):
        self.sock.close()


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path / "agent.sock")
    yield a
    a.close()


@pytest.mark.parametrize("nnp", [False, True])
def test_the_agent_answers_for_the_container(runtime, busybox_bundle, agent, nnp):
    b = busybox_bundle(args=["sleep", "60"], changes={
        "process.noNewPrivileges": nnp,
        "linux.seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": agent.path,
                          "listenerMetadata": "meta",
                          "syscalls": [{"names": ["mkdir", "mkdirat"],
                                        "action": "SCMP_ACT_NOTIFY"}]}})
    cid = runtime.new_id("notify")
    runtime.run(["run", "-d", "--bundle", b, cid])
    res = runtime.run(["exec", cid, "mkdir", "/tmp/made"], check=False)
    assert res.returncode == 1 and "No medium found" in res.stderr, res
    assert not (b / "rootfs" / "tmp" / "made").exists()
    first = agent.messages[0]
    assert first["fds"] == ["seccompFd"] and first["metadata"] == "meta"
    assert first["state"]["id"] == cid and first["pid"] == runtime.state(cid)["pid"]
    # one listener for the init, one for the exec (the agent's thread
    # records it; give it a moment on a loaded host)
    deadline = time.monotonic() + 5
    while len(agent.messages) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(agent.messages) == 2
    assert set(agent.nrs) <= {SYS_MKDIR, SYS_MKDIRAT} and agent.nrs


def test_no_agent_is_a_clear_error(runtime, busybox_bundle, tmp_path):
    b = busybox_bundle(args=["true"], changes={"linux.seccomp": {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": str(tmp_path / "nobody.sock"),
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}})
    res = runtime.run_bundle(b)
    assert res.returncode != 0 and "failed to connect with seccomp agent" in res.stderr, res
    if runtime.name == "berth":
        assert len(res.stderr.strip().splitlines()) == 1, res
