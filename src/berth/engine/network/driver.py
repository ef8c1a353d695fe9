"""The bridge network driver.

Per bridge network, one Linux bridge (berth0 for the default network,
br-<id12> for user networks) holding the gateway address; per attachment,
a veth pair (host side on the bridge, the other end moved into the
container's namespace as eth0, eth1, ...) with an address from the
network's pool and a MAC derived from it (02:42 + the IPv4 bytes).

What the driver made is recorded before it is made (records.py), the
firewall is regenerated whole from the records (rules.py), and IP
forwarding is switched on while some daemon needs it (forward.py)."""
import hashlib
import ipaddress
import json
import os
import secrets
import threading

from berth.errors import BerthError, ConfigError
from berth.engine.network import dns, ipam, names, netlink, ports, rules, settings
from berth.engine.network.bridges import Bridges, v6_of
from berth.engine.network.forward import Forward
from berth.engine.network.records import Records

DEFAULT_ROOT = "/var/lib/berth"


class NetConfig:
    """The daemon options the driver reads (Docker's names); anything the
    engine's Config does not set takes Docker's default, except icc, which
    is off unless asked for."""

    def __init__(self, cfg):
        self.icc = bool(getattr(cfg, "icc", False))
        self.ip_forward = bool(getattr(cfg, "ip_forward", True))
        self.ip_masq = bool(getattr(cfg, "ip_masq", True))
        self.mtu = int(getattr(cfg, "mtu", 0) or 1500)
        self.bip = getattr(cfg, "bip", None)            # "172.17.0.1/16"
        self.fixed_cidr = getattr(cfg, "fixed_cidr", None)
        self.bridge_name = getattr(cfg, "bridge_name", None)
        # the embedded resolver sends unknown names to the host's resolvers
        self.dns_forward = bool(getattr(cfg, "dns_forward", True))
        # --ipv6 --fixed-cidr-v6: the default bridge is dual-stack
        self.ipv6 = bool(getattr(cfg, "ipv6", False))
        self.fixed_cidr_v6 = getattr(cfg, "fixed_cidr_v6", None)
        if self.ipv6 != bool(self.fixed_cidr_v6):
            raise ConfigError("--ipv6 and --fixed-cidr-v6 go together: the default bridge's "
                              "IPv6 subnet, e.g. --ipv6 --fixed-cidr-v6 fd12:3456:789a:1::/64")
        if self.fixed_cidr_v6:
            try:
                net = ipaddress.ip_network(self.fixed_cidr_v6)
            except ValueError:
                net = None
            if net is None or net.version != 6 or net.prefixlen > 124:
                raise ConfigError(f"--fixed-cidr-v6 {self.fixed_cidr_v6!r}: expected an IPv6 "
                                  "network of /124 or wider, like fd12:3456:789a:1::/64")
            self.fixed_cidr_v6 = str(net)

class Driver:
    def __init__(self, engine):
        self.e = engine
        self.cfg = NetConfig(engine.config)
        root = engine.paths.root
        # a daemon on another data root (tests) gets bridges and tables of
        # its own, so two daemons never share (or delete) each other's
        self.tag = "" if root == DEFAULT_ROOT else hashlib.sha256(root.encode()).hexdigest()[:6]
        self.table = "berth" + (f"_{self.tag}" if self.tag else "")
        self.dns = dns.Resolver(dns.host_upstreams() if self.cfg.dns_forward else ())
        self.default_bridge = self.cfg.bridge_name or ("berth0" + (f"-{self.tag}" if self.tag else ""))
        self.dir = os.path.join(root, "network")
        self.records = Records(self.dir)
        self.bridges = Bridges(self.cfg, self.tag, self.default_bridge, self.records)
        self.forward = Forward(self.cfg.ip_forward, self.tag, self.dir)
        self.forward6 = Forward(self.cfg.ip_forward, self.tag, self.dir, family=6)
        engine.networks.set_default_ipv6(self.cfg.fixed_cidr_v6)
        self.lock = threading.RLock()

    # -- the hooks --------------------------------------------------------

    def setup(self, c, pid):
        mode = c.host_config.get("NetworkMode") or "bridge"
        if mode == "host" or mode.startswith("container:"):
            return
        if mode == "none":
            netlink.lo_up(pid)
            return
        with self.lock:
            self._setup(c, pid, mode)

    def _setup(self, c, pid, mode):
        with c.cond:
            nets = dict((c.data.get("NetworkSettings") or {}).get("Networks") or {})
        if not nets:
            netlink.lo_up(pid)
            return
        records = self.records.endpoints()
        records.pop(c.id, None)
        # the primary network (NetworkMode) first: it gets eth0 and the route
        order = sorted(nets, key=lambda n: (n != mode and nets[n].get("NetworkID") != mode, n))
        rec = {"id": c.id, "name": c.name.lstrip("/"), "pid": pid,
               "hostname": c.config.get("Hostname") or c.id[:12],
               "domainname": c.config.get("Domainname") or "",
               "hosts_path": c.data.get("HostsPath") or "", "endpoints": [], "ports": [],
               # legacy --link targets (engine/containers/links.py): a hosts line each
               "links": list(c.data.get("_links") or [])}
        infos = []
        ipr = netlink.host()
        try:
            for i, name in enumerate(order):
                ep = nets[name]
                net = self.e.networks.find(ep.get("NetworkID") or name)
                info = self.bridges.info(net)
                # bridges.json names the bridge before it is made
                if info.get("kind") != "macvlan":
                    with netlink.host_lock():
                        self.bridges.ensure(ipr, info)
                rec["endpoints"].append(self._endpoint(c, i, net, info, ep, records, rec))
                infos.append(info)
            others = [m for r in records.values() for m in r.get("ports", [])]
            primary = rec["endpoints"][0]
            mappings = ports.plan(c.host_config, c.config, others, ipv6=bool(primary.get("ip6")))
            if mappings and primary.get("parent"):
                raise BerthError("ports cannot be published from a macvlan network: the "
                                 "container has its own address on the parent's segment")
            rec["ports"] = [dict(m, ip=primary["ip6"] if ":" in m["host_ip"] else primary["ip"])
                            for m in mappings]
            # the leases, veth names and ports are on disk before anything is made
            self.records.write(rec)
            self._forward_for(infos)
            for i, ep in enumerate(rec["endpoints"]):
                self._plug(ipr, pid, ep, infos[i], i == 0 and not infos[i]["internal"])
        except BerthError:
            raise
        except Exception as e:  # noqa: BLE001 - netlink errors become one clear line
            raise BerthError(f"network setup of {c.id[:12]}: {e}") from e
        finally:
            ipr.close()
        self._apply()
        self._refresh_hosts()
        names.write_resolv(c, rec)
        self._fill(c, rec, pid)

    def _endpoint(self, c, i, net, info, ep, records, rec):
        """The record of the container's i-th interface, on net: its
        addresses chosen from the network's pools (IPAMConfig's static
        --ip/--ip6 if given), names for its links."""
        holders = [r for cid, r in records.items() if cid != c.id] + [rec]

        def taken(key):
            return [e.get(key) for r in holders for e in r["endpoints"]
                    if e["network_id"] == net["Id"]]
        want = ep.get("IPAMConfig") or {}
        ip = ipam.allocate(info["cfg"], taken("ip"), want.get("IPv4Address"))
        mac = ipam.mac_for(ip)
        ip6 = None
        if info["cfg6"]:
            if not want.get("IPv6Address") and info["default"]:
                ip6 = ipam.from_mac(info["cfg6"], mac, taken("ip6"))
            ip6 = ip6 or ipam.allocate(info["cfg6"], taken("ip6"), want.get("IPv6Address"))
        elif want.get("IPv6Address"):
            raise BerthError(f"--ip6 {want['IPv6Address']}: network {net['Name']} has no IPv6",
                             hint="create it with --ipv6 and an IPv6 --subnet")
        macvlan = info.get("kind") == "macvlan"
        return {"network_id": net["Id"], "network": net["Name"], "bridge": info["bridge"],
                "default": info["default"], "ip": ip, "prefixlen": info["prefixlen"],
                "gateway": info["gateway"], "mac": mac, "ip6": ip6,
                "prefixlen6": info["prefixlen6"] if ip6 else None,
                "gateway6": info["gateway6"] if ip6 else None,
                # a macvlan has no host side: it lives and dies in the netns
                "veth": None if macvlan else f"vb{c.id[:10]}{i:x}",
                "peer": f"{'vm' if macvlan else 'vp'}{c.id[:10]}{i:x}",
                "parent": info.get("parent"),
                "ifname": f"eth{i}", "aliases": [a for a in (ep.get("Aliases") or []) if a],
                "links": [x for x in (ep.get("Links") or []) if x],
                "endpoint_id": secrets.token_hex(32)}

    def _plug(self, ipr, pid, ep, info, route):
        if ep.get("parent"):
            netlink.plug_macvlan(ipr, pid, ep["parent"], ep["peer"], ep["ifname"],
                                 ep["ip"], ep["prefixlen"], ep["mac"], ep["gateway"],
                                 default_route=route, mtu=info["mtu"])
            return
        v6 = (ep["ip6"], ep["prefixlen6"], ep["gateway6"]) if ep.get("ip6") else None
        netlink.plug(ipr, pid, ep["bridge"], ep["veth"], ep["peer"], ep["ifname"],
                     ep["ip"], ep["prefixlen"], ep["mac"], ep["gateway"],
                     default_route=route, mtu=info["mtu"], v6=v6)

    def _forward_for(self, infos):
        """IP forwarding on (per family) for networks that reach out."""
        routed = [i for i in infos if not i["internal"] and i.get("kind") != "macvlan"]
        if routed:
            self.forward.on()
        if any(i.get("subnet6") for i in routed):
            self.forward6.on()

    def _fill(self, c, rec, pid):
        with c.cond:
            ns = c.data.setdefault("NetworkSettings", {})
            nets = ns.setdefault("Networks", {})
            for ep in rec["endpoints"]:
                d = nets.setdefault(ep["network"], {"NetworkID": ep["network_id"]})
                d.update({"IPAddress": ep["ip"], "IPPrefixLen": ep["prefixlen"],
                          "Gateway": ep["gateway"], "MacAddress": ep["mac"],
                          "EndpointID": ep["endpoint_id"], **_v6_shown(ep)})
                if not ep["default"]:
                    al = list(d.get("Aliases") or [])
                    for a in (rec["name"], c.id[:12]):
                        if a not in al:
                            al.append(a)
                    d["Aliases"] = al
            ns["SandboxKey"] = f"/proc/{pid}/ns/net"
            ns["SandboxID"] = c.id
            ns["Ports"] = ports.shown(rec["ports"], c.config)
            prim = rec["endpoints"][0]
            if prim["default"]:
                ns.update({"IPAddress": prim["ip"], "IPPrefixLen": prim["prefixlen"],
                           "Gateway": prim["gateway"], "MacAddress": prim["mac"],
                           "EndpointID": prim["endpoint_id"], "Bridge": prim["bridge"],
                           **_v6_shown(prim)})
            c.save()

    # -- connect / disconnect of a running container ---------------------------

    def connect(self, c, network):
        """Plug a running container into one more network (its record in
        NetworkSettings.Networks[network] must exist already): a new ethN,
        no default route unless it had none."""
        pid = c.state.get("Pid")
        if not c.running or not pid:
            return
        with self.lock:
            records = self.records.endpoints()
            rec = records.get(c.id)
            if rec is None:
                return
            with c.cond:
                ep = dict(((c.data.get("NetworkSettings") or {}).get("Networks") or {})[network])
            net = self.e.networks.find(ep.get("NetworkID") or network)
            if any(e["network_id"] == net["Id"] for e in rec["endpoints"]):
                return
            info = self.bridges.info(net)
            if info.get("kind") == "macvlan":
                raise BerthError(f"network {net['Name']}: a running container cannot join a "
                                 "macvlan network", hint="connect it before it starts")
            used = {e["ifname"] for e in rec["endpoints"]}
            i = next(k for k in range(64) if f"eth{k}" not in used)
            ipr = netlink.host()
            try:
                with netlink.host_lock():
                    self.bridges.ensure(ipr, info)
                new = self._endpoint(c, i, net, info, ep, records, rec)
                rec["endpoints"].append(new)
                self.records.write(rec)
                self._forward_for([info])
                self._plug(ipr, pid, new, info, False)
            except BerthError:
                self._drop_endpoint(c.id, net["Id"])
                raise
            except Exception as e:  # noqa: BLE001
                self._drop_endpoint(c.id, net["Id"])
                raise BerthError(f"connecting {c.id[:12]} to {net['Name']}: {e}") from e
            finally:
                ipr.close()
            self._apply()
            self._refresh_hosts()
            self._fill(c, rec, pid)

    def disconnect(self, c, network_id):
        """Unplug a container from one network (before its record goes)."""
        with self.lock:
            if self._drop_endpoint(c.id, network_id):
                self._apply()
                self._refresh_hosts()
                self._gc_bridges()

    def _drop_endpoint(self, cid, network_id):
        records = self.records.endpoints()
        rec = records.get(cid)
        if rec is None:
            return False
        keep = [e for e in rec["endpoints"] if e["network_id"] != network_id]
        gone = [e for e in rec["endpoints"] if e["network_id"] == network_id]
        if not gone:
            return False
        ipr = netlink.host()
        try:
            for e in gone:
                netlink.delete_link(ipr, e["veth"])
                netlink.delete_link(ipr, e["peer"])
        finally:
            ipr.close()
        netlink.flush_conntrack(_addresses(gone))
        rec["endpoints"] = keep
        if not keep:
            rec["ports"] = []
        self.records.write(rec)
        return True

    def teardown(self, c):
        with self.lock:
            # nothing on record (network none, a second call after a first
            # one): no rule changed, so no nft transaction (~25 ms each)
            if self._release(c.id):
                self._apply()
                self._refresh_hosts()
                self._gc_bridges()
        settings.clear(c)

    def _release(self, cid):
        """Remove a container's veths and then its record (its leases)."""
        path = self.records.path(cid)
        try:
            with open(path) as f:
                rec = json.load(f)
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            rec = {"endpoints": []}
        ipr = netlink.host()
        try:
            for ep in rec.get("endpoints", []):
                for n in (ep.get("veth"), ep.get("peer")):
                    if n:
                        netlink.delete_link(ipr, n)
        finally:
            ipr.close()
        netlink.flush_conntrack(_addresses(rec.get("endpoints", [])))
        os.unlink(path)
        return True

    def restore(self, running):
        live = {c.id for c in running}
        with self.lock:
            epdir = self.records.epdir
            for n in os.listdir(epdir):
                if ".json.tmp" in n:     # a write a killed berthd left half-done
                    os.unlink(os.path.join(epdir, n))
            records = self.records.endpoints()
            for cid in records:
                if cid not in live:
                    self._release(cid)
            records = self.records.endpoints()
            if records:
                ipr = netlink.host()
                try:
                    for b in {e["bridge"] for r in records.values() for e in r["endpoints"]}:
                        info = self.records.bridges().get(b)
                        if info and netlink.index(ipr, b) is None:
                            netlink.ensure_bridge(ipr, b, info["gateway"], info["prefixlen"],
                                                  self.cfg.mtu, v6=v6_of(info))
                finally:
                    ipr.close()
                bridges = self.records.bridges()
                self._forward_for([bridges[e["bridge"]] for r in records.values()
                                   for e in r["endpoints"] if e.get("bridge") in bridges])
            self._apply()
            self._refresh_hosts()
            self._gc_bridges(keep_default=bool(records))

    def close(self):
        """Daemon stop: containers keep running with their network; if none
        has an endpoint, everything berth made goes."""
        self.dns.close()
        with self.lock:
            if self.records.endpoints():
                return
            self._gc_bridges(keep_default=False)
            try:
                rules.remove(self.table)
            except BerthError:
                pass
            self.forward.release()
            self.forward6.release()

    # -- bridges no endpoint uses -------------------------------------------

    def _gc_bridges(self, keep_default=True):
        used = {e["bridge"] for r in self.records.endpoints().values() for e in r["endpoints"]}
        bridges = self.records.bridges()
        gone = [b for b, info in bridges.items()
                if b not in used and not (keep_default and info.get("default"))]
        if not gone:
            return
        ipr = netlink.host()
        try:
            for b in gone:
                netlink.delete_link(ipr, b)
                del bridges[b]
        finally:
            ipr.close()
        self.records.write_bridges(bridges)

    # -- /etc/hosts and the resolver -------------------------------------------

    def _refresh_hosts(self):
        records = self.records.endpoints()
        for cid in records:
            try:
                names.write_hosts(cid, records)
            except OSError:
                pass
        self.dns.update(names.dns_table(records))
        self.dns.set_aaaa(names.dns_table(records, "ip6"))

    def _apply(self):
        rules.apply(self.table, self.records.endpoints(), self.records.bridges())


def _v6_shown(ep):
    """An endpoint's IPv6 fields in inspect, as dockerd shows them."""
    return {"GlobalIPv6Address": ep.get("ip6") or "",
            "GlobalIPv6PrefixLen": ep.get("prefixlen6") or 0,
            "IPv6Gateway": ep.get("gateway6") or ""}


def _addresses(endpoints):
    return [a for e in endpoints for a in (e.get("ip"), e.get("ip6")) if a]
