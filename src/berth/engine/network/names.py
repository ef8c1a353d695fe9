"""Who is called what on which network, from the endpoint records: the
containers' /etc/hosts entries, the embedded resolver's table, and the
resolv.conf of a container on a user network."""
from berth.engine.network import hosts


def entries(rec, records):
    own_names = []
    full = rec["hostname"] + ("." + rec["domainname"] if rec.get("domainname") else "")
    prim = rec["endpoints"][0]
    own_names = [full, rec["hostname"]]
    if not prim["default"]:
        own_names += [rec["name"]] + prim.get("aliases", [])
    entries = [(ip, own_names) for ip in _ips(prim)]
    mine = {e["network_id"] for e in rec["endpoints"] if not e["default"]}
    for cid, other in sorted(records.items()):
        if cid == rec["id"]:
            continue
        for e in other["endpoints"]:
            if e["network_id"] in mine:
                entries += [(ip, [other["name"]] + e.get("aliases", []) + [cid[:12]])
                            for ip in _ips(e)]
    return entries


def _ips(e):
    """An endpoint's addresses, IPv4 first (dockerd's order in /etc/hosts)."""
    return [e["ip"]] + ([e["ip6"]] if e.get("ip6") else [])


def write_hosts(cid, records):
    rec = records.get(cid)
    if not rec or not rec.get("hosts_path") or not rec.get("endpoints"):
        return
    text = hosts.read(rec["hosts_path"])
    hosts.write_in_place(rec["hosts_path"],
                         hosts.render(hosts.base(text), entries(rec, records)))


def dns_table(records, key="ip"):
    """{gateway of a user bridge network: {name: ip}} for the resolver;
    key "ip6": the IPv6 addresses (AAAA) instead."""
    table = {}
    for cid, rec in records.items():
        for e in rec["endpoints"]:
            if e["default"] or e.get("parent") or not e.get("bridge"):
                continue
            names = table.setdefault(e["gateway"], {})
            for n in [rec["name"], rec.get("hostname"), cid[:12]] + e.get("aliases", []):
                if n and e.get(key):
                    names[n.lower()] = e[key]
    return table


def write_resolv(c, rec):
    """A container whose first network is a user bridge asks the
    embedded resolver, on that network's gateway, and nobody else."""
    prim = rec["endpoints"][0]
    path = c.data.get("ResolvConfPath")
    if prim["default"] or prim.get("parent") or not path or c.host_config.get("Dns"):
        return
    hosts.write_in_place(path, f"nameserver {prim['gateway']}\noptions ndots:0\n")
