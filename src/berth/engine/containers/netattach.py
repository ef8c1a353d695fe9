"""Which networks a container is on, as records: NetworkSettings.Networks
with Docker's endpoint fields. The packets themselves (veth, bridge,
addresses) are the network driver's; until it lands, a container on a
bridge network has its own network namespace with loopback only."""
from berth.errors import ConfigError, Conflict

SPECIAL = ("host", "none")


def _endpoint(net, cfg):
    cfg = cfg or {}
    return {"IPAMConfig": cfg.get("IPAMConfig"), "Links": cfg.get("Links"),
            "Aliases": cfg.get("Aliases"), "NetworkID": net["Id"], "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": "",
            "DriverOpts": cfg.get("DriverOpts")}


def initial(networks, host, networking_config):
    """-> NetworkSettings.Networks for a new container (raises NotFound
    for an unknown network)."""
    mode = host.get("NetworkMode") or "bridge"
    if mode == "default":
        mode = "bridge"
    if mode.startswith("container:"):
        return {}
    eps = (networking_config or {}).get("EndpointsConfig") or {}
    if not isinstance(eps, dict):
        raise ConfigError("NetworkingConfig.EndpointsConfig: must be an object")
    # the docker CLI names the default network "default"
    eps = {("bridge" if k == "default" else k): v for k, v in eps.items()}
    net = networks.find(mode)
    out = {net["Name"]: _endpoint(net, eps.get(mode) or eps.get(net["Name"]))}
    for name, cfg in eps.items():
        if name in (mode, net["Name"]):
            continue
        other = networks.find(name)
        if mode in SPECIAL or other["Name"] in SPECIAL:
            raise ConfigError(f"container cannot be connected to {other['Name']} and {mode} at once")
        out[other["Name"]] = _endpoint(other, cfg)
    return out


def settings(c):
    ns = c.data.setdefault("NetworkSettings", {})
    return ns.setdefault("Networks", {})


def _cidr(ep, addr, prefixlen):
    return f"{ep[addr]}/{ep.get(prefixlen)}" if ep.get(addr) else ""


def wire(containers, networks):
    def attached(nid):
        out = {}
        for c in containers.list(all=True):
            for name, ep in (c.data.get("NetworkSettings") or {}).get("Networks", {}).items():
                if ep.get("NetworkID") == nid:
                    out[c.id] = {"Name": c.name.lstrip("/"), "EndpointID": ep.get("EndpointID", ""),
                                 "MacAddress": ep.get("MacAddress", ""),
                                 # as dockerd: "172.18.0.2/16", "fd00:1::2/64"
                                 "IPv4Address": _cidr(ep, "IPAddress", "IPPrefixLen"),
                                 "IPv6Address": _cidr(ep, "GlobalIPv6Address",
                                                      "GlobalIPv6PrefixLen")}
        return out

    def on_connect(net, ref, endpoint_config):
        c = containers.get(ref)
        mode = c.host_config.get("NetworkMode") or "bridge"
        if mode in SPECIAL or mode.startswith("container:") or net["Name"] in SPECIAL:
            raise Conflict(f"container sharing network namespace with another container or "
                           f"host cannot be connected to any other network ({mode})")
        with c.cond:
            nets = settings(c)
            if net["Name"] in nets:
                raise Conflict(f"endpoint with name {c.name.lstrip('/')} already exists in "
                               f"network {net['Name']}")
            nets[net["Name"]] = _endpoint(net, endpoint_config.get("EndpointConfig")
                                          if "EndpointConfig" in endpoint_config else endpoint_config)
            c.save()
            if c.running and c.state["Pid"]:
                # a running container gets its new interface now
                try:
                    networks.driver.connect(c, net["Name"])
                except Exception:
                    del nets[net["Name"]]
                    c.save()
                    raise

    def on_disconnect(net, ref, force):
        c = containers.get(ref)
        with c.cond:
            nets = settings(c)
            if net["Name"] not in nets:
                raise Conflict(f"container {c.id[:12]} is not connected to network {net['Name']}")
            if c.running and c.state["Pid"]:
                networks.driver.disconnect(c, net["Id"])
            del nets[net["Name"]]
            c.save()

    networks.attached = attached
    networks.on_connect = on_connect
    networks.on_disconnect = on_disconnect
