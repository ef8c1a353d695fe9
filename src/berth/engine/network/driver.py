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
import json
import os
import secrets
import threading

from berth.errors import BerthError
from berth.engine.network import dns, ipam, names, netlink, nft, ports, rules, settings
from berth.engine.network.bridges import Bridges
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
               "hosts_path": c.data.get("HostsPath") or "", "endpoints": [], "ports": []}
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
                taken = [e["ip"] for r in records.values() for e in r["endpoints"]
                         if e["network_id"] == net["Id"]]
                taken += [e["ip"] for e in rec["endpoints"] if e["network_id"] == net["Id"]]
                want = (ep.get("IPAMConfig") or {}).get("IPv4Address")
                ip = ipam.allocate(info["cfg"], taken, want)
                aliases = [a for a in (ep.get("Aliases") or []) if a]
                macvlan = info.get("kind") == "macvlan"
                rec["endpoints"].append({
                    "network_id": net["Id"], "network": net["Name"], "bridge": info["bridge"],
                    "default": info["default"], "ip": ip, "prefixlen": info["prefixlen"],
                    "gateway": info["gateway"], "mac": ipam.mac_for(ip),
                    # a macvlan has no host side: it lives and dies in the netns
                    "veth": None if macvlan else f"vb{c.id[:10]}{i:x}",
                    "peer": f"{'vm' if macvlan else 'vp'}{c.id[:10]}{i:x}",
                    "parent": info.get("parent"),
                    "ifname": f"eth{i}", "aliases": aliases,
                    "endpoint_id": secrets.token_hex(32)})
                infos.append(info)
            others = [m for r in records.values() for m in r.get("ports", [])]
            mappings = ports.plan(c.host_config, c.config, others)
            primary = rec["endpoints"][0]
            if mappings and primary.get("parent"):
                raise BerthError("ports cannot be published from a macvlan network: the "
                                 "container has its own address on the parent's segment")
            rec["ports"] = [dict(m, ip=primary["ip"]) for m in mappings]
            # the leases, veth names and ports are on disk before anything is made
            self.records.write(rec)
            if any(not i["internal"] and i.get("kind") != "macvlan" for i in infos):
                self.forward.on()
            for i, ep in enumerate(rec["endpoints"]):
                route = i == 0 and not infos[i]["internal"]
                if ep.get("parent"):
                    netlink.plug_macvlan(ipr, pid, ep["parent"], ep["peer"], ep["ifname"],
                                         ep["ip"], ep["prefixlen"], ep["mac"], ep["gateway"],
                                         default_route=route, mtu=infos[i]["mtu"])
                    continue
                netlink.plug(ipr, pid, ep["bridge"], ep["veth"], ep["peer"], ep["ifname"],
                             ep["ip"], ep["prefixlen"], ep["mac"], ep["gateway"],
                             default_route=route, mtu=infos[i]["mtu"])
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

    def _fill(self, c, rec, pid):
        with c.cond:
            ns = c.data.setdefault("NetworkSettings", {})
            nets = ns.setdefault("Networks", {})
            for ep in rec["endpoints"]:
                d = nets.setdefault(ep["network"], {"NetworkID": ep["network_id"]})
                d.update({"IPAddress": ep["ip"], "IPPrefixLen": ep["prefixlen"],
                          "Gateway": ep["gateway"], "MacAddress": ep["mac"],
                          "EndpointID": ep["endpoint_id"]})
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
                           "EndpointID": prim["endpoint_id"], "Bridge": prim["bridge"]})
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
                if info.get("kind") != "macvlan":
                    with netlink.host_lock():
                        self.bridges.ensure(ipr, info)
                taken = [e["ip"] for r in records.values() for e in r["endpoints"]
                         if e["network_id"] == net["Id"]]
                ip = ipam.allocate(info["cfg"], taken, (ep.get("IPAMConfig") or {}).get("IPv4Address"))
                new = {"network_id": net["Id"], "network": net["Name"], "bridge": info["bridge"],
                       "default": info["default"], "ip": ip, "prefixlen": info["prefixlen"],
                       "gateway": info["gateway"], "mac": ipam.mac_for(ip),
                       "veth": f"vb{c.id[:10]}{i:x}", "peer": f"vp{c.id[:10]}{i:x}",
                       "ifname": f"eth{i}", "aliases": [a for a in (ep.get("Aliases") or []) if a],
                       "endpoint_id": secrets.token_hex(32)}
                rec["endpoints"].append(new)
                self.records.write(rec)
                if not info["internal"]:
                    self.forward.on()
                netlink.plug(ipr, pid, new["bridge"], new["veth"], new["peer"], new["ifname"],
                             ip, new["prefixlen"], new["mac"], new["gateway"],
                             default_route=False, mtu=info["mtu"])
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
        netlink.flush_conntrack([e["ip"] for e in gone])
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
        netlink.flush_conntrack([ep["ip"] for ep in rec.get("endpoints", []) if ep.get("ip")])
        os.unlink(path)
        return True

    def restore(self, running):
        live = {c.id for c in running}
        with self.lock:
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
                                                  self.cfg.mtu)
                finally:
                    ipr.close()
                if any(not self.records.bridges().get(e["bridge"], {}).get("internal")
                       for r in records.values() for e in r["endpoints"]):
                    self.forward.on()
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
            for fam in ("ip", "bridge"):
                try:
                    nft.delete_table(fam, self.table)
                except BerthError:
                    pass
            self.forward.release()

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

    def _apply(self):
        rules.apply(self.table, self.records.endpoints(), self.records.bridges())
