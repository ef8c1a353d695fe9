"""Address management for one network: which address a new endpoint gets.

The leases themselves are the driver's endpoint records (one file per
container under <root>/network/endpoints/), so an address is taken
exactly as long as a record names it; this module only chooses."""
import ipaddress

from berth.errors import BerthError, Conflict


def pool(cfg):
    """An IPAM config entry ({"Subnet", "Gateway", "IPRange",
    "AuxiliaryAddresses"}) -> (subnet, gateway, range, reserved set)."""
    try:
        subnet = ipaddress.ip_network(cfg["Subnet"], strict=False)
    except (KeyError, ValueError):
        raise BerthError(f"IPAM config {cfg!r}: no valid Subnet") from None
    gw = ipaddress.ip_address(cfg.get("Gateway") or subnet.network_address + 1)
    rng = ipaddress.ip_network(cfg["IPRange"], strict=False) if cfg.get("IPRange") else subnet
    # IPv6 has no broadcast; its first address is the subnet-router anycast
    reserved = {gw, subnet.network_address}
    if subnet.version == 4:
        reserved.add(subnet.broadcast_address)
    for a in (cfg.get("AuxiliaryAddresses") or {}).values():
        try:
            reserved.add(ipaddress.ip_address(a))
        except ValueError:
            pass
    return subnet, gw, rng, reserved


def allocate(cfg, taken, requested=None):
    """-> the address (str) for a new endpoint. taken: addresses in use.
    requested: a static --ip (must be inside the subnet and free)."""
    subnet, gw, rng, reserved = pool(cfg)
    taken = {ipaddress.ip_address(t) for t in taken if t}
    if requested:
        try:
            ip = ipaddress.ip_address(requested)
        except ValueError:
            raise BerthError(f"invalid address {requested!r}") from None
        if ip.version != subnet.version:
            raise BerthError(f"address {ip} is not inside subnet {subnet}",
                             hint="--ip takes an IPv4 address, --ip6 an IPv6 one")
        if ip not in subnet:
            raise BerthError(f"address {ip} is not inside subnet {subnet}")
        if ip in reserved or ip in taken:
            raise Conflict(f"address {ip} is already in use on subnet {subnet}")
        return str(ip)
    for ip in rng.hosts() if rng.num_addresses > 2 else rng:
        if ip not in reserved and ip not in taken and ip in subnet:
            return str(ip)
    raise Conflict(f"no available addresses left in {rng}")


def from_mac(cfg, mac, taken):
    """Docker's rule for the default bridge's --fixed-cidr-v6 of /80 or
    wider: the container's IPv6 address is the prefix followed by its
    MAC's 48 bits -> str, or None when that address is not free."""
    subnet, _, rng, reserved = pool(cfg)
    if rng.prefixlen > 80:
        return None
    ip = rng.network_address + int(mac.replace(":", ""), 16)
    if ip in reserved or ip in {ipaddress.ip_address(t) for t in taken if t}:
        return None
    return str(ip)


def link_local(mac):
    """The fe80::/64 address the kernel makes from a MAC (modified EUI-64)."""
    b = bytearray(int(x, 16) for x in mac.split(":"))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def mac_for(ip):
    """Docker's rule: 02:42 followed by the four bytes of the IPv4 address."""
    b = ipaddress.ip_address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)
