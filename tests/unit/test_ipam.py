"""Address choice, MACs, published-port planning and /etc/hosts rendering
of the network driver (no netlink, no nftables)."""
import pytest

from berth.errors import BerthError, Conflict
from berth.engine.network import hosts, ipam, ports

CFG = {"Subnet": "10.9.0.0/29", "Gateway": "10.9.0.1"}


def test_first_free_address_skips_gateway_and_taken():
    assert ipam.allocate(CFG, []) == "10.9.0.2"
    assert ipam.allocate(CFG, ["10.9.0.2", "10.9.0.3"]) == "10.9.0.4"


def test_pool_exhausted():
    with pytest.raises(Conflict):
        ipam.allocate(CFG, [f"10.9.0.{i}" for i in range(2, 7)])


def test_static_address_checked():
    assert ipam.allocate(CFG, [], "10.9.0.5") == "10.9.0.5"
    with pytest.raises(Conflict):
        ipam.allocate(CFG, ["10.9.0.5"], "10.9.0.5")
    with pytest.raises(Conflict):
        ipam.allocate(CFG, [], "10.9.0.1")
    with pytest.raises(BerthError):
        ipam.allocate(CFG, [], "10.10.0.5")


def test_ip_range_and_aux_addresses():
    cfg = {"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1", "IPRange": "10.9.0.16/28",
           "AuxiliaryAddresses": {"router": "10.9.0.17"}}
    assert ipam.allocate(cfg, []) == "10.9.0.18"


def test_mac_like_docker():
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"


def test_ports_plan_and_shown(monkeypatch):
    monkeypatch.setattr(ports, "_bindable", lambda ip, port, proto: port != 49153)
    hc = {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                           "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
          "PublishAllPorts": True}
    cfg = {"ExposedPorts": {"80/tcp": {}, "443/tcp": {}, "53/udp": {}}}
    m = ports.plan(hc, cfg, [])
    by = {(x["port"], x["proto"]): x for x in m}
    assert by[(80, "tcp")]["host_port"] == 8080 and by[(80, "tcp")]["host_ip"] == "0.0.0.0"
    assert by[(53, "udp")]["host_ip"] == "127.0.0.1" and by[(53, "udp")]["host_port"] == 49154
    assert by[(443, "tcp")]["host_port"] == 49154
    shown = ports.shown(m, cfg)
    assert shown["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8080"}]
    # taken by another container: refused
    with pytest.raises(Conflict):
        ports.plan({"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}, {}, m)


def test_hosts_render_in_place(tmp_path):
    p = tmp_path / "hosts"
    p.write_text("127.0.0.1\tlocalhost\n127.0.1.1\tabc\n")
    ino = p.stat().st_ino
    text = hosts.render(hosts.base(p.read_text()), [("10.0.0.2", ["abc", "abc", "web"]),
                                                    ("10.0.0.3", ["peer"])])
    hosts.write_in_place(str(p), text)
    again = hosts.render(hosts.base(p.read_text()), [("10.0.0.2", ["abc"])])
    hosts.write_in_place(str(p), again)
    assert p.stat().st_ino == ino
    assert p.read_text() == "127.0.0.1\tlocalhost\n" + hosts.MARK + "\n10.0.0.2\tabc\n"
