"""The network registry: what `docker network create/ls/inspect/rm` see.

One JSON file per network under root (<id>.json, tmp + fsync + rename).
bridge, host and none always exist and cannot be removed. A user network
without an IPAM config gets the first free /24 from 172.30.0.0 upward, with
the first address as its gateway, so inspect looks like Docker's.

This is only the registry: endpoints (which container is attached with
which address) belong to the containers manager, reached through three
callables it sets: attached(network_id) -> {container_id: endpoint},
on_connect(network, container, endpoint_config),
on_disconnect(network, container, force). The bridges, veths and nft
rules come with the network plumbing."""
import ipaddress
import os
import re
import threading
import time

from berth.errors import BerthError, ConfigError, Conflict, NotFound
from berth.engine.labels import label_matches
from berth.oci import jsonio

POOL = ipaddress.ip_network("172.30.0.0/15")   # 172.30.0.0/24 upward
POOL_PREFIX = 24
DEFAULT_BRIDGE = {"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}
PREDEFINED = {
    "bridge": {"Driver": "bridge", "Options": {
        "com.docker.network.bridge.default_bridge": "true",
        "com.docker.network.bridge.enable_icc": "false",
        "com.docker.network.bridge.enable_ip_masquerade": "true",
        "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
        "com.docker.network.bridge.name": "berth0",
        "com.docker.network.driver.mtu": "1500"}},
    "host": {"Driver": "host", "Options": {}},
    "none": {"Driver": "null", "Options": {}},
}
DRIVERS = ("bridge", "macvlan", "ipvlan")
LIST_FILTERS = ("name", "id", "driver", "label", "type", "scope", "dangling")
PRUNE_FILTERS = ("label", "label!", "until")
# dockerd takes any name (a space, a slash); control characters would
# not print in a table, so they are refused
_NAME = re.compile(r"[^\x00-\x1f\x7f]+\Z")
_ID = re.compile(r"[0-9a-f]{64}\Z")


class NotSupported(BerthError):
    """Asked for something this build cannot do yet (the API answers 501)."""


def _now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _not_supported_connect(network, container, endpoint_config):
    raise NotSupported("network connect is not implemented yet")


def _not_supported_disconnect(network, container, force):
    raise NotSupported("network disconnect is not implemented yet")


class Networks:
    def __init__(self, root, events=None):
        self.root = os.path.abspath(root)
        self.events = events
        self.attached = lambda network_id: {}
        self.on_connect = _not_supported_connect
        self.on_disconnect = _not_supported_disconnect
        self._lock = threading.RLock()
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        with self._lock:
            have = {n["Name"] for n in self._all()}
            for name in PREDEFINED:
                if name not in have:
                    self._write(self._predefined(name))

    # storage

    def _path(self, nid):
        return os.path.join(self.root, nid + ".json")

    def _write(self, net):
        jsonio.write_atomic(self._path(net["Id"]), net, indent=1, mode=0o600)
        jsonio.fsync_dir(self.root)

    def _all(self):
        out = []
        for n in sorted(os.listdir(self.root)):
            if n.endswith(".json") and _ID.match(n[:-5]):
                try:
                    out.append(jsonio.load_file(os.path.join(self.root, n), f"network {n}"))
                except ConfigError:
                    continue
        return out

    def _predefined(self, name):
        p = PREDEFINED[name]
        ipam = [dict(DEFAULT_BRIDGE)] if name == "bridge" else []
        return {"Name": name, "Id": os.urandom(32).hex(), "Created": _now(), "Scope": "local",
                "Driver": p["Driver"], "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": None, "Config": ipam},
                "Internal": False, "Attachable": False, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Options": dict(p["Options"]), "Labels": {}}

    def _emit(self, action, net, extra=None):
        if self.events is not None:
            attrs = {"name": net["Name"], "type": net["Driver"]}
            attrs.update(extra or {})
            self.events.emit("network", action, net["Id"], attrs)

    def _view(self, net):
        out = dict(net)
        try:
            out["Containers"] = dict(self.attached(net["Id"]) or {})
        except Exception:  # noqa: BLE001 - a broken container record must not hide the network
            out["Containers"] = {}
        return out

    # reading

    def find(self, ref):
        """A network by full id, name, or unique id prefix (Docker's order)."""
        if not isinstance(ref, str) or not ref:
            raise NotFound("network: empty name or id")
        with self._lock:
            nets = self._all()
        for n in nets:
            if n["Id"] == ref:
                return n
        for n in nets:
            if n["Name"] == ref:
                return n
        hits = [n for n in nets if n["Id"].startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise Conflict(f"network {ref} is ambiguous ({len(hits)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def get(self, ref):
        return self._view(self.find(ref))

    def list(self, filters=None):
        filters = filters or {}
        for k in filters:
            if k not in LIST_FILTERS:
                raise ConfigError(f"invalid filter '{k}'",
                                  hint="network filters: " + ", ".join(LIST_FILTERS))
        for t in filters.get("type", []):
            if t not in ("custom", "builtin"):
                raise ConfigError(f"invalid filter: 'type'='{t}'", hint="custom or builtin")
        out = []
        with self._lock:
            nets = self._all()
        for n in nets:
            if "name" in filters and not any(f in n["Name"] for f in filters["name"]):
                continue
            if "id" in filters and not any(n["Id"].startswith(f) for f in filters["id"]):
                continue
            if "driver" in filters and n["Driver"] not in filters["driver"]:
                continue
            if "label" in filters and not label_matches(filters["label"], n.get("Labels") or {}):
                continue
            if "scope" in filters and n["Scope"] not in filters["scope"]:
                continue
            if "type" in filters:
                kind = "builtin" if n["Name"] in PREDEFINED else "custom"
                if kind not in filters["type"]:
                    continue
            view = self._view(n)
            if "dangling" in filters:
                want = {v.lower() in ("1", "true") for v in filters["dangling"]}
                dangling = n["Name"] not in PREDEFINED and not view["Containers"]
                if dangling not in want:
                    continue
            out.append(view)
        return out

    # writing

    def create(self, name, driver="bridge", internal=False, attachable=False, labels=None,
               ipam=None, options=None, enable_ipv6=False, check_duplicate=True):
        if not isinstance(name, str) or not name:
            raise ConfigError("network name is required")
        if not _NAME.match(name) or len(name) > 255:
            raise ConfigError(f"network name {name!r}: invalid, a name has no control characters")
        driver = driver or "bridge"
        if driver in ("host", "null"):
            raise ConfigError(f"only one instance of \"{driver}\" network is allowed")
        if driver not in DRIVERS:
            raise NotFound(f"could not find plugin {driver} in v1 plugin registry: plugin not found",
                           hint="known drivers: " + ", ".join(DRIVERS))
        if enable_ipv6 and driver != "bridge":
            raise NotSupported(f"IPv6 on {driver} networks is not supported yet",
                               hint="IPv6 works on bridge networks")
        labels = dict(labels or {})
        options = dict(options or {})
        for what, d in (("Labels", labels), ("Options", options)):
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in d.items()):
                raise ConfigError(f"network {name}: {what}: expected string keys and values")
        ipam = ipam or {}
        if not isinstance(ipam, dict):
            raise ConfigError("IPAM: expected an object")
        ipam_driver = ipam.get("Driver") or "default"
        if ipam_driver != "default":
            raise NotFound(f"IPAM driver {ipam_driver!r} not found", hint="only 'default'")
        configs = ipam.get("Config") or []
        if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
            raise ConfigError("IPAM.Config: expected a list of objects")
        with self._lock:
            nets = self._all()
            if any(n["Name"] == name for n in nets):
                raise Conflict(f"network with name {name} already exists")
            taken = [ipaddress.ip_network(c["Subnet"]) for n in nets
                     for c in (n.get("IPAM") or {}).get("Config") or [] if c.get("Subnet")]
            pools = [self._check_pool(c, taken, enable_ipv6) for c in configs]
            if not any(ipaddress.ip_network(p["Subnet"]).version == 4 for p in pools):
                # as dockerd: an IPv6 subnet alone gets an IPv4 one beside it
                pools.insert(0, self._allocate(taken))
            if enable_ipv6 and not any(":" in p["Subnet"] for p in pools):
                pools.append(self._allocate6(taken))
            # IPv4 entries first, as dockerd lists them (the docker CLI sends
            # its --subnet flags in no particular order)
            pools.sort(key=lambda p: ":" in p["Subnet"])
            net = {"Name": name, "Id": os.urandom(32).hex(), "Created": _now(), "Scope": "local",
                   "Driver": driver, "EnableIPv6": bool(enable_ipv6),
                   "IPAM": {"Driver": ipam_driver, "Options": ipam.get("Options"),
                            "Config": pools},
                   "Internal": bool(internal), "Attachable": bool(attachable), "Ingress": False,
                   "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                   "Options": options, "Labels": labels}
            self._write(net)
        self._emit("create", net)
        return self._view(net)

    def _check_pool(self, c, taken, ipv6=False):
        try:
            subnet = ipaddress.ip_network(c.get("Subnet") or "", strict=False)
        except ValueError:
            raise ConfigError(f"invalid subnet {c.get('Subnet')!r}: expected CIDR like 10.5.0.0/16")
        if subnet.version == 6:
            if not ipv6:
                raise ConfigError(f"subnet {subnet} is IPv6: the network needs --ipv6 "
                                  "(EnableIPv6)")
            if subnet.is_link_local or subnet.is_multicast or subnet.is_loopback \
                    or subnet.is_unspecified:
                raise ConfigError(f"subnet {subnet}: not a unicast range containers can use",
                                  hint="a unique local range such as fd12:3456:789a:1::/64")
        for t in taken:
            if subnet.overlaps(t):
                raise Conflict(f"invalid pool request: Pool overlaps with other one on this "
                               f"address space ({subnet} overlaps {t})")
        out = {"Subnet": str(subnet)}
        if c.get("IPRange"):
            try:
                rng = ipaddress.ip_network(c["IPRange"], strict=False)
            except ValueError:
                raise ConfigError(f"invalid ip range {c['IPRange']!r}")
            if not rng.subnet_of(subnet):
                raise ConfigError(f"ip range {rng} is not inside subnet {subnet}")
            out["IPRange"] = str(rng)
        if c.get("Gateway"):
            try:
                gw = ipaddress.ip_address(c["Gateway"])
            except ValueError:
                raise ConfigError(f"invalid gateway address {c['Gateway']!r}")
            if gw not in subnet:
                raise ConfigError(f"gateway {gw} is not inside subnet {subnet}")
        else:
            if subnet.num_addresses < 4:
                raise ConfigError(f"subnet {subnet} is too small for a gateway and containers")
            gw = subnet.network_address + 1
        if subnet.version == 4 or c.get("Gateway"):
            # (dockerd shows an IPv6 entry's gateway only when one was given)
            out["Gateway"] = str(gw)
        aux = c.get("AuxiliaryAddresses") or c.get("AuxAddress")
        if aux:
            out["AuxiliaryAddresses"] = dict(aux)
        return out

    def _allocate(self, taken):
        # subnets the host already routes (another daemon's bridge, a VPN)
        # are taken too, as dockerd skips them
        taken = list(taken) + host_routes()
        for cand in POOL.subnets(new_prefix=POOL_PREFIX):
            if not any(cand.overlaps(t) for t in taken):
                return {"Subnet": str(cand), "Gateway": str(cand.network_address + 1)}
        raise Conflict(f"no free /{POOL_PREFIX} left in {POOL} for a new network",
                       hint="give the network a --subnet, or remove unused networks")

    def _allocate6(self, taken):
        """A unique local /64 (RFC 4193: fd + 40 random bits), as dockerd 27
        does; 20.10 refuses --ipv6 without a --subnet."""
        taken = list(taken) + host_routes6()
        for _ in range(16):
            prefix = ipaddress.IPv6Address(b"\xfd" + os.urandom(5) + bytes(10))
            cand = ipaddress.ip_network(f"{prefix}/64")
            if not any(cand.overlaps(t) for t in taken):
                return {"Subnet": str(cand)}
        raise Conflict("no free IPv6 /64 found for a new network", hint="give it a --subnet")

    def set_default_ipv6(self, subnet6):
        """The default bridge as the daemon's --ipv6 --fixed-cidr-v6 make it
        (subnet6 None: IPv4 only), so inspect shows what containers get."""
        with self._lock:
            net = self.find("bridge")
            v4 = [c for c in net["IPAM"]["Config"] if ":" not in c.get("Subnet", "")]
            want = v4 + ([{"Subnet": subnet6}] if subnet6 else [])
            if net["IPAM"]["Config"] != want or net["EnableIPv6"] != bool(subnet6):
                net["IPAM"]["Config"] = want
                net["EnableIPv6"] = bool(subnet6)
                self._write(net)

    def remove(self, ref):
        with self._lock:
            net = self.find(ref)
            if net["Name"] in PREDEFINED:
                raise PredefinedNetwork(f"{net['Name']} is a pre-defined network and cannot be removed")
            eps = self.attached(net["Id"]) or {}
            if eps:
                raise Conflict(f"error while removing network: network {net['Name']} id "
                               f"{net['Id']} has active endpoints ({', '.join(c[:12] for c in eps)})")
            os.unlink(self._path(net["Id"]))
            jsonio.fsync_dir(self.root)
        self._emit("destroy", net)

    def prune(self, filters=None):
        """Remove user networks no container uses -> names removed."""
        filters = filters or {}
        for k in filters:
            if k not in PRUNE_FILTERS:
                raise ConfigError(f"invalid filter '{k}'",
                                  hint="network prune filters: " + ", ".join(PRUNE_FILTERS))
        until = None
        if filters.get("until"):
            until = _until(filters["until"][-1])
        removed = []
        with self._lock:
            for net in self._all():
                if net["Name"] in PREDEFINED:
                    continue
                labels = net.get("Labels") or {}
                if "label" in filters and not label_matches(filters["label"], labels):
                    continue
                if "label!" in filters and any(label_matches([w], labels) for w in filters["label!"]):
                    continue
                if until is not None and net["Created"] > until:
                    continue
                if self.attached(net["Id"]):
                    continue
                os.unlink(self._path(net["Id"]))
                removed.append(net)
            if removed:
                jsonio.fsync_dir(self.root)
        for net in removed:
            self._emit("destroy", net)
        return [n["Name"] for n in removed]

    def connect(self, ref, container, endpoint_config=None):
        net = self.find(ref)
        result = self.on_connect(net, container, endpoint_config or {})
        self._emit("connect", net, {"container": str(container)})
        return result

    def disconnect(self, ref, container, force=False):
        net = self.find(ref)
        result = self.on_disconnect(net, container, bool(force))
        self._emit("disconnect", net, {"container": str(container)})
        return result


def host_routes(path="/proc/net/route"):
    """IPv4 networks with a route on the host, default route excluded."""
    out = []
    try:
        with open(path) as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return out
    for row in rows:
        fields = row.split()
        if len(fields) < 8:
            continue
        dest = int(fields[1], 16)
        mask = int(fields[7], 16)
        if mask == 0:
            continue
        import socket
        import struct
        net = socket.inet_ntoa(struct.pack("<I", dest))
        bits = bin(mask).count("1")
        try:
            out.append(ipaddress.ip_network(f"{net}/{bits}", strict=False))
        except ValueError:
            continue
    return out


def host_routes6(path="/proc/net/ipv6_route"):
    """IPv6 networks with a route on the host, except the default route,
    link-local, multicast and host routes."""
    out = []
    try:
        with open(path) as f:
            rows = f.read().splitlines()
    except OSError:
        return out
    for row in rows:
        fields = row.split()
        if len(fields) < 10:
            continue
        try:
            net = ipaddress.ip_network(f"{ipaddress.IPv6Address(int(fields[0], 16))}/"
                                       f"{int(fields[1], 16)}")
        except ValueError:
            continue
        if 0 < net.prefixlen < 128 and not (net.is_link_local or net.is_multicast):
            out.append(net)
    return out


class PredefinedNetwork(BerthError):
    """bridge, host and none cannot be removed (the API answers 403)."""


def _until(text):
    """Unix seconds, a duration back from now (10m, 24h) or an RFC 3339
    time -> RFC 3339 in UTC (comparable as text)."""
    m = re.match(r"(\d+(?:\.\d+)?)([smh])\Z", text)
    try:
        if m:
            t = time.time() - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
        else:
            t = float(text)
    except ValueError:
        if not re.match(r"\d{4}-\d\d-\d\dT", text):
            raise ConfigError(f"invalid filter 'until={text}': expected a unix time, "
                              "a duration like 24h, or an RFC 3339 time")
        return text
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".999999999Z"
