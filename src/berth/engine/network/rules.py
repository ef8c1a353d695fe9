"""berth's nftables rules, generated whole from the driver's records: the
tables `ip <table>` and `bridge <table>` are replaced in one atomic
transaction on every change, so a crash can leave nothing the next
restore() does not either re-assert or remove."""
from berth.errors import BerthError
from berth.engine.network import nft


def apply(table, records, bridges):
    try:
        if not bridges and not records:
            for fam in ("ip", "bridge"):
                nft.delete_table(fam, table)
            return
        nft.replace_table("ip", table, ip_rules(records, bridges))
        nft.replace_table("bridge", table, bridge_rules(records, bridges))
    except BerthError as e:
        raise BerthError(f"firewall rules: {e}") from None


def ip_rules(records, bridges):
    m, meta, pl, ct = nft.match, nft.meta, nft.payload, nft.ct
    R = nft.rule
    out = [nft.chain("prerouting", "prerouting", "nat", -100),
           nft.chain("output", "output", "nat", -100),
           nft.chain("postrouting", "postrouting", "nat", 100),
           nft.chain("ports"),
           nft.chain("forward", "forward", "filter", 0)]
    local = m({"fib": {"flags": ["daddr"], "result": "type"}}, "local")
    out.append(R("prerouting", local, {"jump": {"target": "ports"}}))
    out.append(R("output", local, {"jump": {"target": "ports"}}))
    for cid, rec in sorted(records.items()):
        for p in rec.get("ports", []):
            expr = []
            if p["host_ip"] != "0.0.0.0":
                expr.append(m(pl("ip", "daddr"), p["host_ip"]))
            expr.append(m(pl(p["proto"], "dport"), p["host_port"]))
            expr.append({"dnat": {"addr": p["ip"], "port": p["port"]}})
            out.append(R("ports", *expr, comment=cid[:12]))
    names = sorted(bridges)
    for b in names:
        info = bridges[b]
        sub = {"prefix": {"addr": info["subnet"].split("/")[0], "len": info["prefixlen"]}}
        # 127.0.0.1:<port> DNATed into the bridge: the container answers the host
        out.append(R("postrouting", m(meta("oifname"), b),
                     m(pl("ip", "saddr"), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
                     {"masquerade": None}))
        # hairpin: a container reaching a published port of its own bridge
        out.append(R("postrouting", m(meta("oifname"), b), m(pl("ip", "saddr"), sub),
                     m(ct("status"), "dnat", op="in"), {"masquerade": None}))
        if not info.get("internal") and info.get("masq", True):
            out.append(R("postrouting", m(pl("ip", "saddr"), sub),
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
            # anti-spoofing: a port sends only its own MAC and IPv4 address
            out.append(R("prerouting", m(meta("iifname"), v),
                         m(pl("ether", "saddr"), e["mac"], op="!="), {"drop": None},
                         comment=cid[:12]))
            out.append(R("prerouting", m(meta("iifname"), v),
                         m(pl("ether", "type"), {"set": ["ip", "arp"]}, op="!="),
                         {"drop": None}))
            out.append(R("prerouting", m(meta("iifname"), v),
                         m(pl("ip", "saddr"), e["ip"], op="!="), {"drop": None}))
            out.append(R("prerouting", m(meta("iifname"), v),
                         m(pl("arp", "saddr ether"), e["mac"], op="!="), {"drop": None}))
            out.append(R("prerouting", m(meta("iifname"), v),
                         m(pl("arp", "saddr ip"), e["ip"], op="!="), {"drop": None}))
    return out
