"""Real packets through berth's network driver, driven by the docker CLI.

Network safety rule: traffic goes only to loopback, to containers of the
test's own daemon, or into a network namespace the test makes itself
(198.18.0.0/15, RFC 2544's benchmarking range); never anywhere else.
Every namespace, veth, bridge and nft table a test makes is removed even
when it fails."""
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time

import pytest

from netutil import free_port

need_docker = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")

pytestmark = [need_docker,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netlink, nftables)")]

HTTPD = "mkdir -p /w && echo {text} > /w/index.html && exec httpd -f -p 80 -h /w"


def sh(*argv, check=True):
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


def links():
    out = sh("ip", "-o", "link", "show").stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def nft_tables():
    return sh("nft", "list", "tables").stdout.split("\n")


def conntrack_with(ip):
    from pyroute2 import Conntrack
    ct = Conntrack()
    try:
        return [e for e in ct.dump_entries() if ip in (e.tuple_orig.saddr, e.tuple_orig.daddr,
                                                       e.tuple_reply.saddr, e.tuple_reply.daddr)]
    finally:
        ct.close()


def tag_of(d):
    return hashlib.sha256(os.path.abspath(str(d.data_root)).encode()).hexdigest()[:6]


@pytest.fixture
def net(berthd):
    """berthd with alpine (clients) and busybox (httpd) loaded."""
    berthd.load("alpine-3.20")
    berthd.load("busybox-1.38")
    yield berthd


def run(d, *args, timeout=60):
    return d.docker("run", *args, timeout=timeout, check=True).stdout


def inspect(d, name):
    return json.loads(d.docker("inspect", name, check=True).stdout)[0]


def ip_of(d, name, network="bridge"):
    return inspect(d, name)["NetworkSettings"]["Networks"][network]["IPAddress"]


def serve(d, name, text, *args):
    run(d, "-d", "--name", name, *args, "busybox", "sh", "-c", HTTPD.format(text=text))
    wait_listening(d, name)


def wait_listening(d, name, port=80):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = d.docker("exec", name, "sh", "-c", f"netstat -ltn | grep -q ':{port} '")
        if r.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} does not listen on {port}: {d.docker('logs', name).stderr}")


def fetch(d, client_args, url, timeout=3):
    """wget from a throw-away alpine container -> (ok, body)."""
    r = d.docker("run", "--rm", *client_args, "alpine", "wget", "-T", str(timeout), "-qO-", url,
                 timeout=60)
    return r.returncode == 0, r.stdout.strip()


def test_container_gets_address_route_and_hosts(net):
    out = run(net, "--name", "a1", "alpine", "sh", "-c",
              "ip -4 -o addr show eth0; ip route; ip -o link show eth0; cat /etc/hosts")
    assert "default via" in out
    # stopped: the address is released again
    deadline = time.monotonic() + 10
    while inspect(net, "a1")["NetworkSettings"]["IPAddress"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert inspect(net, "a1")["NetworkSettings"]["IPAddress"] == ""
    assert os.listdir(os.path.join(net.data_root, "network", "endpoints")) == []
    lines = out.splitlines()
    addr = lines[0].split()[3]
    ip = addr.split("/")[0]
    assert f"default via {addr.rsplit('.', 1)[0]}.1 dev eth0" in out or "default via" in out
    mac = "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))
    assert mac in out
    assert f"{ip}\t" in out    # its own name on its own address in /etc/hosts


def test_running_container_settings_and_port(net):
    serve(net, "web", "hello", "-p", "127.0.0.1::80", "-P", "--expose", "81")
    ns = inspect(net, "web")["NetworkSettings"]
    ep = ns["Networks"]["bridge"]
    assert ep["IPAddress"] and ep["IPAddress"] == ns["IPAddress"]
    assert ep["MacAddress"].startswith("02:42:") and ep["Gateway"] and ep["EndpointID"]
    ports = ns["Ports"]
    assert ports["80/tcp"][0]["HostIp"] == "127.0.0.1"
    hp = int(ports["80/tcp"][0]["HostPort"])
    assert int(ports["81/tcp"][0]["HostPort"]) >= 49153
    shown = net.docker("port", "web", check=True).stdout
    assert f"80/tcp -> 127.0.0.1:{hp}" in shown
    # from the host's loopback, straight into the container by DNAT
    body = http_get("127.0.0.1", hp)
    assert body.strip().endswith("hello")


def http_get(host, port):
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


def test_published_fixed_port_and_conflict(net):
    port = free_port()
    serve(net, "w1", "one", "-p", f"{port}:80")
    assert http_get("127.0.0.1", port).strip().endswith("one")
    r = net.docker("run", "-d", "--name", "w2", "-p", f"{port}:80", "busybox", "sleep", "30")
    assert r.returncode != 0 and "already allocated" in r.stderr




def test_user_network_by_name_and_alias(net):
    subnet = "10.231.71.0/24"
    net.docker("network", "create", "--subnet", subnet, "app", check=True)
    serve(net, "srv", "served", "--network", "app", "--network-alias", "web")
    ok, body = fetch(net, ["--network", "app"], "http://srv/")
    assert ok and body == "served"
    ok, body = fetch(net, ["--network", "app"], "http://web/")
    assert ok and body == "served"
    # a client that stays: peers come and go in its /etc/hosts
    run(net, "-d", "--name", "cl", "--network", "app", "alpine", "sleep", "300")
    hosts = net.docker("exec", "cl", "cat", "/etc/hosts", check=True).stdout
    assert "srv" in hosts and "web" in hosts
    net.docker("rm", "-f", "srv", check=True)
    hosts = net.docker("exec", "cl", "cat", "/etc/hosts", check=True).stdout
    assert "srv" not in hosts
    serve(net, "srv2", "two", "--network", "app")
    hosts = net.docker("exec", "cl", "cat", "/etc/hosts", check=True).stdout
    assert "srv2" in hosts
    r = net.docker("exec", "cl", "wget", "-T", "3", "-qO-", "http://srv2/")
    assert r.returncode == 0 and r.stdout.strip() == "two"


def test_icc_off_on_default_bridge_and_networks_isolated(net):
    serve(net, "s1", "s1")
    ip = ip_of(net, "s1")
    ok, _ = fetch(net, [], f"http://{ip}/", timeout=2)
    assert not ok, "inter-container traffic must be off on the default bridge"
    # another network cannot reach it either, nor the other way round
    net.docker("network", "create", "--subnet", "10.231.72.0/24", "iso", check=True)
    ok, _ = fetch(net, ["--network", "iso"], f"http://{ip}/", timeout=2)
    assert not ok
    serve(net, "s2", "s2", "--network", "iso")
    ok, _ = fetch(net, [], f"http://{ip_of(net, 's2', 'iso')}/", timeout=2)
    assert not ok


@pytest.fixture
def outside():
    """A network namespace standing for "the outside world": a veth from the
    host (198.18.x.1) to it (198.18.x.2), and a TCP server in it reporting
    the source address of whoever connects."""
    ns = "bt-out-" + secrets.token_hex(3)
    host_if = "bto" + secrets.token_hex(3)
    x = 100 + secrets.randbelow(100)
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "addr", "add", f"198.18.{x}.1/24", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", ns, "addr", "add", f"198.18.{x}.2/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns, f"198.18.{x}.1", f"198.18.{x}.2"
    finally:
        sh("ip", "link", "del", host_if, check=False)
        sh("ip", "netns", "del", ns, check=False)


def seen_outside(d, ns, out_addr, *run_args):
    """A container (docker run run_args alpine) connects to out_addr:9099
    in namespace ns -> (its run, what the server there saw: "<source> egress")."""
    family = "socket.AF_INET6" if ":" in out_addr else "socket.AF_INET"
    code = (f"import socket;s=socket.socket({family});"
            "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
            f"s.bind(('{out_addr}',9099));s.listen(1);s.settimeout(30);c,a=s.accept();"
            "print(a[0], c.recv(100).decode().strip(), flush=True)")
    server = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", code],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        r = d.docker("run", "--rm", *run_args, "alpine", "sh", "-c",
                     f"echo egress | nc -w 3 {out_addr} 9099", timeout=60)
        out, err = server.communicate(timeout=40)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return r, out + err


def test_egress_is_masqueraded(net, outside):
    ns, host_addr, out_addr = outside
    r, seen = seen_outside(net, ns, out_addr)
    assert r.returncode == 0, r.stderr
    # the outside sees the host's address, not the container's
    assert seen.split() == [host_addr, "egress"], seen


def test_internal_network_has_no_egress(net, outside):
    ns, host_addr, out_addr = outside
    net.docker("network", "create", "--internal", "--subnet", "10.231.73.0/24", "inn", check=True)
    r = net.docker("run", "--rm", "--network", "inn", "alpine", "sh", "-c",
                   f"ip route; echo x | nc -w 2 {out_addr} 9099", timeout=60)
    assert "default" not in r.stdout
    assert r.returncode != 0


def test_address_and_arp_spoofing_blocked(net):
    net.docker("network", "create", "--subnet", "10.231.74.0/24", "sp", check=True)
    serve(net, "victim", "victim", "--network", "sp")
    serve(net, "bystander", "bystander", "--network", "sp")
    vip = ip_of(net, "victim", "sp")
    vmac = inspect(net, "victim")["NetworkSettings"]["Networks"]["sp"]["MacAddress"]
    # mallory, once told to, takes the victim's address, announces it by
    # gratuitous ARP and serves in its place
    spoof = (f"while [ ! -e /tmp/go ]; do sleep 0.1; done; "
             f"ip addr flush dev eth0 && ip addr add {vip}/24 dev eth0 && "
             f"(arping -U -c 3 -I eth0 {vip} >/dev/null 2>&1; "
             f" arping -A -c 3 -I eth0 {vip} >/dev/null 2>&1; true) && "
             + HTTPD.format(text="mallory"))
    run(net, "-d", "--name", "mallory", "--network", "sp", "--cap-add", "NET_ADMIN",
        "busybox", "sh", "-c", spoof)
    # sanity: before the spoof mallory reaches the bystander
    r = net.docker("exec", "mallory", "wget", "-T", "3", "-qO-", "http://bystander/")
    assert r.returncode == 0 and r.stdout.strip() == "bystander"
    net.docker("exec", "mallory", "touch", "/tmp/go", check=True)
    wait_listening(net, "mallory")
    time.sleep(2)
    for _ in range(3):
        r = net.docker("exec", "bystander", "wget", "-T", "3", "-qO-", f"http://{vip}/")
        assert r.returncode == 0 and r.stdout.strip() == "victim"
    neigh = net.docker("exec", "bystander", "ip", "neigh", "show", vip).stdout
    assert vmac in neigh.lower(), neigh
    # and traffic mallory sends with the stolen source does not get through
    r = net.docker("exec", "mallory", "wget", "-T", "2", "-qO-", "http://bystander/")
    assert r.returncode != 0


def test_nothing_left_after_rm_and_after_crash(net):
    d = net
    tag = tag_of(d)
    table = f"berth_{tag}"
    serve(d, "k1", "k1", "-p", "127.0.0.1::80")
    cid = inspect(d, "k1")["Id"]
    veth = f"vb{cid[:10]}0"
    assert veth in links()
    rules = sh("nft", "list", "table", "ip", table).stdout
    assert cid[:12] in rules
    endpoints = os.path.join(d.data_root, "network", "endpoints")
    assert os.listdir(endpoints) == [cid + ".json"]
    # kill -9 of the daemon: the container runs on, its network too
    d.proc.kill()
    d.proc.wait()
    d.start()
    hp = int(inspect(d, "k1")["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
    assert http_get("127.0.0.1", hp).strip().endswith("k1")
    kip = inspect(d, "k1")["NetworkSettings"]["IPAddress"]
    assert conntrack_with(kip)
    d.docker("rm", "-f", "k1", check=True)
    assert veth not in links()
    assert not conntrack_with(kip)
    assert cid[:12] not in sh("nft", "list", "table", "ip", table).stdout
    assert cid[:12] not in sh("nft", "list", "table", "bridge", table).stdout
    assert os.listdir(endpoints) == []
    # a crash that leaves a record for a container that is gone
    serve(d, "k2", "k2")
    cid2 = inspect(d, "k2")["Id"]
    pid = inspect(d, "k2")["State"]["Pid"]
    d.proc.kill()
    d.proc.wait()
    # the container dies while no daemon watches
    os.kill(pid, 9)
    time.sleep(0.5)
    d.start()
    d.docker("rm", "-f", "k2", check=True)
    assert f"vb{cid2[:10]}0" not in links()
    assert os.listdir(endpoints) == []
    # daemon stop with no container: bridge and tables go
    d.stop()
    assert f"berth0-{tag}" not in links()
    assert not any(table in t for t in nft_tables())


def test_none_and_host_modes(net):
    out = run(net, "--network", "none", "alpine", "ip", "-o", "link")
    names = [line.split(":")[1].strip() for line in out.splitlines()]
    assert names == ["lo"] and "UP" in out
    out = run(net, "--network", "host", "alpine", "ip", "-o", "link")
    assert "eth0" in out   # the host's own links
    assert os.listdir(os.path.join(net.data_root, "network", "endpoints")) == []


def test_driver_connect_and_disconnect(tmp_path):
    """The driver on its own (no daemon): a process in a namespace this test
    makes (unshare -n) plugged into one network, connected to a second,
    disconnected again; then nothing of it is left."""
    import types

    from berth.engine.containers.record import Container
    from berth.engine.network.driver import Driver
    from berth.engine.networks import Networks
    root = tmp_path / "lib"
    eng = types.SimpleNamespace(paths=types.SimpleNamespace(root=str(root)),
                                config=types.SimpleNamespace(),
                                networks=Networks(str(root / "networks")))
    n1 = eng.networks.create("n1", ipam={"Config": [{"Subnet": "10.231.75.0/24"}]})
    n2 = eng.networks.create("n2", ipam={"Config": [{"Subnet": "10.231.76.0/24"}]})
    hosts_path = tmp_path / "hosts"
    hosts_path.write_text("127.0.0.1\tlocalhost\n")
    cdir = tmp_path / "c"
    cdir.mkdir()
    cid = secrets.token_hex(32)
    own = os.readlink("/proc/self/ns/net")
    proc = subprocess.Popen(["unshare", "-n", "sleep", "120"])
    d = Driver(eng)
    c = None
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{proc.pid}/ns/net") == own:
            assert time.monotonic() < deadline, "unshare -n did not make a namespace"
            time.sleep(0.01)
        c = Container(str(cdir), {
            "Id": cid, "Name": "/cx", "Config": {"Hostname": "cx"},
            "HostConfig": {"NetworkMode": "n1"}, "HostsPath": str(hosts_path),
            "State": {"Running": True, "Pid": proc.pid},
            "NetworkSettings": {"Networks": {"n1": {"NetworkID": n1["Id"]}}}})
        d.setup(c, proc.pid)

        def addrs():
            return sh("nsenter", "-t", str(proc.pid), "-n", "ip", "-4", "-o", "addr").stdout
        assert "eth0" in addrs() and "10.231.75.2/24" in addrs()
        c.data["NetworkSettings"]["Networks"]["n2"] = {"NetworkID": n2["Id"], "Aliases": ["two"]}
        d.connect(c, "n2")
        assert "eth1" in addrs() and "10.231.76.2/24" in addrs()
        assert c.data["NetworkSettings"]["Networks"]["n2"]["IPAddress"] == "10.231.76.2"
        assert f"vb{cid[:10]}1" in links()
        d.disconnect(c, n2["Id"])
        assert "eth1" not in addrs() and f"vb{cid[:10]}1" not in links()
        assert "br-" + n2["Id"][:12] not in links()
    finally:
        if c is not None:
            d.teardown(c)
        proc.kill()
        proc.wait()
        d.close()
    assert f"vb{cid[:10]}0" not in links()
    assert not any(d.table in t for t in nft_tables())
    assert "br-" + n1["Id"][:12] not in links()


def test_daemon_restart_keeps_running_containers_networked(net):
    d = net
    serve(d, "r1", "r1", "-p", "127.0.0.1::80")
    d.restart()            # SIGTERM: containers and their network stay
    hp = int(inspect(d, "r1")["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
    assert http_get("127.0.0.1", hp).strip().endswith("r1")
    d.docker("rm", "-f", "r1", check=True)
    assert os.listdir(os.path.join(d.data_root, "network", "endpoints")) == []
    d.stop()
    assert f"berth0-{tag_of(d)}" not in links()
    assert not any(f"berth_{tag_of(d)}" in t for t in nft_tables())


def test_static_ip_and_internal_peers(net):
    net.docker("network", "create", "--subnet", "10.231.77.0/24", "st", check=True)
    run(net, "-d", "--name", "fixed", "--network", "st", "--ip", "10.231.77.50", "alpine",
        "sleep", "300")
    assert ip_of(net, "fixed", "st") == "10.231.77.50"
    out = net.docker("exec", "fixed", "ip", "-4", "-o", "addr", "show", "eth0", check=True).stdout
    assert "10.231.77.50/24" in out
    r = net.docker("run", "--rm", "--network", "st", "--ip", "10.231.77.50", "alpine", "true")
    assert r.returncode != 0 and "in use" in (r.stderr + r.stdout)


def test_connect_and_disconnect_a_running_container(berthd):
    """docker network connect gives a running container a new interface at
    once; disconnect takes it away."""
    berthd.load("alpine-3.20")
    assert berthd.docker("network", "create", "side").returncode == 0
    r = berthd.docker("run", "-d", "--name", "cc", "alpine", "sleep", "100")
    assert r.returncode == 0, r.stderr
    before = berthd.docker("exec", "cc", "ip", "-o", "-4", "addr").stdout
    r = berthd.docker("network", "connect", "side", "cc")
    assert r.returncode == 0, r.stderr
    after = berthd.docker("exec", "cc", "ip", "-o", "-4", "addr").stdout
    assert len(after.splitlines()) == len(before.splitlines()) + 1, (before, after)
    net = json.loads(berthd.docker("network", "inspect", "side").stdout)[0]
    assert len(net["Containers"]) == 1
    r = berthd.docker("network", "disconnect", "side", "cc")
    assert r.returncode == 0, r.stderr
    assert berthd.docker("exec", "cc", "ip", "-o", "-4", "addr").stdout == before


@pytest.fixture
def outside_segment():
    """A segment of the test's own: a veth whose host end is the macvlan
    parent and whose other end sits in a namespace made here (198.18.77.1,
    RFC 2544's benchmarking range), all removed afterwards."""
    tag = secrets.token_hex(3)
    ns, parent, far = f"berth-test-mv-{tag}", f"mvp{tag}", f"mvo{tag}"

    def ip(*args, check=True):
        return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)
    ip("netns", "add", ns)
    try:
        ip("link", "add", parent, "type", "veth", "peer", "name", far)
        ip("link", "set", far, "netns", ns)
        ip("-n", ns, "addr", "add", "198.18.77.1/24", "dev", far)
        ip("-n", ns, "link", "set", far, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "set", parent, "up")
        yield parent, ns
    finally:
        ip("link", "del", parent, check=False)
        ip("netns", "del", ns, check=False)


@need_docker
def test_macvlan_puts_the_container_on_the_parents_segment(berthd, outside_segment):
    parent, ns = outside_segment
    berthd.load("alpine-3.20")
    r = berthd.docker("network", "create", "-d", "macvlan", "-o", f"parent={parent}",
                      "--subnet", "198.18.77.0/24", "--gateway", "198.18.77.1", "mv")
    assert r.returncode == 0, r.stderr
    r = berthd.docker("run", "--rm", "--network", "mv", "--ip", "198.18.77.10", "alpine", "sh",
                      "-c", "ip -o -4 addr show eth0; ping -c1 -W2 198.18.77.1 >/dev/null && "
                      "echo reached")
    assert r.returncode == 0, r.stderr
    assert "198.18.77.10/24" in r.stdout and "reached" in r.stdout
    # the far side saw the container's own MAC, not the host's: no NAT, no bridge
    neigh = subprocess.run(["ip", "-n", ns, "neigh", "show", "198.18.77.10"],
                           capture_output=True, text=True).stdout
    assert "02:42:c6:12:4d:0a" in neigh, neigh
    r = berthd.docker("run", "--rm", "--network", "mv", "-p", "8080:80", "alpine", "true")
    assert r.returncode != 0 and "macvlan" in r.stderr
    assert berthd.docker("network", "rm", "mv").returncode == 0


@need_docker
def test_embedded_dns_answers_names_on_user_networks(berthd):
    berthd.load("alpine-3.20")
    assert berthd.docker("network", "create", "dnsnet").returncode == 0
    r = berthd.docker("run", "-d", "--network", "dnsnet", "--name", "db",
                      "--network-alias", "database", "alpine", "sleep", "100")
    assert r.returncode == 0, r.stderr
    gw = json.loads(berthd.docker("network", "inspect", "dnsnet").stdout)[0]["IPAM"]["Config"][0]["Gateway"]
    db_ip = json.loads(berthd.docker("inspect", "db").stdout)[0][
        "NetworkSettings"]["Networks"]["dnsnet"]["IPAddress"]
    # nslookup asks the resolver directly (not /etc/hosts)
    r = berthd.docker("run", "--rm", "--network", "dnsnet", "alpine", "sh", "-c",
                      "cat /etc/resolv.conf; nslookup -type=a database; nslookup -type=a nosuch")
    assert f"nameserver {gw}" in r.stdout, r.stdout
    assert db_ip in r.stdout.split("database")[-1], r.stdout
    assert "NXDOMAIN" in r.stdout or "can't find nosuch" in r.stdout, r.stdout
    # a container started later is known at once
    assert berthd.docker("run", "-d", "--network", "dnsnet", "--name", "late", "alpine",
                         "sleep", "100").returncode == 0
    r = berthd.docker("exec", "db", "nslookup", "-type=a", "late")
    assert "Address" in r.stdout.split("late")[-1], r.stdout
