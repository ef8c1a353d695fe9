"""The bridge network driver.

Per bridge network, one Linux bridge (berth0 for the default network,
br-<id12> for user networks) holding the gateway address; per attachment,
a veth pair (host side on the bridge, the other end moved into the
container's namespace as eth0, eth1, ...) with an address from the
network's pool and a MAC derived from it (02:42 + the IPv4 bytes).

Records (the truth for teardown, restore and the firewall), under
<data-root>/network/:
  endpoints/<container id>.json  written BEFORE any veth is made: the
                                 container's addresses (its leases), veth
                                 names and published ports
  bridges.json                   bridges berth made, written before each
The nftables tables `ip <table>` and `bridge <table>` are regenerated whole
from the records on every change (one atomic transaction), so a crash can
leave nothing the next restore() does not either re-assert or remove.

Host-wide: net.ipv4.ip_forward is switched on while some berth daemon has
bridges; the value found first is kept under /run/berth-net/ and put back
when the last daemon using it closes with no container running."""
import hashlib
import ipaddress
import json
import os
import secrets
import threading

from berth.errors import BerthError, ConfigError
from berth.oci import jsonio
from berth.engine.network import dns, hosts, ipam, netlink, nft, ports, settings

DEFAULT_ROOT = "/var/lib/berth"
FORWARD_DIR = "/run/berth-net"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
MASQ_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
MTU_OPTION = "com.docker.network.driver.mtu"


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


def _yes(v, default):
    if v is None or v == "":
        return default
    return str(v).lower() in ("1", "true", "yes")


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
        self.epdir = os.path.join(self.dir, "endpoints")
        os.makedirs(self.epdir, mode=0o700, exist_ok=True)
        self.lock = threading.RLock()
        self._forward_held = False

    # -- records ----------------------------------------------------------

    def _ep_path(self, cid):
        return os.path.join(self.epdir, cid + ".json")

    def _records(self):
        out = {}
        for n in sorted(os.listdir(self.epdir)):
            if n.endswith(".json"):
                try:
                    with open(os.path.join(self.epdir, n)) as f:
                        out[n[:-5]] = json.load(f)
                except (OSError, ValueError):
                    continue
        return out

    def _write_record(self, rec):
        jsonio.write_atomic(self._ep_path(rec["id"]), rec, indent=1, mode=0o600)

    def _bridges(self):
        try:
            with open(os.path.join(self.dir, "bridges.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _write_bridges(self, b):
        p = os.path.join(self.dir, "bridges.json")
        if b:
            jsonio.write_atomic(p, b, indent=1, mode=0o600)
        elif os.path.exists(p):
            os.unlink(p)

    # -- networks ---------------------------------------------------------

    def _net_info(self, net):
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
        elif default and self._bridges().get(self.default_bridge, {}).get("moved"):
            b = self._bridges()[self.default_bridge]
            cfg = {"Subnet": b["subnet"], "Gateway": b["gateway"]}
        elif configs:
            cfg = dict(configs[0])
        else:
            raise BerthError(f"network {net['Name']} has no IPv4 subnet")
        subnet, gw, _, _ = ipam.pool(cfg)
        opts = net.get("Options") or {}
        moved = default and bool(self._bridges().get(self.default_bridge, {}).get("moved"))
        return {"moved": moved, "network_id": net["Id"], "network": net["Name"], "default": default,
                "bridge": self.default_bridge if default else "br-" + net["Id"][:12],
                "cfg": cfg, "subnet": str(subnet), "gateway": str(gw),
                "prefixlen": subnet.prefixlen,
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
        configs = (net.get("IPAM") or {}).get("Config") or []
        if not configs:
            raise BerthError(f"network {net['Name']} has no IPv4 subnet")
        cfg = dict(configs[0])
        subnet, gw, _, _ = ipam.pool(cfg)
        return {"kind": "macvlan", "parent": parent, "moved": False, "network_id": net["Id"],
                "network": net["Name"], "default": False, "bridge": None, "cfg": cfg,
                "subnet": str(subnet), "gateway": str(gw), "prefixlen": subnet.prefixlen,
                "internal": bool(net.get("Internal")), "icc": True, "masq": False,
                "mtu": int(opts.get(MTU_OPTION) or self.cfg.mtu)}

    def _ensure_bridge(self, ipr, info):
        bridges = self._bridges()
        if (info["default"] and not self.cfg.bip
                and netlink.index(ipr, info["bridge"]) is None):
            self._move_default(ipr, info)
        want = {k: info[k] for k in ("network_id", "subnet", "gateway", "prefixlen",
                                     "internal", "icc", "masq", "default")}
        if info.get("moved"):
            want["moved"] = True
        if bridges.get(info["bridge"]) != want:
            bridges[info["bridge"]] = want
            self._write_bridges(bridges)
        netlink.ensure_bridge(ipr, info["bridge"], info["gateway"], info["prefixlen"],
                              info["mtu"])

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

    # -- ip_forward, shared by every berth daemon on the host ----------------

    def _forward_on(self):
        if not self.cfg.ip_forward or self._forward_held:
            return
        os.makedirs(FORWARD_DIR, mode=0o700, exist_ok=True)
        orig = os.path.join(FORWARD_DIR, "ip_forward.orig")
        if not os.path.exists(orig):
            jsonio.write_atomic(orig, {"value": netlink.read_sysctl(IP_FORWARD) or "0"})
        with open(os.path.join(FORWARD_DIR, "user." + (self.tag or "default")), "w") as f:
            f.write(self.dir)
        netlink.write_sysctl(IP_FORWARD, 1)
        self._forward_held = True

    def _forward_release(self):
        mine = os.path.join(FORWARD_DIR, "user." + (self.tag or "default"))
        if not os.path.exists(mine):
            return
        os.unlink(mine)
        self._forward_held = False
        left = [n for n in os.listdir(FORWARD_DIR) if n.startswith("user.")]
        # a user whose data root is gone crashed long ago: not a user
        for n in left[:]:
            try:
                with open(os.path.join(FORWARD_DIR, n)) as f:
                    d = f.read().strip()
            except OSError:
                d = ""
            if not os.path.isdir(os.path.join(d, "endpoints")):
                os.unlink(os.path.join(FORWARD_DIR, n))
                left.remove(n)
        if left:
            return
        orig = os.path.join(FORWARD_DIR, "ip_forward.orig")
        try:
            value = jsonio.load_file(orig, "ip_forward.orig").get("value", "0")
        except Exception:  # noqa: BLE001 - a broken record: leave the sysctl as it is
            value = None
        if value is not None:
            netlink.write_sysctl(IP_FORWARD, value)
        for n in os.listdir(FORWARD_DIR):
            os.unlink(os.path.join(FORWARD_DIR, n))
        os.rmdir(FORWARD_DIR)

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
        records = self._records()
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
                info = self._net_info(net)
                # bridges.json names the bridge before it is made
                if info.get("kind") != "macvlan":
                    with netlink.host_lock():
                        self._ensure_bridge(ipr, info)
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
            self._write_record(rec)
            if any(not i["internal"] and i.get("kind") != "macvlan" for i in infos):
                self._forward_on()
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
        self._write_resolv(c, rec)
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
            records = self._records()
            rec = records.get(c.id)
            if rec is None:
                return
            with c.cond:
                ep = dict(((c.data.get("NetworkSettings") or {}).get("Networks") or {})[network])
            net = self.e.networks.find(ep.get("NetworkID") or network)
            if any(e["network_id"] == net["Id"] for e in rec["endpoints"]):
                return
            info = self._net_info(net)
            if info.get("kind") == "macvlan":
                raise BerthError(f"network {net['Name']}: a running container cannot join a "
                                 "macvlan network", hint="connect it before it starts")
            used = {e["ifname"] for e in rec["endpoints"]}
            i = next(k for k in range(64) if f"eth{k}" not in used)
            ipr = netlink.host()
            try:
                if info.get("kind") != "macvlan":
                    with netlink.host_lock():
                        self._ensure_bridge(ipr, info)
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
                self._write_record(rec)
                if not info["internal"]:
                    self._forward_on()
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
        records = self._records()
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
        self._write_record(rec)
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
        path = self._ep_path(cid)
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
            for n in os.listdir(self.epdir):
                if ".json.tmp" in n:     # a write a killed berthd left half-done
                    os.unlink(os.path.join(self.epdir, n))
            records = self._records()
            for cid in records:
                if cid not in live:
                    self._release(cid)
            records = self._records()
            if records:
                ipr = netlink.host()
                try:
                    for b in {e["bridge"] for r in records.values() for e in r["endpoints"]}:
                        info = self._bridges().get(b)
                        if info and netlink.index(ipr, b) is None:
                            netlink.ensure_bridge(ipr, b, info["gateway"], info["prefixlen"],
                                                  self.cfg.mtu)
                finally:
                    ipr.close()
                if any(not self._bridges().get(e["bridge"], {}).get("internal")
                       for r in records.values() for e in r["endpoints"]):
                    self._forward_on()
            self._apply()
            self._refresh_hosts()
            self._gc_bridges(keep_default=bool(records))

    def close(self):
        """Daemon stop: containers keep running with their network; if none
        has an endpoint, everything berth made goes."""
        self.dns.close()
        with self.lock:
            if self._records():
                return
            self._gc_bridges(keep_default=False)
            for fam in ("ip", "bridge"):
                try:
                    nft.delete_table(fam, self.table)
                except BerthError:
                    pass
            self._forward_release()

    # -- bridges no endpoint uses -------------------------------------------

    def _gc_bridges(self, keep_default=True):
        used = {e["bridge"] for r in self._records().values() for e in r["endpoints"]}
        bridges = self._bridges()
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
        self._write_bridges(bridges)

    # -- /etc/hosts ---------------------------------------------------------

    def _entries(self, rec, records):
        own_names = []
        full = rec["hostname"] + ("." + rec["domainname"] if rec.get("domainname") else "")
        prim = rec["endpoints"][0]
        own_names = [full, rec["hostname"]]
        if not prim["default"]:
            own_names += [rec["name"]] + prim.get("aliases", [])
        entries = [(prim["ip"], own_names)]
        mine = {e["network_id"] for e in rec["endpoints"] if not e["default"]}
        for cid, other in sorted(records.items()):
            if cid == rec["id"]:
                continue
            for e in other["endpoints"]:
                if e["network_id"] in mine:
                    entries.append((e["ip"], [other["name"]] + e.get("aliases", []) + [cid[:12]]))
        return entries

    def _write_hosts(self, cid, records=None):
        records = records if records is not None else self._records()
        rec = records.get(cid)
        if not rec or not rec.get("hosts_path") or not rec.get("endpoints"):
            return
        text = hosts.read(rec["hosts_path"])
        hosts.write_in_place(rec["hosts_path"],
                             hosts.render(hosts.base(text), self._entries(rec, records)))

    def _refresh_hosts(self):
        records = self._records()
        for cid in records:
            try:
                self._write_hosts(cid, records)
            except OSError:
                pass
        self.dns.update(self._dns_table(records))

    @staticmethod
    def _dns_table(records):
        """{gateway of a user bridge network: {name: ip}} for the resolver."""
        table = {}
        for cid, rec in records.items():
            for e in rec["endpoints"]:
                if e["default"] or e.get("parent") or not e.get("bridge"):
                    continue
                names = table.setdefault(e["gateway"], {})
                for n in [rec["name"], rec.get("hostname"), cid[:12]] + e.get("aliases", []):
                    if n:
                        names[n.lower()] = e["ip"]
        return table

    def _write_resolv(self, c, rec):
        """A container whose first network is a user bridge asks the
        embedded resolver, on that network's gateway, and nobody else."""
        prim = rec["endpoints"][0]
        path = c.data.get("ResolvConfPath")
        if prim["default"] or prim.get("parent") or not path or c.host_config.get("Dns"):
            return
        hosts.write_in_place(path, f"nameserver {prim['gateway']}\noptions ndots:0\n")

    # -- nftables -----------------------------------------------------------

    def _apply(self):
        records = self._records()
        bridges = self._bridges()
        try:
            if not bridges and not records:
                for fam in ("ip", "bridge"):
                    nft.delete_table(fam, self.table)
                return
            nft.replace_table("ip", self.table, self._ip_rules(records, bridges))
            nft.replace_table("bridge", self.table, self._bridge_rules(records, bridges))
        except BerthError as e:
            raise BerthError(f"firewall rules: {e}") from None

    def _ip_rules(self, records, bridges):
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

    def _bridge_rules(self, records, bridges):
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
