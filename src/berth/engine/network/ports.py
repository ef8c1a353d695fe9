"""Published ports: HostConfig.PortBindings and PublishAllPorts -> a list
of mappings {"proto", "host_ip", "host_port", "port"}; the kernel does the
forwarding (nftables DNAT), no proxy copies bytes."""
import errno
import ipaddress
import os
import socket

from berth.errors import BerthError, ConfigError, Conflict

EPHEMERAL_START = 49153
EPHEMERAL_END = 65535


def _split(key):
    port, _, proto = str(key).partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise ConfigError(f"port {key!r}: unknown protocol {proto!r}")
    try:
        p = int(port)
    except ValueError:
        raise ConfigError(f"port {key!r}: not a number") from None
    if not 0 < p < 65536:
        raise ConfigError(f"port {key!r}: out of range")
    return p, proto


def bind_errno(host_ip, port, proto):
    """None if this process can bind host_ip:port now, else the errno."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    v6 = ":" in host_ip
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind)
    try:
        if v6:
            # [::] is the IPv6 wildcard only; 0.0.0.0 is checked on its own
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip, port))
        return None
    except OSError as e:
        return e.errno
    finally:
        s.close()


def _bindable(host_ip, port, proto):
    """Nobody on the host holds host_ip:port (checked by binding it)."""
    if proto == "sctp":
        return True
    err = bind_errno(host_ip, port, proto)
    if err in (errno.EADDRINUSE, errno.EACCES):
        return False
    if err == errno.EADDRNOTAVAIL:
        raise BerthError(f"cannot publish on {_show(host_ip)}:{port}: the host has no such "
                         "address")
    if err is not None:
        raise OSError(err, os.strerror(err))
    return True


def _clash(a_ip, b_ip):
    if (":" in a_ip) != (":" in b_ip):
        return False     # one family's wildcard does not take the other's
    return a_ip in ("0.0.0.0", "::") or b_ip in ("0.0.0.0", "::") or a_ip == b_ip


def _show(ip):
    return f"[{ip}]" if ":" in ip else ip


def _host_ips(ip, key, ipv6):
    """A binding's HostIp -> the addresses it publishes on: an empty one
    is both families' wildcard when the container has an IPv6 address
    (as dockerd shows 0.0.0.0 and ::)."""
    if not ip:
        return ["0.0.0.0", "::"] if ipv6 else ["0.0.0.0"]
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise ConfigError(f"port {key}: invalid host address {ip!r}") from None
    if addr.version == 6 and addr.is_loopback:
        raise ConfigError(f"port {key}: cannot publish on [::1]: the kernel does not forward "
                          "::1 to a container (IPv6 has no route_localnet)",
                          hint="publish on 127.0.0.1, or on [::] and connect to another "
                               "address of the host")
    if addr.version == 6 and not ipv6:
        raise ConfigError(f"port {key}: cannot publish on [{addr}]: the container has no IPv6 "
                          "address", hint="put it on a network made with --ipv6")
    return [str(addr)]


def plan(host_config, config, others, ipv6=False):
    """-> mappings for a container. others: the mappings of every other
    container (a host port is given once per protocol and address).
    ipv6: the container has an IPv6 address to publish on."""
    taken = list(others)
    out = []
    bindings = host_config.get("PortBindings") or {}
    if not isinstance(bindings, dict):
        raise ConfigError("HostConfig.PortBindings: must be an object")

    def free(ip, port, proto):
        if any(m["proto"] == proto and m["host_port"] == port and _clash(m["host_ip"], ip)
               for m in taken + out):
            return False
        return _bindable(ip, port, proto)

    def pick(ips, proto, lo=EPHEMERAL_START, hi=EPHEMERAL_END):
        # one port for every address of a binding, as dockerd gives
        for port in range(lo, hi + 1):
            if all(free(ip, port, proto) for ip in ips):
                return port
        raise Conflict(f"no free host port for {proto} on {', '.join(map(_show, ips))} "
                       f"in {lo}-{hi}")

    def add(ips, proto, host_port, port):
        out.extend({"proto": proto, "host_ip": ip, "host_port": host_port, "port": port}
                   for ip in ips)

    for key in sorted(bindings):
        port, proto = _split(key)
        for b in bindings[key] or [{}]:
            b = b or {}
            ips = _host_ips(b.get("HostIp"), key, ipv6)
            hp = str(b.get("HostPort") or "")
            if not hp:
                host_port = pick(ips, proto)
            elif "-" in hp:
                lo, _, hi = hp.partition("-")
                host_port = pick(ips, proto, int(lo), int(hi))
            else:
                try:
                    host_port = int(hp)
                except ValueError:
                    raise ConfigError(f"port {key}: invalid host port {hp!r}") from None
                for ip in ips:
                    if not free(ip, host_port, proto):
                        raise Conflict(f"Bind for {_show(ip)}:{host_port} failed: port is "
                                       "already allocated")
            add(ips, proto, host_port, port)
    if host_config.get("PublishAllPorts"):
        bound = {(m["port"], m["proto"]) for m in out}
        ips = _host_ips("", None, ipv6)
        for key in sorted((config.get("ExposedPorts") or {})):
            port, proto = _split(key)
            if (port, proto) not in bound:
                add(ips, proto, pick(ips, proto), port)
    return out


def shown(mappings, config):
    """NetworkSettings.Ports as Docker shows it."""
    out = {}
    for key in (config.get("ExposedPorts") or {}):
        port, proto = _split(key)
        out[f"{port}/{proto}"] = None
    for m in mappings:
        k = f"{m['port']}/{m['proto']}"
        out[k] = (out.get(k) or []) + [{"HostIp": m["host_ip"], "HostPort": str(m["host_port"])}]
    return out
