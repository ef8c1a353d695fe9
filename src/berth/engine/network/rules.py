"""berth's nftables rules, generated whole from the driver's records: the
tables `ip <table>`, `ip6 <table>` (while some bridge has IPv6) and
`bridge <table>` are replaced in one atomic transaction on every change,
so a crash can leave nothing the next restore() does not either re-assert
or remove.

IPv6 differs from IPv4 in one place: the kernel has no route_localnet for
IPv6, so a connection from the host to [::1]:<published port> cannot be
DNATed to a container (the reply, addressed to ::1, is dropped when it
arrives on the bridge). ::1 is left out of the DNAT, so such a connection
is refused at once rather than hanging; the host's other addresses
(the bridge's gateway, any global address) work as for IPv4."""
import ipaddress

from berth.errors import BerthError
from berth.engine.network import ipam, nft

FAMILIES = ("ip", "ip6", "bridge")


def apply(table, records, bridges):
    try:
        if not bridges and not records:
            remove(table)
            return
        has6 = any(b.get("subnet6") for b in bridges.values())
        nft.replace_tables(table, {"ip": ip_rules(records, bridges, "ip"),
                                   "ip6": ip_rules(records, bridges, "ip6") if has6 else None,
                                   "bridge": bridge_rules(records, bridges)})
    except BerthError as e:
        raise BerthError(f"firewall rules: {e}") from None


def remove(table):
    nft.replace_tables(table, {fam: None for fam in FAMILIES})


def ip_rules(records, bridges, family):
    """The nat and filter rules of one address family ("ip" or "ip6")."""
    m, meta, pl, ct = nft.match, nft.meta, nft.payload, nft.ct
    R = nft.rule
    v6 = family == "ip6"
    out = [nft.chain("prerouting", "prerouting", "nat", -100),
           nft.chain("output", "output", "nat", -100),
           nft.chain("postrouting", "postrouting", "nat", 100),
           nft.chain("ports"),
           nft.chain("forward", "forward", "filter", 0)]
    local = m({"fib": {"flags": ["daddr"], "result": "type"}}, "local")
    out.append(R("prerouting", local, {"jump": {"target": "ports"}}))
    # (::1 cannot be DNATed out of the host, see above)
    not_lo = [m(pl("ip6", "daddr"), "::1", op="!=")] if v6 else []
    out.append(R("output", local, *not_lo, {"jump": {"target": "ports"}}))
    for cid, rec in sorted(records.items()):
        for p in rec.get("ports", []):
            if (":" in p["host_ip"]) != v6:
                continue
            expr = []
            if p["host_ip"] not in ("0.0.0.0", "::"):
                expr.append(m(pl(family, "daddr"), p["host_ip"]))
            expr.append(m(pl(p["proto"], "dport"), p["host_port"]))
            expr.append({"dnat": {"addr": p["ip"], "port": p["port"]}})
            out.append(R("ports", *expr, comment=cid[:12]))
    names = sorted(bridges)
    for b in names:
        info = bridges[b]
        subnet, plen = (info.get("subnet6"), info.get("prefixlen6")) if v6 else \
            (info["subnet"], info["prefixlen"])
        if not subnet:
            continue
        sub = {"prefix": {"addr": subnet.split("/")[0], "len": plen}}
        if not v6:
            # 127.0.0.1:<port> DNATed into the bridge: the container answers the host
            out.append(R("postrouting", m(meta("oifname"), b),
                         m(pl("ip", "saddr"), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
                         {"masquerade": None}))
        # hairpin: a container reaching a published port of its own bridge
        out.append(R("postrouting", m(meta("oifname"), b), m(pl(family, "saddr"), sub),
                     m(ct("status"), "dnat", op="in"), {"masquerade": None}))
        if not info.get("internal") and info.get("masq", True):
            out.append(R("postrouting", m(pl(family, "saddr"), sub),
                         m(meta("oifname"), b, op="!="), {"masquerade": None}))
    for b in names:
        if bridges[b].get("internal"):
            out.append(R("forward", m(meta("iifname"), b), m(meta("oifname"), b, op="!="),
                         {"drop": None}))
            out.append(R("forward", m(meta("oifname"), b), m(meta("iifname"), b, op="!="),
                         {"drop": None}))
    out.append(R("forward", m(ct("state"), {"set": ["established", "related"]}, op="in"),
                 {"accept": None}))
    for b in names:
        others = [o for o in names if o != b]
        if others:
            # networks are isolated from each other
            out.append(R("forward", m(meta("iifname"), b),
                         m(meta("oifname"), {"set": others}), {"drop": None}))
        # from outside into a bridge: only published ports (DNAT)
        out.append(R("forward", m(meta("oifname"), b), m(ct("status"), "dnat", op="in"),
                     {"accept": None}))
        out.append(R("forward", m(meta("oifname"), b), m(meta("iifname"), b, op="!="),
                     {"drop": None}))
    return out


def bridge_rules(records, bridges):
    m, meta, pl = nft.match, nft.meta, nft.payload
    R = nft.rule
    out = [nft.chain("prerouting", "prerouting", "filter", -200),
           nft.chain("forward", "forward", "filter", 0)]
    for b in sorted(bridges):
        ports_of = sorted(e["veth"] for r in records.values() for e in r["endpoints"]
                          if e["bridge"] == b and e["veth"])
        if ports_of and not bridges[b].get("icc", True):
            # frames from one container port to another: inter-container
            # traffic off (traffic to the bridge itself is not forwarded)
            out.append(R("forward", m(meta("iifname"), {"set": ports_of}), {"drop": None}))
    for cid, rec in sorted(records.items()):
        for e in rec["endpoints"]:
            v = e["veth"]
            if not v:
                continue   # macvlan: no port on a host bridge to guard
            port = m(meta("iifname"), v)
            # anti-spoofing: a port sends only its own MAC and IPv4 address
            out.append(R("prerouting", port,
                         m(pl("ether", "saddr"), e["mac"], op="!="), {"drop": None},
                         comment=cid[:12]))
            types = ["ip", "arp"] + (["ip6"] if e.get("ip6") else [])
            out.append(R("prerouting", port,
                         m(pl("ether", "type"), {"set": types}, op="!="),
                         {"drop": None}))
            out.append(R("prerouting", port,
                         m(pl("ip", "saddr"), e["ip"], op="!="), {"drop": None}))
            out.append(R("prerouting", port,
                         m(pl("arp", "saddr ether"), e["mac"], op="!="), {"drop": None}))
            out.append(R("prerouting", port,
                         m(pl("arp", "saddr ip"), e["ip"], op="!="), {"drop": None}))
            if e.get("ip6"):
                out += _ndp_rules(port, e)
    return out


def _ndp_rules(port, e):
    """IPv6 as ARP above: the port's own addresses (its global one, the
    link-local one its MAC gives, :: while it checks for duplicates), no
    router advertisements or redirects, and neighbour messages only about
    itself."""
    m, pl, R = nft.match, nft.payload, nft.rule
    ll = ipam.link_local(e["mac"])
    icmp = pl("icmpv6", "type")

    def raw(offset, length):   # a field of the ICMPv6 message, in bits
        return {"payload": {"base": "th", "offset": offset, "len": length}}
    mac = "0x" + e["mac"].replace(":", "")
    out = [R("prerouting", port, m(pl("ip6", "saddr"), {"set": [e["ip6"], ll, "::"]}, op="!="),
             {"drop": None}),
           R("prerouting", port, m(icmp, {"set": ["nd-router-advert", "nd-redirect"]}),
             {"drop": None}),
           # the target of an advertisement (bits 64-191) must be its own
           R("prerouting", port, m(icmp, "nd-neighbor-advert"),
             m(raw(64, 128), {"set": [_hex6(e["ip6"]), _hex6(ll)]}, op="!="), {"drop": None})]
    # the link-layer address option right after the target (source: type 1
    # in a solicitation, target: type 2 in an advertisement) must be its MAC
    for kind, option in (("nd-neighbor-solicit", 1), ("nd-neighbor-advert", 2)):
        out.append(R("prerouting", port, m(icmp, kind), m(raw(192, 8), option),
                     m(raw(208, 48), mac, op="!="), {"drop": None}))
    return out


def _hex6(ip):
    return "0x" + ipaddress.IPv6Address(ip).packed.hex()
