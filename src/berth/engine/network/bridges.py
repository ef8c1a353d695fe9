"""Which bridge (or macvlan parent) a network gets, with which addresses:
a registry entry becomes what the plumbing needs, and the bridge is made
(recorded in bridges.json first)."""
import ipaddress

from berth.errors import BerthError, ConfigError
from berth.engine.network import ipam, netlink

ICC_OPTION = "com.docker.network.bridge.enable_icc"
MASQ_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
MTU_OPTION = "com.docker.network.driver.mtu"


def _yes(v, default):
    if v is None or v == "":
        return default
    return str(v).lower() in ("1", "true", "yes")


def _of_family(configs, version):
    """The first IPAM config entry of one address family (a copy), or None."""
    for c in configs:
        subnet = c.get("Subnet") or ""
        if subnet and (":" in subnet) == (version == 6):
            return dict(c)
    return None


def _v6_info(cfg6):
    if not cfg6:
        return {"cfg6": None, "subnet6": None, "gateway6": None, "prefixlen6": None}
    subnet, gw, _, _ = ipam.pool(cfg6)
    return {"cfg6": cfg6, "subnet6": str(subnet), "gateway6": str(gw),
            "prefixlen6": subnet.prefixlen}


def v6_of(bridge):
    """A bridge record's IPv6 gateway as ensure_bridge takes it, or None."""
    return (bridge["gateway6"], bridge["prefixlen6"]) if bridge.get("subnet6") else None


class Bridges:
    def __init__(self, cfg, tag, default_bridge, records):
        self.cfg = cfg
        self.tag = tag
        self.default_bridge = default_bridge
        self.records = records

    def info(self, net):
        """A registry entry -> what the plumbing needs (bridge name, pool...)."""
        if net["Driver"] == "macvlan":
            return self._macvlan_info(net)
        if net["Driver"] != "bridge":
            raise BerthError(f"network {net['Name']}: driver {net['Driver']!r} is not "
                             "supported by berth's network driver yet",
                             hint="use a bridge or macvlan network")
        default = net["Name"] == "bridge"
        configs = (net.get("IPAM") or {}).get("Config") or []
        if default and self.cfg.bip:
            try:
                iface = ipaddress.ip_interface(self.cfg.bip)
            except ValueError:
                raise ConfigError(f"--bip {self.cfg.bip!r}: expected an address with a prefix, "
                                  "like 172.17.0.1/16") from None
            cfg = {"Subnet": str(iface.network), "Gateway": str(iface.ip)}
            if self.cfg.fixed_cidr:
                cfg["IPRange"] = self.cfg.fixed_cidr
        elif default and self.records.bridges().get(self.default_bridge, {}).get("moved"):
            b = self.records.bridges()[self.default_bridge]
            cfg = {"Subnet": b["subnet"], "Gateway": b["gateway"]}
        elif _of_family(configs, 4):
            cfg = _of_family(configs, 4)
        else:
            raise BerthError(f"network {net['Name']} has no IPv4 subnet")
        subnet, gw, _, _ = ipam.pool(cfg)
        opts = net.get("Options") or {}
        moved = default and bool(self.records.bridges().get(self.default_bridge, {}).get("moved"))
        if default:
            cfg6 = {"Subnet": self.cfg.fixed_cidr_v6} if self.cfg.ipv6 else None
        else:
            cfg6 = _of_family(configs, 6) if net.get("EnableIPv6") else None
        return {"moved": moved, "network_id": net["Id"], "network": net["Name"], "default": default,
                "bridge": self.default_bridge if default else "br-" + net["Id"][:12],
                "cfg": cfg, "subnet": str(subnet), "gateway": str(gw),
                "prefixlen": subnet.prefixlen, **_v6_info(cfg6),
                "internal": bool(net.get("Internal")),
                "icc": self.cfg.icc if default else _yes(opts.get(ICC_OPTION), True),
                "masq": self.cfg.ip_masq and _yes(opts.get(MASQ_OPTION), True),
                "mtu": int(opts.get(MTU_OPTION) or self.cfg.mtu)}

    def _macvlan_info(self, net):
        opts = net.get("Options") or {}
        parent = opts.get("parent")
        if not parent:
            raise BerthError(f"network {net['Name']}: a macvlan network needs -o parent=<host "
                             "interface>")
        mode = opts.get("macvlan_mode") or "bridge"
        if mode != "bridge":
            raise BerthError(f"network {net['Name']}: macvlan_mode {mode!r} is not supported",
                             hint="bridge")
        cfg = _of_family((net.get("IPAM") or {}).get("Config") or [], 4)
        if not cfg:
            raise BerthError(f"network {net['Name']} has no IPv4 subnet")
        subnet, gw, _, _ = ipam.pool(cfg)
        return {"kind": "macvlan", "parent": parent, "moved": False, "network_id": net["Id"],
                "network": net["Name"], "default": False, "bridge": None, "cfg": cfg,
                "subnet": str(subnet), "gateway": str(gw), "prefixlen": subnet.prefixlen,
                **_v6_info(None),
                "internal": bool(net.get("Internal")), "icc": True, "masq": False,
                "mtu": int(opts.get(MTU_OPTION) or self.cfg.mtu)}

    def ensure(self, ipr, info):
        bridges = self.records.bridges()
        if (info["default"] and not self.cfg.bip
                and netlink.index(ipr, info["bridge"]) is None):
            self._move_default(ipr, info)
        want = {k: info[k] for k in ("network_id", "subnet", "gateway", "prefixlen",
                                     "internal", "icc", "masq", "default")}
        if info["subnet6"]:
            want.update({k: info[k] for k in ("subnet6", "gateway6", "prefixlen6")})
        if info.get("moved"):
            want["moved"] = True
        if bridges.get(info["bridge"]) != want:
            bridges[info["bridge"]] = want
            self.records.write_bridges(bridges)
        netlink.ensure_bridge(ipr, info["bridge"], info["gateway"], info["prefixlen"],
                              info["mtu"], v6=v6_of(want))

    def _move_default(self, ipr, info):
        """A daemon whose default subnet another bridge already routes (a
        Docker's docker0 on 172.17/16, or another berthd: tests run several
        at once) takes a free /24 of 10.213.0.0/16 instead of failing; give
        daemons distinct --bip values to keep inspect exact."""
        try:
            netlink.check_subnet_free(ipr, info["subnet"], info["bridge"])
            return
        except BerthError:
            pass
        start = int(self.tag, 16) % 256 if self.tag else 0
        for k in range(256):
            sub = ipaddress.ip_network(f"10.213.{(start + k) % 256}.0/24")
            try:
                netlink.check_subnet_free(ipr, str(sub), info["bridge"])
            except BerthError:
                continue
            info.update({"subnet": str(sub), "gateway": str(sub.network_address + 1),
                         "prefixlen": 24, "moved": True,
                         "cfg": {"Subnet": str(sub), "Gateway": str(sub.network_address + 1)}})
            return
        raise BerthError("no free subnet for the default bridge", hint="use --bip")
