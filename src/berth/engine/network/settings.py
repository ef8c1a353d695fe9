"""NetworkSettings in a container's inspect data, shared by the network
drivers (bridge and slirp4netns)."""

_ENDPOINT_EMPTY = (("IPAddress", ""), ("IPPrefixLen", 0), ("Gateway", ""), ("MacAddress", ""),
                   ("EndpointID", ""), ("GlobalIPv6Address", ""), ("GlobalIPv6PrefixLen", 0),
                   ("IPv6Gateway", ""))
_TOP_EMPTY = _ENDPOINT_EMPTY + (("SandboxKey", ""), ("Ports", {}), ("Bridge", ""),
                                ("SandboxID", ""))


def clear(c):
    """A stopped container shows no addresses, ports or sandbox (Docker's
    view); the networks it is attached to stay listed. Saves only on a
    change."""
    with c.cond:
        ns = c.data.get("NetworkSettings")
        if not ns:
            return
        changed = False
        for ep in (ns.get("Networks") or {}).values():
            for k, v in _ENDPOINT_EMPTY:
                if ep.get(k) != v:
                    ep[k] = v
                    changed = True
        for k, v in _TOP_EMPTY:
            if k in ns and ns[k] != v:
                ns[k] = v
                changed = True
        if changed:
            c.save()
