"""The embedded resolver's socket ends with its network: a network removed
and made again on the same gateway answers again at once (the old socket,
held by a thread blocked in recvfrom, kept port 53 bound before)."""
import os
import socket
import struct
import threading

import pytest

from berth.engine.network import dns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="port 53 needs root")


def ask(gw, name):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        s.sendto(struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + b"\0\1\0\1",
                 (gw, 53))
        return socket.inet_ntoa(s.recv(512)[-4:])
    finally:
        s.close()


def test_gateway_reused_after_network_removed():
    # a loopback address of this test's own: nothing else binds it
    gw = "127.77.%d.1" % (os.getpid() % 250)
    r = dns.Resolver()
    try:
        r.update({gw: {"first": "10.9.0.2"}})
        assert ask(gw, "first") == "10.9.0.2"
        r.update({})                                   # the network is removed
        r.update({gw: {"second": "10.9.0.3"}})         # and one made on its gateway
        assert ask(gw, "second") == "10.9.0.3"
        assert len([t for t in threading.enumerate()
                    if t.name == f"dns-{gw}"]) == 1
    finally:
        r.close()
    assert not [t for t in threading.enumerate() if t.name == f"dns-{gw}"]
