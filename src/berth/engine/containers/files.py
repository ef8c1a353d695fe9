"""/etc/hostname, /etc/hosts and /etc/resolv.conf, written by the engine
per container and bind-mounted (as Docker does), so the image's own files
stay untouched and a read-only rootfs still gets them."""
import os



def _write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def resolv_conf(host_dns=None, search=None, options=None, source="/etc/resolv.conf",
                keep_loopback=False):
    """The host's resolv.conf without loopback resolvers (unreachable from a
    container's own network namespace, not with host networking); explicit
    --dns wins."""
    lines = []
    try:
        with open(source) as f:
            for line in f:
                parts = line.split()
                if not parts:
                    continue
                loopback = parts[1].startswith("127.") or parts[1] == "::1"
                if parts[0] == "nameserver" and (host_dns or (loopback and not keep_loopback)):
                    continue
                if parts[0] == "search" and search:
                    continue
                if parts[0] == "options" and options:
                    continue
                lines.append(line.rstrip("\n"))
    except OSError:
        pass
    lines += [f"nameserver {d}" for d in host_dns or ()]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def write_etc(cdir, hostname, domainname, host):
    """-> {container path: host file}. With host networking, as dockerd:
    the host's name, its resolv.conf and a copy of its /etc/hosts (the
    usual lines instead when extra hosts are asked for)."""
    host_net = (host.get("NetworkMode") or "") == "host"
    if host_net:
        hostname = os.uname().nodename
    full = f"{hostname}.{domainname}" if domainname else hostname
    out = {}
    p = os.path.join(cdir, "hostname")
    _write(p, hostname + "\n")
    out["/etc/hostname"] = p
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
             "ff02::2\tip6-allrouters"]
    if host_net and not host.get("ExtraHosts"):
        try:
            with open("/etc/hosts") as f:
                hosts = f.read().rstrip("\n").split("\n")
        except OSError:
            pass
    for extra in host.get("ExtraHosts") or ():
        name, _, addr = extra.partition(":")
        if name and addr:
            hosts.append(f"{addr}\t{name}")
    if not host_net:
        hosts.append(f"127.0.1.1\t{full} {hostname}" if full != hostname else f"127.0.1.1\t{hostname}")
    p = os.path.join(cdir, "hosts")
    _write(p, "\n".join(hosts) + "\n")
    out["/etc/hosts"] = p
    p = os.path.join(cdir, "resolv.conf")
    _write(p, resolv_conf(host.get("Dns"), host.get("DnsSearch"), host.get("DnsOptions"),
                          keep_loopback=host_net))
    out["/etc/resolv.conf"] = p
    return out
