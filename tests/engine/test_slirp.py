"""The rootless network driver (berth.engine.network.slirp) with the real
slirp4netns: a "container" is a busybox process in a network namespace of
its own (unshare -n), and every check is what a user of it would see.

Network safety: traffic goes only to loopback, to the container's own
namespace, or to an "outside" namespace with a veth pair this module makes
itself (10.201.77.0/30, held by an unshare -n process). Every process is
ended by the pid the test started, every namespace, link and file is
removed, pass or fail."""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from netutil import free_port
from procutil import alive as _alive, wait_until

from berth.errors import BerthError, ConfigError, Conflict
from berth.engine.network import ports as portsmod
from berth.engine.network import slirp

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("slirp4netns"), reason="needs slirp4netns"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]

BUSYBOX = "/bin/busybox"
OUT_HOST = "10.201.77.1"
OUT_NS = "10.201.77.2"
TIMEOUT = 10



def _gone(pid, timeout=TIMEOUT):
    return wait_until(lambda: not _alive(pid), timeout)


def _slirps_of(cid):
    """pids of slirp4netns processes serving this container's socket."""
    out = []
    for n in os.listdir("/proc"):
        if n.isdigit() and _alive(int(n)):
            try:
                with open(f"/proc/{n}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"slirp4netns") and any(cid.encode() in a for a in argv):
                out.append(int(n))
    return out




class Procs:
    """Processes a test starts, ended by pid at teardown."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)
        self.procs.append(p)
        return p

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
            try:
                p.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def procs():
    pr = Procs()
    try:
        yield pr
    finally:
        pr.close()


class FakeContainer:
    def __init__(self, tmp_path, pid, host_config=None, config=None):
        self.id = secrets.token_hex(32)
        self.name = "/slirp-test-" + self.id[:6]
        self.config = config or {}
        self.host_config = {"NetworkMode": "default", **(host_config or {})}
        resolv = tmp_path / f"resolv-{self.id[:8]}.conf"
        resolv.write_text("nameserver 192.0.2.53\n")
        self.data = {"ResolvConfPath": str(resolv),
                     "NetworkSettings": {"Networks": {"bridge": {"NetworkID": "n1"}}}}
        self.state = {"Pid": pid}
        self.cond = threading.Condition()
        self.saved = 0

    def save(self):
        self.saved += 1


@pytest.fixture
def engine(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    return SimpleNamespace(paths=SimpleNamespace(root=str(root)), config=SimpleNamespace())


@pytest.fixture
def driver(engine):
    d = slirp.SlirpDriver(engine)
    try:
        yield d
    finally:
        # whatever a test left running: its records still name the slirps
        for cid, rec in d._records().items():
            d._stop(rec)
            d._forget(cid)
        d.close()


@pytest.fixture
def make_container(tmp_path, procs, driver):
    """-> make(host_config=None, config=None): a FakeContainer whose
    process waits in an empty network namespace."""
    made = []

    def make(host_config=None, config=None):
        p = procs.start(["unshare", "-n", BUSYBOX, "sleep", "600"])
        _wait_own_netns(p.pid)
        c = FakeContainer(tmp_path, p.pid, host_config, config)
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            try:
                driver.teardown(c)
            finally:
                # a slirp4netns the driver lost track of (a failed test):
                # found by the container's random id in its argv, ended by pid
                for pid in _slirps_of(c.id):
                    os.kill(pid, signal.SIGKILL)


def in_ns(pid, argv, input_=b"", timeout=TIMEOUT):
    """Run argv in the network namespace of pid -> CompletedProcess."""
    return subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], input=input_,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def outside(procs):
    """A namespace standing for "the internet": veth to the host, and a
    busybox server on OUT_NS:7000 that says hello and echoes. The server is
    the namespace's only process (unshare -n, not ip netns add: nothing
    under /run), so ending it removes the namespace and the veth pair even
    if the explicit cleanup below does not get to run."""
    tok = secrets.token_hex(3)
    host_if, ns_if = f"vsl{tok}h", f"vsl{tok}n"
    srv = procs.start(["unshare", "-n", BUSYBOX, "nc", "-ll", "-p", "7000",
                       "-e", BUSYBOX, "sh", "-c", "echo hello-from-outside; exec cat"])
    _wait_own_netns(srv.pid)
    pid = str(srv.pid)

    def ip(*a, ns=False):
        pre = ["nsenter", "-t", pid, "-n"] if ns else []
        subprocess.run([*pre, "ip", *a], check=True, capture_output=True)

    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", pid)
        ip("addr", "add", f"{OUT_HOST}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("addr", "add", f"{OUT_NS}/30", "dev", ns_if, ns=True)
        ip("link", "set", ns_if, "up", ns=True)
        ip("link", "set", "lo", "up", ns=True)
        _wait_listen(["nsenter", "-t", pid, "-n"], 7000)
        yield srv
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)


def _wait_own_netns(pid):
    """unshare execs busybox in the same pid: wait until it has its netns."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                started = f.read().startswith(BUSYBOX.encode())
            if started and os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "unshare -n did not start"
        time.sleep(0.02)


def _wait_listen(prefix, port):
    deadline = time.monotonic() + TIMEOUT
    while True:
        out = subprocess.run([*prefix, BUSYBOX, "netstat", "-ltn"], capture_output=True,
                             text=True).stdout
        if f":{port} " in out:
            return
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.05)


def _talk(host, port, data, timeout=TIMEOUT):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(4096):
            got += chunk
    return got


def _serve_echo(procs, c, port=80):
    procs.start(["nsenter", "-t", str(c.state["Pid"]), "-n", BUSYBOX, "nc", "-ll", "-p",
                 str(port), "-e", BUSYBOX, "cat"])
    _wait_listen(["nsenter", "-t", str(c.state["Pid"]), "-n"], port)


# -- 1. what the container sees -------------------------------------------------

def test_setup_gives_the_namespace_tap0_dns_and_settings(driver, make_container):
    c = make_container()
    driver.setup(c, c.state["Pid"])
    addr = in_ns(c.state["Pid"], ["ip", "-4", "-o", "addr", "show", "dev", "tap0"])
    assert addr.returncode == 0, addr.stderr
    assert "10.0.2.100/24" in addr.stdout.decode()
    route = in_ns(c.state["Pid"], ["ip", "-4", "route", "show", "default"]).stdout.decode()
    assert "via 10.0.2.2 dev tap0" in route
    lo = in_ns(c.state["Pid"], ["ip", "-o", "link", "show", "dev", "lo"]).stdout.decode()
    assert "UP" in lo
    with open(c.data["ResolvConfPath"]) as f:
        assert f.read() == "nameserver 10.0.2.3\n"
    ns = c.data["NetworkSettings"]
    assert ns["IPAddress"] == "10.0.2.100" and ns["IPPrefixLen"] == 24
    assert ns["Gateway"] == "10.0.2.2"
    assert ns["SandboxKey"] == f"/proc/{c.state['Pid']}/ns/net"
    assert ns["Ports"] == {}
    net = ns["Networks"]["bridge"]
    assert net["IPAddress"] == "10.0.2.100" and net["Gateway"] == "10.0.2.2"
    assert net["NetworkID"] == "n1" and net["EndpointID"]
    assert c.saved
    # the record is on disk and names a live slirp4netns in its own session
    rec = json.load(open(os.path.join(driver.dir, c.id + ".json")))
    assert _slirps_of(c.id) == [rec["pid"]]
    assert os.getsid(rec["pid"]) == rec["pid"]


def test_own_dns_servers_are_left_alone(driver, make_container):
    c = make_container({"Dns": ["192.0.2.1"]})
    driver.setup(c, c.state["Pid"])
    with open(c.data["ResolvConfPath"]) as f:
        assert f.read() == "nameserver 192.0.2.53\n"


def test_network_none_has_only_loopback_up(driver, make_container, procs):
    c = make_container({"NetworkMode": "none"})
    driver.setup(c, c.state["Pid"])
    links = in_ns(c.state["Pid"], ["ip", "-o", "link"]).stdout.decode()
    assert "tap0" not in links
    assert "lo:" in links and ",UP" in links
    assert _slirps_of(c.id) == [] and driver._records() == {}
    # loopback works: a server and a client inside the namespace
    _serve_echo(procs, c, 8000)
    r = in_ns(c.state["Pid"], [BUSYBOX, "nc", "-w", "3", "127.0.0.1", "8000"], b"lo-ok\n")
    assert r.stdout == b"lo-ok\n"


def test_host_mode_does_nothing(driver, make_container):
    c = make_container({"NetworkMode": "host"})
    driver.setup(c, c.state["Pid"])
    assert driver._records() == {} and _slirps_of(c.id) == []


# -- 2. published ports -------------------------------------------------------------

def test_published_port_reaches_the_container(driver, make_container, procs):
    hp = free_port()
    c = make_container({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                     "HostPort": str(hp)}]}},
                       {"ExposedPorts": {"80/tcp": {}}})
    driver.setup(c, c.state["Pid"])
    assert c.data["NetworkSettings"]["Ports"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(hp)}]}
    _serve_echo(procs, c)
    payload = b"round trip " + secrets.token_hex(2000).encode() + b"\n"
    assert _talk("127.0.0.1", hp, payload) == payload
    assert _talk("127.0.0.1", hp, b"again\n") == b"again\n"


def test_publish_all_picks_host_ports(driver, make_container, procs):
    c = make_container({"PublishAllPorts": True}, {"ExposedPorts": {"80/tcp": {}}})
    driver.setup(c, c.state["Pid"])
    shown = c.data["NetworkSettings"]["Ports"]["80/tcp"]
    assert len(shown) == 1 and shown[0]["HostIp"] == "0.0.0.0"
    hp = int(shown[0]["HostPort"])
    assert hp >= portsmod.EPHEMERAL_START
    _serve_echo(procs, c)
    assert _talk("127.0.0.1", hp, b"all\n") == b"all\n"


# -- 3. egress ------------------------------------------------------------------------

def test_egress_reaches_an_outside_namespace(driver, make_container, outside):
    c = make_container()
    driver.setup(c, c.state["Pid"])
    r = in_ns(c.state["Pid"], [BUSYBOX, "nc", "-w", "5", OUT_NS, "7000"], b"ping-out\n")
    assert r.stdout == b"hello-from-outside\nping-out\n", r.stderr


def test_gateway_does_not_reach_host_loopback(driver, make_container):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        c = make_container()
        driver.setup(c, c.state["Pid"])
        r = in_ns(c.state["Pid"], [BUSYBOX, "nc", "-w", "3", "10.0.2.2", str(port)],
                  b"should-not-arrive\n")
        assert r.stdout == b""
        with pytest.raises(socket.timeout):
            conn, _ = listener.accept()
            conn.close()
    finally:
        listener.close()


# -- 4. ports that cannot be had ------------------------------------------------------

def test_taken_port_is_a_clear_error_and_leaves_nothing(driver, make_container):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    hp = holder.getsockname()[1]
    try:
        c = make_container({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                         "HostPort": str(hp)}]}})
        with pytest.raises(Conflict) as e:
            driver.setup(c, c.state["Pid"])
        assert str(hp) in str(e.value)
        assert _slirps_of(c.id) == [] and os.listdir(driver.dir) == []
    finally:
        holder.close()


def test_slirp_refusing_a_port_is_cleaned_up(driver, make_container, monkeypatch):
    """The port is taken between planning and slirp4netns binding it (here:
    the planner is told it is free): slirp4netns's refusal becomes an error
    naming the port and why, and the started slirp4netns is ended."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    hp = holder.getsockname()[1]
    monkeypatch.setattr(portsmod, "_bindable", lambda ip, port, proto: True)
    try:
        c = make_container({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                         "HostPort": str(hp)}]}})
        with pytest.raises(BerthError) as e:
            driver.setup(c, c.state["Pid"])
        assert f"127.0.0.1:{hp}/tcp" in str(e.value) and "in use" in str(e.value)
        assert _slirps_of(c.id) == [] and os.listdir(driver.dir) == []
        assert "tap0" not in in_ns(c.state["Pid"], ["ip", "-o", "link"]).stdout.decode()
    finally:
        holder.close()


def test_privileged_port_as_unprivileged_user_names_the_sysctl():
    """Run the diagnosis as nobody, where binding port 80 is refused (unless
    this host lowered net.ipv4.ip_unprivileged_port_start)."""
    if slirp._unprivileged_start() <= 80:
        pytest.skip("ports below 1024 are open to everyone on this host")
    src = str(Path(slirp.__file__).resolve().parents[3])
    code = ("from berth.engine.network import slirp;"
            "print(slirp._refusal('127.0.0.1', 80, 'tcp'))")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", code],
                       env={"PYTHONPATH": src, "PATH": os.environ.get("PATH", "")},
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert "127.0.0.1:80/tcp" in r.stdout
    assert "net.ipv4.ip_unprivileged_port_start" in r.stdout


# -- 5. teardown, restore -------------------------------------------------------------

def test_teardown_leaves_nothing_and_twice_is_fine(driver, make_container):
    hp = free_port()
    c = make_container({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                     "HostPort": str(hp)}]}})
    driver.setup(c, c.state["Pid"])
    pid = json.load(open(os.path.join(driver.dir, c.id + ".json")))["pid"]
    driver.teardown(c)
    assert _gone(pid)
    assert _slirps_of(c.id) == [] and os.listdir(driver.dir) == []
    ns = c.data["NetworkSettings"]
    assert ns["IPAddress"] == "" and ns["SandboxKey"] == "" and ns["Ports"] == {}
    assert ns["Networks"]["bridge"]["IPAddress"] == ""
    # the host port is free again
    s = socket.socket()
    s.bind(("127.0.0.1", hp))
    s.close()
    driver.teardown(c)
    assert os.listdir(driver.dir) == []


def test_teardown_never_kills_a_process_that_reused_the_pid(driver, make_container, procs):
    c = make_container()
    driver.setup(c, c.state["Pid"])
    path = os.path.join(driver.dir, c.id + ".json")
    rec = json.load(open(path))
    real = rec["pid"]
    stranger = procs.start([BUSYBOX, "sleep", "600"])
    rec["pid"] = stranger.pid
    slirp.jsonio.write_atomic(path, rec)
    driver.teardown(c)
    assert stranger.poll() is None and _alive(stranger.pid)
    assert os.listdir(driver.dir) == []
    # the real one is still ours to end, by its pid
    os.kill(real, signal.SIGTERM)
    assert _gone(real)


def test_slirp_outlives_the_daemon_and_restore_takes_it_back(engine, driver, make_container,
                                                             procs):
    hp = free_port()
    c = make_container({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                     "HostPort": str(hp)}]}})
    gone = make_container()
    driver.setup(c, c.state["Pid"])
    driver.setup(gone, gone.state["Pid"])
    pid = json.load(open(os.path.join(driver.dir, c.id + ".json")))["pid"]
    driver.close()
    assert _alive(pid)
    # "restarted daemon": a new driver on the same data root
    again = slirp.SlirpDriver(engine)
    again.restore([c])
    assert _slirps_of(c.id) == [pid]
    assert _slirps_of(gone.id) == [] and not os.path.exists(
        os.path.join(driver.dir, gone.id + ".json"))
    _serve_echo(procs, c)
    assert _talk("127.0.0.1", hp, b"still\n") == b"still\n"
    # its slirp4netns dies: restore gives the container a new one, same port
    os.kill(pid, signal.SIGKILL)
    assert _gone(pid)
    again.restore([c])
    new = _slirps_of(c.id)
    assert len(new) == 1 and new[0] != pid
    assert _talk("127.0.0.1", hp, b"back\n") == b"back\n"
    again.teardown(c)
    assert _slirps_of(c.id) == [] and os.listdir(driver.dir) == []


DAEMON = """
import sys, threading, time
from types import SimpleNamespace as NS
from berth.engine.network import slirp
root, cid, pid, hp, resolv = sys.argv[1:]
c = NS(id=cid, name="/killed-daemon", config={}, cond=threading.Condition(), save=lambda: None,
       host_config={"NetworkMode": "default",
                    "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": hp}]}},
       data={"ResolvConfPath": resolv})
slirp.SlirpDriver(NS(paths=NS(root=root), config=NS())).setup(c, int(pid))
print("up", flush=True)
time.sleep(600)
"""


def test_slirp_survives_a_killed_daemon(engine, driver, make_container, procs):
    """berthd is SIGKILLed after setup: the container keeps its network
    (published port included) and a new daemon can tear it down."""
    hp = free_port()
    c = make_container({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                     "HostPort": str(hp)}]}})
    src = str(Path(slirp.__file__).resolve().parents[3])
    d = procs.start([sys.executable, "-c", DAEMON, engine.paths.root, c.id,
                     str(c.state["Pid"]), str(hp), c.data["ResolvConfPath"]],
                    stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": src})
    assert d.stdout.readline() == b"up\n"
    d.kill()
    d.wait(TIMEOUT)
    d.stdout.close()
    [pid] = _slirps_of(c.id)
    _serve_echo(procs, c)
    assert _talk("127.0.0.1", hp, b"orphan\n") == b"orphan\n"
    driver.restore([c])
    assert _slirps_of(c.id) == [pid]
    driver.teardown(c)
    assert _gone(pid) and os.listdir(driver.dir) == []


def test_connect_and_disconnect_explain_rootless_mode(driver, make_container):
    c = make_container()
    for call in (lambda: driver.connect(c, "mynet"), lambda: driver.disconnect(c, "abc")):
        with pytest.raises(ConfigError) as e:
            call()
        assert "slirp4netns" in str(e.value) and "rootless" in str(e.value)
