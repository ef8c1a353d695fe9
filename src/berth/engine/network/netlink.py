"""Links, addresses and routes through pyroute2 (netlink), in the host's
network namespace or in a container's (entered by one thread for the time
it takes to open a netlink socket there: a socket keeps the namespace it
was made in)."""
import contextlib
import errno
import ipaddress
import os
import socket
import threading

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from berth.errors import BerthError
from berth.sys import libc

_ns_lock = threading.Lock()
IFA_F_NODAD = 0x02


@contextlib.contextmanager
def host_lock():
    """Every berth daemon on the host, one at a time: choosing a subnet and
    making its bridge is check-then-act across processes (flock on /run,
    which leaves no file behind)."""
    import fcntl
    fd = os.open("/run", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def host():
    return IPRoute()


@contextlib.contextmanager
def _entered(pid):
    """The calling thread inside /proc/<pid>/ns/net for the block, then
    back in the host's (one thread at a time)."""
    try:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise BerthError(f"network namespace of pid {pid}", errno=e.errno) from None
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _ns_lock:
            libc.setns(target, libc.CLONE_NEWNET, "container network namespace")
            try:
                yield
            finally:
                libc.setns(own, libc.CLONE_NEWNET, "host network namespace")
    finally:
        os.close(target)
        os.close(own)


@contextlib.contextmanager
def in_netns(pid):
    """An IPRoute whose socket lives in /proc/<pid>/ns/net."""
    with _entered(pid):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def ns_sysctls(pid, values):
    """Write sysctls ({"net/ipv6/conf/eth0/accept_ra": 0}) of the network
    namespace of pid: /proc/sys/net is the namespace of whoever opens it.
    Keys the kernel lacks (IPv6 off) are skipped."""
    with _entered(pid):
        for key, value in values.items():
            if os.path.exists(f"/proc/sys/{key}"):
                write_sysctl(f"/proc/sys/{key}", value)


def index(ipr, name):
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def delete_link(ipr, name):
    """Remove a link if it exists -> True if it was there."""
    idx = index(ipr, name)
    if idx is None:
        return False
    try:
        ipr.link("del", index=idx)
    except NetlinkError as e:
        if e.code != errno.ENODEV:
            raise
    return True


def links(ipr, kind=None):
    """-> {name: kind} of the host's links."""
    out = {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME")
        info = link.get_attr("IFLA_LINKINFO")
        k = info.get_attr("IFLA_INFO_KIND") if info else None
        if kind is None or k == kind:
            out[name] = k
    return out


def write_sysctl(path, value):
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise BerthError(f"sysctl {path}", errno=e.errno) from None


def read_sysctl(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def check_subnet_free(ipr, subnet, own_ifname):
    """Refuse a subnet some other interface already routes (two bridges
    with one subnet would send replies to the wrong one)."""
    net = ipaddress.ip_network(subnet, strict=False)
    own = index(ipr, own_ifname)
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    for r in ipr.get_routes(family=family, table=254):
        dst = r.get_attr("RTA_DST")
        if not dst:
            continue
        rnet = ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False)
        if rnet.is_link_local or rnet.is_multicast:
            continue   # every IPv6 link has fe80::/64
        oif = r.get_attr("RTA_OIF")
        if rnet.overlaps(net) and oif != own:
            names = ipr.get_links(oif) if oif else []
            name = names[0].get_attr("IFLA_IFNAME") if names else str(oif)
            raise BerthError(f"subnet {net} overlaps {rnet}, routed via {name}",
                             hint="give this network (or the daemon's --bip) another subnet")


def ensure_bridge(ipr, name, gateway, prefixlen, mtu=1500, route_localnet=True, v6=None):
    """The bridge with its IPv4 gateway address (and v6: (gateway6,
    prefixlen6), its IPv6 one), up."""
    idx = index(ipr, name)
    if idx is None:
        check_subnet_free(ipr, f"{gateway}/{prefixlen}", name)
        if v6:
            check_subnet_free(ipr, f"{v6[0]}/{v6[1]}", name)
        try:
            # a MAC of its own (02:42 + the gateway's bytes, which no
            # container gets): otherwise the bridge takes its lowest port's,
            # and containers' ARP entries for the gateway go stale as ports leave
            mac = "02:42:" + ":".join(f"{x:02x}" for x in ipaddress.ip_address(gateway).packed)
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu, address=mac)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise BerthError(f"bridge {name}: {e}") from None
        idx = index(ipr, name)
    # no router advertisements and no IPv6 address on berth's bridges
    write_sysctl(f"/proc/sys/net/ipv6/conf/{name}/accept_ra", 0) if os.path.exists(
        f"/proc/sys/net/ipv6/conf/{name}") else None
    if route_localnet:
        # 127.0.0.1:<published port> is DNATed to a container through this bridge
        write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", 1)
    _add_address(ipr, idx, name, gateway, prefixlen)
    if v6:
        _add_address(ipr, idx, name, v6[0], v6[1])
    ipr.link("set", index=idx, state="up")
    return idx


def _add_address(ipr, idx, name, ip, prefixlen):
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    have = {(ipaddress.ip_address(a.get_attr("IFA_ADDRESS")), a["prefixlen"])
            for a in ipr.get_addr(index=idx, family=family)}
    if (ipaddress.ip_address(ip), prefixlen) in have:
        return
    try:
        # no duplicate address detection: berth's records say who owns an
        # address, and a tentative one could not be used for seconds
        ipr.addr("add", index=idx, address=ip, prefixlen=prefixlen,
                 flags=IFA_F_NODAD if family == socket.AF_INET6 else 0)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise BerthError(f"{name}: address {ip}/{prefixlen}: {e}") from None


def plug(ipr, pid, bridge, host_name, peer_name, ifname, ip, prefixlen, mac, gateway,
         default_route, mtu=1500, v6=None):
    """A veth pair: host_name on bridge, the peer moved into the namespace
    of pid, renamed ifname, given mac and ip/prefixlen (and the default
    route via gateway), up; lo up too. v6: (ip6, prefixlen6, gateway6)."""
    br = index(ipr, bridge)
    if br is None:
        raise BerthError(f"bridge {bridge} is missing")
    for n in (host_name, peer_name):
        delete_link(ipr, n)
    try:
        ipr.link("add", ifname=host_name, kind="veth", peer=peer_name, mtu=mtu)
    except NetlinkError as e:
        raise BerthError(f"veth {host_name}: {e}") from None
    hidx = index(ipr, host_name)
    pidx = index(ipr, peer_name)
    ipr.link("set", index=hidx, master=br)
    ipr.link("set", index=hidx, state="up")
    try:
        ipr.link("set", index=pidx, net_ns_pid=int(pid))
    except NetlinkError as e:
        raise BerthError(f"moving {peer_name} into the namespace of pid {pid}: {e}") from None
    _configure(pid, peer_name, ifname, ip, prefixlen, mac, gateway, default_route, v6)


def _configure(pid, peer_name, ifname, ip, prefixlen, mac, gateway, default_route, v6=None):
    with in_netns(pid) as ns:
        idx = index(ns, peer_name)
        if idx is None:
            raise BerthError(f"{peer_name} did not arrive in the namespace of pid {pid}")
        ns.link("set", index=idx, ifname=ifname, address=mac)
        # before the link is up: no router advertisement is ever taken, and
        # the link-local address is the MAC's EUI-64 (the bridge filter
        # lets that one through)
        ns_sysctls(pid, {f"net/ipv6/conf/{n}/{k}": v for n in ("default", ifname)
                         for k, v in (("accept_ra", 0), ("addr_gen_mode", 0))})
        ns.addr("add", index=idx, address=ip, prefixlen=prefixlen)
        if v6:
            ns.addr("add", index=idx, address=v6[0], prefixlen=v6[1], flags=IFA_F_NODAD)
        ns.link("set", index=idx, state="up")
        lo = index(ns, "lo")
        if lo is not None:
            ns.link("set", index=lo, state="up")
        if default_route:
            ns.route("add", dst="0.0.0.0/0", gateway=gateway, oif=idx)
            if v6:
                ns.route("add", dst="::/0", gateway=v6[2], oif=idx, family=socket.AF_INET6)


def plug_macvlan(ipr, pid, parent, tmp_name, ifname, ip, prefixlen, mac, gateway,
                 default_route, mtu=1500):
    """A macvlan (bridge mode) on the host interface parent, moved into the
    namespace of pid as ifname: the container sits on parent's segment
    with an address of its own, no host bridge and no NAT in between."""
    pidx = index(ipr, parent)
    if pidx is None:
        raise BerthError(f"macvlan parent {parent} does not exist on this host")
    delete_link(ipr, tmp_name)
    try:
        ipr.link("add", ifname=tmp_name, kind="macvlan", link=pidx, macvlan_mode="bridge",
                 mtu=mtu)
    except NetlinkError as e:
        raise BerthError(f"macvlan on {parent}: {e}") from None
    idx = index(ipr, tmp_name)
    try:
        ipr.link("set", index=idx, net_ns_pid=int(pid))
    except NetlinkError as e:
        delete_link(ipr, tmp_name)
        raise BerthError(f"moving {tmp_name} into the namespace of pid {pid}: {e}") from None
    _configure(pid, tmp_name, ifname, ip, prefixlen, mac, gateway, default_route)


def lo_up(pid):
    with in_netns(pid) as ns:
        lo = index(ns, "lo")
        if lo is not None:
            ns.link("set", index=lo, state="up")


def flush_conntrack(ips):
    """Forget the host's connection-tracking entries to and from addresses
    being released (a DNATed UDP flow would otherwise outlive its container
    and reach whoever gets the address next). Best effort -> entries removed."""
    if not ips:
        return 0
    try:
        from pyroute2 import Conntrack
    except ImportError:
        return 0
    removed = 0
    # one socket per family: a dump (or delete) asks for one family's table
    for family in (socket.AF_INET, socket.AF_INET6):
        mine = [ip for ip in ips if (":" in ip) == (family == socket.AF_INET6)]
        if not mine:
            continue
        try:
            ct = Conntrack(nfgen_family=family)
        except Exception:  # noqa: BLE001 - no nf_conntrack_netlink: nothing to flush
            return removed
        try:
            for e in _tracked(ct, family, mine):
                try:
                    # (Conntrack.delete deletes, then fails iterating None)
                    ct.entry("del", tuple_orig=e.tuple_orig)
                    removed += 1
                except NetlinkError:  # gone already
                    pass
        finally:
            ct.close()
    return removed


def _tracked(ct, family, ips):
    """The entries from (or answered by) any of ips, as a list."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple
    out = []
    if family == socket.AF_INET:
        for ip in ips:
            for flt in ({"tuple_orig": NFCTAttrTuple(saddr=ip)},
                        {"tuple_reply": NFCTAttrTuple(saddr=ip)}):
                try:
                    out += list(ct.dump_entries(**flt))
                except Exception:  # noqa: BLE001
                    continue
        return out
    # the kernel-side filter pyroute2 builds finds no IPv6 entry: the
    # family's table is read whole and matched here
    want = {ipaddress.ip_address(ip) for ip in ips}
    try:
        for e in ct.dump_entries():
            if {ipaddress.ip_address(a) for a in (e.tuple_orig.saddr, e.tuple_reply.saddr)
                    if a} & want:
                out.append(e)
    except Exception:  # noqa: BLE001
        pass
    return out
