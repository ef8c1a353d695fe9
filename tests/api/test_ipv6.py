"""IPv6 dual-stack networks through berth's bridge driver, driven by the
docker CLI, with a dockerd of the test's own as the oracle for shapes.

Network safety rule, as in test_network_traffic: traffic goes only to
loopback, to the host's own addresses on bridges the test's daemon made,
to containers of the test's own daemon, or into a namespace the test
makes itself (2001:2::/48, RFC 5180's benchmarking range); never anywhere
else. Subnets are random unique local ones (fdXX::/64), so runs on one
host do not collide."""
import ipaddress
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared_dir import FIXTURES
from test_network_traffic import (http_get, inspect, net, nft_tables, run,  # noqa: F401
                                  seen_outside, serve, sh, tag_of)

REPO = Path(__file__).resolve().parents[2]
FORWARD6 = "/proc/sys/net/ipv6/conf/all/forwarding"

pytestmark = [pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netlink, nftables)"),
              pytest.mark.skipif(not os.path.exists(FORWARD6), reason="the kernel has no IPv6")]


def ula():
    """A random unique local /64 (and its ::1 gateway)."""
    prefix = ipaddress.IPv6Address(b"\xfd" + os.urandom(5) + bytes(10))
    return f"{prefix}/64", str(prefix + 1)


def v4_subnet():
    return f"10.{secrets.choice(range(100, 200))}.{secrets.randbelow(256)}.0/24"


def dual(d, name, *extra):
    """A dual-stack user network -> (IPv6 subnet, IPv6 gateway)."""
    sub6, gw6 = ula()
    d.docker("network", "create", "--ipv6", "--subnet", v4_subnet(), "--subnet", sub6, *extra,
             name, check=True)
    return sub6, gw6


def ep_of(d, name, network):
    return inspect(d, name)["NetworkSettings"]["Networks"][network]


def read(path):
    with open(path) as f:
        return f.read().strip()


# -- the shape of inspect, against dockerd ------------------------------------

@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    """Debian's dockerd on temp dirs, no iptables, no default bridge, no
    forwarding (bench/image_load's), with busybox loaded."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd comes with make deps (docker.io)")
    sys.path.insert(0, str(REPO / "bench"))
    from image_load import Dockerd
    d = Dockerd(tmp_path_factory.mktemp("dockerd"))
    try:
        d.start()
        r = d.docker("load", "-i", str(FIXTURES / "images" / "busybox-1.38.tar"))
        assert r.returncode == 0, r.stderr
        yield d
    finally:
        for c in ("v6c",):
            d.docker("rm", "-f", c)
        for n in ("v6shape", "v6alone"):
            d.docker("network", "rm", n)
        d.stop()


def shapes(docker, sub4, sub6, static6):
    """The same steps on one engine -> what inspect shows of them."""
    def ok(*args):
        r = docker(*args)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout
    ok("network", "create", "--ipv6", "--subnet", sub4, "--subnet", sub6, "v6shape")
    ok("network", "create", "--ipv6", "--subnet", ula()[0], "v6alone")
    shape = json.loads(ok("network", "inspect", "v6shape"))[0]
    alone = json.loads(ok("network", "inspect", "v6alone"))[0]
    ok("run", "-d", "--name", "v6c", "--network", "v6shape", "--ip6", static6, "busybox",
       "sleep", "60")
    ep = json.loads(ok("inspect", "v6c"))[0]["NetworkSettings"]["Networks"]["v6shape"]
    attached = json.loads(ok("network", "inspect", "v6shape"))[0]["Containers"]
    ok("rm", "-f", "v6c")
    ok("network", "rm", "v6shape", "v6alone")
    return {"EnableIPv6": shape["EnableIPv6"], "Config": shape["IPAM"]["Config"],
            # an IPv6 subnet alone: an IPv4 pool is found for it, listed first
            "alone": [":" in c["Subnet"] for c in alone["IPAM"]["Config"]],
            "alone_keys": [sorted(c) for c in alone["IPAM"]["Config"]][1:],
            "endpoint": {k: ep[k] for k in ("GlobalIPv6Address", "GlobalIPv6PrefixLen",
                                            "IPv6Gateway", "IPAMConfig")},
            "endpoint_v4": [bool(ep["IPAddress"]), ep["IPPrefixLen"]],
            "attached": [(a["IPv4Address"].endswith("/24"), a["IPv6Address"])
                         for a in attached.values()]}


def test_dual_stack_inspect_as_dockerd_shows_it(net, dockerd):
    sub6, gw6 = ula()
    static6 = str(ipaddress.ip_network(sub6).network_address + 0x99)
    ours = shapes(net.docker, v4_subnet(), sub6, static6)
    theirs = shapes(dockerd.docker, v4_subnet(), sub6, static6)
    for k in ("endpoint", "attached", "alone", "alone_keys", "EnableIPv6", "endpoint_v4"):
        assert ours[k] == theirs[k], (k, ours[k], theirs[k])
    assert ours["endpoint"]["IPv6Gateway"] == gw6
    # the IPv6 entry as dockerd writes it (it shows IPv4 gateways it chose; berth
    # always shows the IPv4 one)
    assert ours["Config"][1] == theirs["Config"][1] == {"Subnet": sub6}
    assert ours["Config"][0]["Subnet"] != "" and ours["EnableIPv6"] is True


def test_ipv6_input_refused_with_one_line(net):
    sub6, _ = ula()
    # dockerd 20.10 takes an IPv6 subnet without --ipv6 and then gives no
    # container an IPv6 address; berth says why instead
    r = net.docker("network", "create", "--subnet", sub6, "nov6")
    assert r.returncode != 0 and "needs --ipv6" in r.stderr, r.stderr
    r = net.docker("network", "create", "--ipv6", "--subnet", "fe80::/64", "ll")
    assert r.returncode != 0 and "fe80::/64" in r.stderr, r.stderr
    net.docker("network", "create", "--subnet", v4_subnet(), "v4only", check=True)
    r = net.docker("run", "--rm", "--network", "v4only", "--ip6", "fd00:1::5", "busybox", "true")
    assert r.returncode != 0 and "has no IPv6" in r.stderr, r.stderr
    r = net.docker("run", "--rm", "--network", "v4only", "-p", "[::]:8080:80", "busybox", "true")
    assert r.returncode != 0 and "no IPv6 address" in r.stderr, r.stderr
    _, _ = dual(net, "d6")
    r = net.docker("run", "--rm", "--network", "d6", "-p", "[::1]:8080:80", "busybox", "true")
    assert r.returncode != 0 and "route_localnet" in r.stderr, r.stderr
    assert "Traceback" not in net.log()
    assert os.listdir(os.path.join(net.data_root, "network", "endpoints")) == []


# -- addresses, names, the resolver ---------------------------------------------

def test_dual_stack_container_addresses_names_and_aaaa(net):
    sub6, gw6 = dual(net, "app6")
    serve(net, "srv", "served", "--network", "app6", "--network-alias", "web")
    run(net, "-d", "--name", "cl", "--network", "app6", "alpine", "sleep", "300")
    srv = ep_of(net, "srv", "app6")
    ip6 = srv["GlobalIPv6Address"]
    assert ipaddress.ip_address(ip6) in ipaddress.ip_network(sub6)
    assert (srv["GlobalIPv6PrefixLen"], srv["IPv6Gateway"]) == (64, gw6)
    out = net.docker("exec", "cl", "sh", "-c",
                     "ip -6 addr show dev eth0; ip -6 route; cat /etc/hosts; "
                     "cat /proc/sys/net/ipv6/conf/eth0/accept_ra", check=True).stdout
    cl6 = ep_of(net, "cl", "app6")["GlobalIPv6Address"]
    assert f"{cl6}/64" in out and f"default via {gw6} dev eth0" in out, out
    assert f"{ip6}\tsrv web" in out, out           # peers' IPv6 lines in /etc/hosts
    assert out.splitlines()[-1] == "0", "router advertisements must be off in containers"
    # the embedded resolver answers AAAA (and A) for names on the network
    r = net.docker("exec", "cl", "sh", "-c", "nslookup -type=aaaa web; nslookup -type=a srv",
                   check=True).stdout
    assert ip6 in r.split("web")[-1], r
    assert srv["IPAddress"] in r.split("srv")[-1], r
    # and the traffic goes over IPv6
    r = net.docker("exec", "cl", "wget", "-T", "3", "-qO-", f"http://[{ip6}]/")
    assert r.returncode == 0 and r.stdout.strip() == "served", r.stderr
    # a running container connected to the network gets its IPv6 address at once
    run(net, "-d", "--name", "late", "alpine", "sleep", "300")
    net.docker("network", "connect", "app6", "late", check=True)
    late6 = ep_of(net, "late", "app6")["GlobalIPv6Address"]
    assert f"{late6}/64" in net.docker("exec", "late", "ip", "-6", "addr", "show", "dev", "eth1",
                                       check=True).stdout
    attached = json.loads(net.docker("network", "inspect", "app6", check=True).stdout)[0]
    assert f"{late6}/64" in [a["IPv6Address"] for a in attached["Containers"].values()]
    # a static --ip6 is taken, and twice it is refused
    run(net, "-d", "--name", "st6", "--network", "app6",
        "--ip6", str(ipaddress.ip_network(sub6).network_address + 0x50), "alpine", "sleep", "300")
    r = net.docker("run", "--rm", "--network", "app6",
                   "--ip6", str(ipaddress.ip_network(sub6).network_address + 0x50), "alpine", "true")
    assert r.returncode != 0 and "in use" in r.stderr, r.stderr


# -- published ports, egress, hairpin ------------------------------------------

@pytest.fixture
def outside6():
    """A namespace standing for "the outside world" over IPv6: a veth from
    the host (2001:2:0:x::1) to it (2001:2:0:x::2), removed afterwards."""
    ns = "bt6-out-" + secrets.token_hex(3)
    host_if = "bt6o" + secrets.token_hex(3)
    x = secrets.randbelow(0xffff)
    host_addr, out_addr = f"2001:2:0:{x:x}::1", f"2001:2:0:{x:x}::2"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "addr", "add", f"{host_addr}/64", "dev", host_if, "nodad")
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", ns, "addr", "add", f"{out_addr}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns, host_addr, out_addr
    finally:
        sh("ip", "link", "del", host_if, check=False)
        sh("ip", "netns", "del", ns, check=False)


def in_ns(ns, code, timeout=30):
    """Python code run in namespace ns -> its stdout (a client or server
    of the outside world)."""
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=timeout)
    return r.stdout.strip() or r.stderr.strip().splitlines()[-1]


GET = ("import socket;s=socket.create_connection(('%s',%d),timeout=5);"
       "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n');print(s.makefile().read().split()[-1])")


def get6(addr, port, timeout=5):
    with socket.create_connection((addr, port), timeout=timeout) as s:
        s.sendall(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        return s.makefile("rb").read().decode(errors="replace").strip().splitlines()[-1]


def test_published_ports_egress_and_hairpin_over_ipv6(net, outside6):
    ns, host_addr, out_addr = outside6
    forwarding = read(FORWARD6)
    _, gw6 = dual(net, "pub6")
    port = free_port6()
    serve(net, "w6", "six", "--network", "pub6", "-p", f"{port}:80", "-p", "[::]::81")
    ports = inspect(net, "w6")["NetworkSettings"]["Ports"]
    # an empty host address is both families' wildcard, as dockerd shows it
    assert ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(port)},
                               {"HostIp": "::", "HostPort": str(port)}], ports
    assert [b["HostIp"] for b in ports["81/tcp"]] == ["::"], ports
    assert read(FORWARD6) == "1"
    # from the outside world to the host's address on its link
    assert in_ns(ns, GET % (host_addr, port)) == "six"
    # from the host itself, to its own address on the bridge
    assert get6(gw6, port) == "six"
    # ::1 cannot be DNATed out of the host (no route_localnet for IPv6):
    # refused at once, so clients move on to 127.0.0.1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("::1", port), timeout=5)
    assert http_get("127.0.0.1", port).strip().endswith("six")
    # hairpin: a container of the network reaches the published port
    r = net.docker("run", "--rm", "--network", "pub6", "alpine", "wget", "-T", "3", "-qO-",
                   f"http://[{gw6}]:{port}/")
    assert r.returncode == 0 and r.stdout.strip() == "six", r.stderr
    # egress: the outside sees the host's address, not the container's
    r, seen = seen_outside(net, ns, out_addr, "--network", "pub6")
    assert r.returncode == 0, r.stderr
    assert seen.split() == [host_addr, "egress"], seen
    # an internal network has no way out
    dual(net, "inn6", "--internal")
    r = net.docker("run", "--rm", "--network", "inn6", "alpine", "sh", "-c",
                   f"ip -6 route; echo x | nc -w 2 {out_addr} 9099", timeout=60)
    assert "default" not in r.stdout and r.returncode != 0
    net.docker("rm", "-f", "w6", check=True)
    net.stop()
    assert read(FORWARD6) == forwarding, "IPv6 forwarding is put back as it was"
    assert not any(f"berth_{tag_of(net)}" in t for t in nft_tables())


def free_port6():
    """A TCP port nobody holds on 0.0.0.0 nor on [::] right now."""
    while True:
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            port = s.getsockname()[1]
        with socket.socket(socket.AF_INET6) as s:
            try:
                s.bind(("::", port))
                return port
            except OSError:
                continue


# -- the default bridge, icc and isolation ---------------------------------------

def test_default_bridge_ipv6_icc_and_isolation(net):
    sub6, gw6 = ula()
    net.stop()
    net.extra_args = ["--ipv6"]
    with pytest.raises(RuntimeError, match="--ipv6 and --fixed-cidr-v6 go together"):
        net.start()
    assert "Traceback" not in net.log()
    net.extra_args = ["--ipv6", "--fixed-cidr-v6", sub6]
    net.start()
    bridge = json.loads(net.docker("network", "inspect", "bridge", check=True).stdout)[0]
    assert bridge["EnableIPv6"] is True and {"Subnet": sub6} in bridge["IPAM"]["Config"]
    serve(net, "s1", "s1")
    ns = inspect(net, "s1")["NetworkSettings"]
    # dockerd's rule on a default bridge of /80 or wider: prefix + the MAC
    want = ipaddress.ip_network(sub6).network_address + int(ns["MacAddress"].replace(":", ""), 16)
    assert (ns["GlobalIPv6Address"], ns["GlobalIPv6PrefixLen"], ns["IPv6Gateway"]) == \
        (str(want), 64, gw6)
    assert ns["Networks"]["bridge"]["GlobalIPv6Address"] == str(want)
    s1 = str(want)
    assert get6(s1, 80) == "s1"      # the host reaches it over IPv6
    # inter-container traffic is off on the default bridge, over IPv6 too
    r = net.docker("run", "--rm", "alpine", "wget", "-T", "2", "-qO-", f"http://[{s1}]/")
    assert r.returncode != 0
    # and networks are isolated from each other
    dual(net, "iso6")
    r = net.docker("run", "--rm", "--network", "iso6", "alpine", "wget", "-T", "2", "-qO-",
                   f"http://[{s1}]/")
    assert r.returncode != 0
    serve(net, "s2", "s2", "--network", "iso6")
    s2 = ep_of(net, "s2", "iso6")["GlobalIPv6Address"]
    assert get6(s2, 80) == "s2"
    r = net.docker("run", "--rm", "alpine", "wget", "-T", "2", "-qO-", f"http://[{s2}]/")
    assert r.returncode != 0
    # stopped: no address shown, none leased
    net.docker("stop", "-t", "1", "s1", check=True)

    def cleared():
        ns = inspect(net, "s1")["NetworkSettings"]
        return (ns["GlobalIPv6Address"], ns["IPv6Gateway"],
                ns["Networks"]["bridge"]["GlobalIPv6Address"]) == ("", "", "")
    assert eventually(cleared, timeout=10)


# -- records and crashes ---------------------------------------------------------

def conntrack6_with(ip):
    from pyroute2 import Conntrack
    ct = Conntrack(nfgen_family=socket.AF_INET6)
    try:
        return [e for e in ct.dump_entries() if ip in (e.tuple_orig.saddr, e.tuple_orig.daddr,
                                                       e.tuple_reply.saddr, e.tuple_reply.daddr)]
    finally:
        ct.close()


def test_ipv6_nothing_left_after_rm_and_after_crash(net, outside6):
    ns, host_addr, _ = outside6
    d, table = net, f"berth_{tag_of(net)}"
    forwarding = read(FORWARD6)
    sub6, gw6 = dual(d, "cr6")
    port = free_port6()
    serve(d, "k6", "k6", "--network", "cr6", "-p", f"{port}:80")
    cid = inspect(d, "k6")["Id"]
    ip6 = ep_of(d, "k6", "cr6")["GlobalIPv6Address"]
    endpoints = os.path.join(d.data_root, "network", "endpoints")
    with open(os.path.join(endpoints, cid + ".json")) as f:
        assert json.load(f)["endpoints"][0]["ip6"] == ip6     # the lease is on record
    assert cid[:12] in sh("nft", "list", "table", "ip6", table).stdout
    # kill -9 of the daemon: the container runs on, reachable over IPv6
    d.proc.kill()
    d.proc.wait()
    d.start()
    assert get6(gw6, port) == "k6"
    # a flow from outside (not masqueraded): its tracking entry must go with
    # the container, or it would reach whoever gets the address next
    assert in_ns(ns, GET % (host_addr, port)) == "k6"
    assert conntrack6_with(ip6)
    d.docker("rm", "-f", "k6", check=True)
    assert not conntrack6_with(ip6)
    assert cid[:12] not in sh("nft", "list", "table", "ip6", table).stdout
    assert cid[:12] not in sh("nft", "list", "table", "bridge", table).stdout
    assert os.listdir(endpoints) == []
    # a container that dies while no daemon watches: its lease goes at the
    # next start
    serve(d, "k7", "k7", "--network", "cr6")
    pid = inspect(d, "k7")["State"]["Pid"]
    d.proc.kill()
    d.proc.wait()
    os.kill(pid, 9)
    time.sleep(0.5)
    d.start()
    assert os.listdir(endpoints) == []
    d.docker("rm", "-f", "k7", check=True)
    d.docker("network", "rm", "cr6", check=True)
    assert not any(gw6 in line for line in sh("ip", "-6", "-o", "addr").stdout.splitlines())
    # daemon stop with no container: tables go, forwarding is put back
    d.stop()
    assert not any(table in t for t in nft_tables())
    assert read(FORWARD6) == forwarding and not os.path.exists("/run/berth-net6/user." +
                                                                tag_of(d))


# -- anti-spoofing: addresses, neighbour discovery, router advertisements ------

def _mac(text):
    return bytes(int(x, 16) for x in text.split(":"))


def icmp6_frame(src_mac, dst_mac, src, dst, message):
    """An Ethernet frame carrying ICMPv6 message (checksum filled in), hop
    limit 255 as neighbour discovery wants."""
    src, dst = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    words = src + dst + struct.pack("!I3xB", len(message), 58) + message
    total = sum(struct.unpack(f"!{len(words) // 2}H", words))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    message = message[:2] + struct.pack("!H", ~total & 0xffff) + message[4:]
    head = struct.pack("!IHBB", 6 << 28, len(message), 58, 255) + src + dst
    return _mac(dst_mac) + _mac(src_mac) + b"\x86\xdd" + head + message


def advert(target, mac):
    """An unsolicited neighbour advertisement, override flag set: "target
    is at mac" (what poisons a neighbour cache)."""
    return (struct.pack("!BBHI", 136, 0, 0, 0x20000000) + ipaddress.IPv6Address(target).packed
            + b"\x02\x01" + _mac(mac))


def router_advert(prefix):
    """A router advertisement: default router for 30 min, prefix for SLAAC."""
    pio = struct.pack("!BBBBIII", 3, 4, 64, 0xc0, 3600, 1800, 0) + \
        ipaddress.ip_network(prefix).network_address.packed
    return struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + pio


def send_frame(ifname, frame, pid=None):
    """frame out of ifname: the host's, or the one in pid's network namespace
    (what a container with NET_RAW can send)."""
    code = ("import socket,sys;s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);"
            "s.bind((sys.argv[1],0));[s.send(bytes.fromhex(sys.argv[2])) for _ in range(3)]")
    enter = ["nsenter", "-t", str(pid), "-n"] if pid else []
    sh(*enter, sys.executable, "-c", code, ifname, frame.hex())


def neigh(d, name, ip):
    return d.docker("exec", name, "ip", "-6", "neigh", "show", ip).stdout.lower()


def eventually(check, timeout=5):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_ipv6_spoofing_neighbour_and_router_adverts_refused(net):
    sub6, gw6 = dual(net, "sp6")
    bridge = "br-" + json.loads(net.docker("network", "inspect", "sp6").stdout)[0]["Id"][:12]
    for name in ("victim", "bystander", "mallory"):
        serve(net, name, name, "--network", "sp6")
    eps = {n: ep_of(net, n, "sp6") for n in ("victim", "bystander", "mallory")}
    mpid = inspect(net, "mallory")["State"]["Pid"]
    bpid = inspect(net, "bystander")["State"]["Pid"]
    # a listener in the bystander's namespace notes who sends it datagrams
    listener = subprocess.Popen(
        ["nsenter", "-t", str(bpid), "-n", sys.executable, "-c", UDP_LOG],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _spoofing(net, bridge, eps, mpid, bpid, listener)
    finally:
        if listener.poll() is None:
            listener.kill()
        listener.communicate()


UDP_LOG = """import socket,sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 9000))
s.settimeout(60)
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(100)
    if data == b"end":
        break
    print(peer[0], data.decode(), flush=True)
"""


def udp_from(pid, dst, text):
    """A datagram to [dst]:9000 from pid's network namespace (None: the host's)."""
    enter = ["nsenter", "-t", str(pid), "-n"] if pid else []
    sh(*enter, sys.executable, "-c",
       "import socket,sys;socket.socket(socket.AF_INET6,socket.SOCK_DGRAM).sendto("
       "sys.argv[2].encode(),(sys.argv[1],9000))", dst, text)


def _spoofing(net, bridge, eps, mpid, bpid, listener):
    vip, vmac = eps["victim"]["GlobalIPv6Address"], eps["victim"]["MacAddress"]
    bip, mip = eps["bystander"]["GlobalIPv6Address"], eps["mallory"]["GlobalIPv6Address"]
    mmac = eps["mallory"]["MacAddress"]
    mll = net.docker("exec", "mallory", "ip", "-6", "-o", "addr", "show", "dev", "eth0",
                     "scope", "link", check=True).stdout.split()[3].split("/")[0]
    assert listener.stdout.readline().strip() == "ready"
    # sanity: before the spoof mallory reaches the bystander over IPv6
    r = net.docker("exec", "mallory", "wget", "-T", "3", "-qO-", f"http://[{bip}]/")
    assert r.returncode == 0 and r.stdout.strip() == "bystander", r.stderr
    udp_from(mpid, bip, "before")

    # mallory takes the victim's address (what NET_ADMIN allows in its
    # namespace; no duplicate detection to give it away) and announces it
    sh("nsenter", "-t", str(mpid), "-n", "ip", "-6", "addr", "flush", "dev", "eth0",
       "scope", "global")
    sh("nsenter", "-t", str(mpid), "-n", "ip", "-6", "addr", "add", f"{vip}/64", "dev", "eth0",
       "nodad")
    send_frame("eth0", icmp6_frame(mmac, "33:33:00:00:00:01", mll, "ff02::1",
                                   advert(vip, mmac)), pid=mpid)
    for _ in range(3):
        r = net.docker("exec", "bystander", "wget", "-T", "3", "-qO-", f"http://[{vip}]/")
        assert r.returncode == 0 and r.stdout.strip() == "victim", r.stderr
    assert vmac in neigh(net, "bystander", vip)
    # another unsolicited advertisement, now that the bystander knows the victim
    send_frame("eth0", icmp6_frame(mmac, "33:33:00:00:00:01", mll, "ff02::1",
                                   advert(vip, mmac)), pid=mpid)
    time.sleep(1)
    assert vmac in neigh(net, "bystander", vip)
    # what mallory sends from the stolen address does not get through
    udp_from(mpid, bip, "after")
    udp_from(None, bip, "end")
    assert listener.communicate(timeout=30)[0].split() == [mip, "before"]
    # the same advertisement sent by the host onto the bridge does poison
    # the cache: the packet is right, the port filter is what stopped it
    send_frame(bridge, icmp6_frame("02:00:5e:00:53:01", "33:33:00:00:00:01", "fe80::5e",
                                   "ff02::1", advert(vip, mmac)))
    assert eventually(lambda: mmac in neigh(net, "bystander", vip)), neigh(net, "bystander", vip)

    # router advertisements: off in every container, and filtered at the
    # port. To see the filter alone, the test lets the bystander listen.
    assert net.docker("exec", "bystander", "cat", "/proc/sys/net/ipv6/conf/eth0/accept_ra",
                      check=True).stdout.strip() == "0"
    sh("nsenter", "-t", str(bpid), "-n", "sh", "-c",
       "echo 2 > /proc/sys/net/ipv6/conf/eth0/accept_ra")
    prefix = "2001:db8:bad:1::/64"

    def slaac():
        return "2001:db8:bad:1:" in net.docker("exec", "bystander", "ip", "-6", "addr").stdout
    send_frame("eth0", icmp6_frame(mmac, "33:33:00:00:00:01", mll, "ff02::1",
                                   router_advert(prefix)), pid=mpid)
    assert not eventually(slaac, timeout=2), "a container's router advertisement got through"
    send_frame(bridge, icmp6_frame("02:00:5e:00:53:01", "33:33:00:00:00:01", "fe80::5e",
                                   "ff02::1", router_advert(prefix)))
    assert eventually(slaac), "the same advertisement from the host configures the bystander"
