"""IPv6 in the network driver's pure parts: address choice, published-port
planning, the resolver's AAAA answers, the registry's dual-stack entries
and the bridge filter's NDP rules (no netlink, no nftables)."""
import socket
import struct

import pytest

from berth.errors import BerthError, ConfigError, Conflict
from berth.engine import networks
from berth.engine.network import dns, ipam, ports, rules

CFG6 = {"Subnet": "fd12:3456:789a:1::/64"}


def test_ipv6_addresses_in_order_and_static():
    assert ipam.allocate(CFG6, []) == "fd12:3456:789a:1::2"
    assert ipam.allocate(CFG6, ["10.0.0.2", "fd12:3456:789a:1::2"]) == "fd12:3456:789a:1::3"
    assert ipam.allocate(CFG6, [], "fd12:3456:789a:1::99") == "fd12:3456:789a:1::99"
    with pytest.raises(Conflict):
        ipam.allocate(CFG6, ["fd12:3456:789a:1::99"], "fd12:3456:789a:1::99")
    with pytest.raises(BerthError, match="--ip6"):
        ipam.allocate(CFG6, [], "10.0.0.5")


def test_mac_based_address_and_link_local_like_the_kernel():
    # dockerd's default-bridge rule, and the kernel's EUI-64 link-local
    assert ipam.from_mac(CFG6, "02:42:ac:11:00:02", []) == "fd12:3456:789a:1:0:242:ac11:2"
    assert ipam.from_mac(CFG6, "02:42:ac:11:00:02", ["fd12:3456:789a:1:0:242:ac11:2"]) is None
    assert ipam.from_mac({"Subnet": "fd00::/96"}, "02:42:ac:11:00:02", []) is None
    assert ipam.link_local("02:42:0a:e7:63:02") == "fe80::42:aff:fee7:6302"


def test_ports_on_both_families(monkeypatch):
    monkeypatch.setattr(ports, "_bindable", lambda ip, port, proto: True)
    hc = {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                           "81/tcp": [{"HostIp": "::", "HostPort": ""}]}}
    m = ports.plan(hc, {}, [], ipv6=True)
    assert [(x["host_ip"], x["host_port"], x["port"]) for x in m] == [
        ("0.0.0.0", 8080, 80), ("::", 8080, 80), ("::", 49153, 81)]
    shown = ports.shown(m, {})
    assert shown["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                               {"HostIp": "::", "HostPort": "8080"}]
    # one family's wildcard does not take the other's port
    others = [{"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 9000, "port": 1}]
    m = ports.plan({"PortBindings": {"80/tcp": [{"HostIp": "::", "HostPort": "9000"}]}}, {},
                   others, ipv6=True)
    assert m[0]["host_port"] == 9000
    with pytest.raises(Conflict, match=r"\[::\]:9000"):
        ports.plan({"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "9000"}]}}, {},
                   [dict(others[0], host_ip="::")], ipv6=True)


def test_ports_ipv6_refusals():
    with pytest.raises(ConfigError, match="route_localnet"):
        ports.plan({"PortBindings": {"80/tcp": [{"HostIp": "::1", "HostPort": "1"}]}}, {}, [],
                   ipv6=True)
    with pytest.raises(ConfigError, match="no IPv6 address"):
        ports.plan({"PortBindings": {"80/tcp": [{"HostIp": "::", "HostPort": "1"}]}}, {}, [])


def test_resolver_answers_aaaa():
    question = b"\x03web\x00" + struct.pack(">HH", 28, 1)
    reply = dns.answer(7, 0x0100, question, 0, "fd12::5")
    qid, flags, qd, an = struct.unpack(">HHHH", reply[:8])
    assert (qid, an, flags & 0xF) == (7, 1, 0)
    rr = reply[12 + len(question):]
    rtype, _, _, rdlen = struct.unpack(">HHIH", rr[2:12])
    assert (rtype, rdlen) == (28, 16)
    assert socket.inet_ntop(socket.AF_INET6, rr[12:28]) == "fd12::5"


def test_registry_dual_stack_entries(tmp_path):
    reg = networks.Networks(str(tmp_path))
    net = reg.create("d", enable_ipv6=True, ipam={"Config": [{"Subnet": "fd12:1::/64"},
                                                             {"Subnet": "10.9.9.0/24"}]})
    assert net["EnableIPv6"] is True
    assert net["IPAM"]["Config"] == [{"Subnet": "10.9.9.0/24", "Gateway": "10.9.9.1"},
                                     {"Subnet": "fd12:1::/64"}]
    auto = reg.create("a", enable_ipv6=True)["IPAM"]["Config"]
    assert ":" not in auto[0]["Subnet"] and auto[1]["Subnet"].startswith("fd")
    assert auto[1]["Subnet"].endswith("::/64")
    with pytest.raises(ConfigError, match="needs --ipv6"):
        reg.create("x", ipam={"Config": [{"Subnet": "fd12:2::/64"}]})
    with pytest.raises(Conflict):
        reg.create("y", enable_ipv6=True, ipam={"Config": [{"Subnet": "fd12:1::/80"}]})
    with pytest.raises(networks.NotSupported):
        reg.create("z", driver="macvlan", enable_ipv6=True)
    reg.set_default_ipv6("fd12:9::/64")
    bridge = reg.find("bridge")
    assert bridge["EnableIPv6"] and bridge["IPAM"]["Config"][-1] == {"Subnet": "fd12:9::/64"}
    reg.set_default_ipv6(None)
    assert not reg.find("bridge")["EnableIPv6"]
    assert all(":" not in c["Subnet"] for c in reg.find("bridge")["IPAM"]["Config"])


def test_bridge_filter_guards_ndp():
    ep = {"veth": "vb1", "mac": "02:42:0a:00:00:02", "ip": "10.0.0.2",
          "ip6": "fd12::2", "bridge": "br-x"}
    body = rules.bridge_rules({"c" * 64: {"endpoints": [ep]}}, {"br-x": {"icc": True}})
    text = str(body)
    assert "'ip6'" in text and "nd-router-advert" in text and "nd-redirect" in text
    assert "0xfd120000000000000000000000000002" in text          # NA target: its own
    assert "fe80::42:aff:fe00:2" in text                         # its link-local source
    # an IPv4-only port lets no IPv6 through at all
    body = rules.bridge_rules({"c" * 64: {"endpoints": [dict(ep, ip6=None)]}},
                              {"br-x": {"icc": True}})
    assert "'ip6'" not in str(body) and "nd-router-advert" not in str(body)
