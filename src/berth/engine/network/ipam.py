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
    if subnet.version != 4:
        raise BerthError(f"subnet {subnet}: only IPv4 is supported")
    gw = ipaddress.ip_address(cfg.get("Gateway") or subnet.network_address + 1)
    rng = ipaddress.ip_network(cfg["IPRange"], strict=False) if cfg.get("IPRange") else subnet
    reserved = {gw, subnet.network_address, subnet.broadcast_address}
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
    taken = {ipaddress.ip_address(t) for t in taken}
    if requested:
        try:
            ip = ipaddress.ip_address(requested)
        except ValueError:
            raise BerthError(f"invalid address {requested!r}") from None
        if ip not in subnet:
            raise BerthError(f"address {ip} is not inside subnet {subnet}")
        if ip in reserved or ip in taken:
            raise Conflict(f"address {ip} is already in use on subnet {subnet}")
        return str(ip)
    for ip in rng.hosts() if rng.num_addresses > 2 else rng:
        if ip not in reserved and ip not in taken and ip in subnet:
            return str(ip)
    raise Conflict(f"no available addresses left in {rng}")


def mac_for(ip):
    """Docker's rule: 02:42 followed by the four bytes of the IPv4 address."""
    b = ipaddress.ip_address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)
