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
    s = socket.socket(socket.AF_INET, kind)
    try:
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
        raise BerthError(f"cannot publish on {host_ip}:{port}: the host has no such address")
    if err is not None:
        raise OSError(err, os.strerror(err))
    return True


def _clash(a_ip, b_ip):
    return a_ip == "0.0.0.0" or b_ip == "0.0.0.0" or a_ip == b_ip


def plan(host_config, config, others):
    """-> mappings for a container. others: the mappings of every other
    container (a host port is given once per protocol and address)."""
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

    def pick(ip, proto, lo=EPHEMERAL_START, hi=EPHEMERAL_END):
        for port in range(lo, hi + 1):
            if free(ip, port, proto):
                return port
        raise Conflict(f"no free host port for {proto} on {ip} in {lo}-{hi}")

    for key in sorted(bindings):
        port, proto = _split(key)
        for b in bindings[key] or [{}]:
            b = b or {}
            ip = b.get("HostIp") or "0.0.0.0"
            try:
                if ipaddress.ip_address(ip).version != 4:
                    continue      # IPv6 bindings: no IPv6 support yet
            except ValueError:
                raise ConfigError(f"port {key}: invalid host address {ip!r}") from None
            hp = str(b.get("HostPort") or "")
            if not hp:
                host_port = pick(ip, proto)
            elif "-" in hp:
                lo, _, hi = hp.partition("-")
                host_port = pick(ip, proto, int(lo), int(hi))
            else:
                try:
                    host_port = int(hp)
                except ValueError:
                    raise ConfigError(f"port {key}: invalid host port {hp!r}") from None
                if not free(ip, host_port, proto):
                    raise Conflict(f"Bind for {ip}:{host_port} failed: port is already allocated")
            out.append({"proto": proto, "host_ip": ip, "host_port": host_port, "port": port})
    if host_config.get("PublishAllPorts"):
        bound = {(m["port"], m["proto"]) for m in out}
        for key in sorted((config.get("ExposedPorts") or {})):
            port, proto = _split(key)
            if (port, proto) not in bound:
                out.append({"proto": proto, "host_ip": "0.0.0.0",
                            "host_port": pick("0.0.0.0", proto), "port": port})
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
