"""The embedded DNS resolver of user-defined networks.

One UDP socket per network, on the network's gateway address port 53
(the bridge's own address on the host): containers on the network have it
as their only nameserver. Names of containers, their aliases and short
ids on that network answer with their address (A, and AAAA on an IPv6
network); other record types of a known name answer empty, as Docker's
resolver does. Unknown names go to
the host's resolvers when forwarding is on, else NXDOMAIN."""
import socket
import struct
import sys
import threading

TTL = 600
_NOERROR, _SERVFAIL, _NXDOMAIN = 0, 2, 3
_A, _AAAA = 1, 28


def parse_query(data):
    """-> (id, flags, qname lowercase, qtype, question bytes) or None."""
    if len(data) < 12:
        return None
    qid, flags, qd = struct.unpack(">HHH", data[:6])
    if flags & 0x8000 or qd != 1:
        return None
    labels, i = [], 12
    while True:
        if i >= len(data):
            return None
        n = data[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0 or i + 1 + n > len(data):
            return None
        labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    if i + 4 > len(data):
        return None
    qtype, _ = struct.unpack(">HH", data[i:i + 4])
    return qid, flags, ".".join(labels).lower().rstrip("."), qtype, data[12:i + 4]


def answer(qid, flags, question, rcode, addr=None):
    rd = flags & 0x0100
    head = struct.pack(">HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1,
                       1 if addr else 0, 0, 0)
    out = head + question
    if addr:
        # the name is the question's (a pointer to offset 12), class IN
        data = socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
        out += struct.pack(">HHHIH", 0xC00C, _AAAA if ":" in addr else _A, 1, TTL,
                           len(data)) + data
    return out


class Resolver:
    """Each socket is served by a thread of its own. A gateway that goes
    away has its thread woken (shutdown) and joined before update()
    returns: a thread still blocked in recvfrom would keep the port bound
    after close(), and a new network on the same gateway would get no
    resolver."""

    def __init__(self, upstreams=()):
        self.upstreams = list(upstreams)
        self._lock = threading.Lock()
        self._socks = {}     # gateway -> (socket, thread)
        self._names = {}     # gateway -> {name: ip}
        self._names6 = {}    # gateway -> {name: IPv6 address}

    def update(self, table):
        """table: {gateway address: {name: ip}}; binds new gateways,
        closes gone ones."""
        with self._lock:
            for gw in list(self._socks):
                if gw not in table:
                    _stop(*self._socks.pop(gw))
            self._names = {gw: dict(names) for gw, names in table.items()}
            for gw in table:
                if gw not in self._socks:
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    try:
                        s.bind((gw, 53))
                    except OSError as e:
                        s.close()
                        print(f"berthd: embedded DNS on {gw}:53: {e.strerror}; "
                              "retried at the next network change", file=sys.stderr, flush=True)
                        continue
                    t = threading.Thread(target=self._serve, args=(gw, s), daemon=True,
                                         name=f"dns-{gw}")
                    self._socks[gw] = (s, t)
                    t.start()

    def set_aaaa(self, table):
        """table: {gateway address: {name: IPv6 address}} (AAAA answers)."""
        with self._lock:
            self._names6 = {gw: dict(names) for gw, names in table.items()}

    def close(self):
        self.update({})

    def _serve(self, gw, s):
        while True:
            try:
                data, peer = s.recvfrom(4096)
            except OSError:
                return   # closed
            if peer is None:
                return   # shut down: the network is gone
            q = parse_query(data)
            if q is None:
                continue
            qid, flags, name, qtype, question = q
            v4, v6 = self._names.get(gw, {}).get(name), self._names6.get(gw, {}).get(name)
            if v4 is not None or v6 is not None:
                addr = v4 if qtype == _A else v6 if qtype == _AAAA else None
                reply = answer(qid, flags, question, _NOERROR, addr)
            else:
                reply = self._forward(data) or answer(
                    qid, flags, question, _NXDOMAIN if not self.upstreams else _SERVFAIL)
            try:
                s.sendto(reply, peer)
            except OSError:
                pass

    def _forward(self, data):
        for up in self.upstreams:
            f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            f.settimeout(2.0)
            try:
                f.sendto(data, (up, 53))
                return f.recv(4096)
            except OSError:
                continue
            finally:
                f.close()
        return None


def _stop(s, t):
    try:
        # wakes the thread's recvfrom (ENOTCONN on an unconnected UDP
        # socket, but the wake-up happens all the same)
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    if t is not threading.current_thread():
        t.join(5)
    s.close()


def host_upstreams(path="/etc/resolv.conf"):
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
                    out.append(parts[1])
    except OSError:
        pass
    return out
