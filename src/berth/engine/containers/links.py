"""Legacy links (--link name:alias) on the default bridge, as dockerd
keeps them: the linker records the target's id and the alias; the names
(/web:/client/alias in HostConfig.Links, /client/alias among the target's
Names, and as a reference: /containers/client/alias/json) are made from
the current names, so a rename of either side shows at once. At each
start of the linker the target must run; its address, exposed ports and
environment become the linker's ALIAS_* variables. The linker's
/etc/hosts line and, with inter-container traffic off, the firewall's
opening for the exposed ports are the network driver's (it reads
data["_links"]). On user networks links are endpoint aliases instead."""
import os
import re

from berth.errors import BerthError, ConfigError, NotFound
from berth.oci import jsonio


def _legacy(host):
    return (host.get("NetworkMode") or "bridge") in ("bridge", "default")


def record(containers, c, host):
    """-> [{"id", "alias"}] for HostConfig.Links, checked as dockerd checks
    them at create (a 400 naming the missing container)."""
    out = []
    if not _legacy(host):
        return out  # the docker CLI moves them into the endpoint's Links
    for spec in host.get("Links") or ():
        if not isinstance(spec, str) or not spec:
            raise ConfigError(f"HostConfig.Links: {spec!r} is not \"name:alias\"")
        name, _, alias = spec.partition(":")
        alias = (alias or name).lstrip("/")
        try:
            target = containers.get(name)
        except NotFound as e:
            raise ConfigError(f"could not get container for {name}: {e}") from None
        if target.id == c.id:
            raise ConfigError(f"could not get container for {name}: No such container: {name}")
        if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", alias):
            raise ConfigError(f"Invalid alias name ({alias}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                              "are allowed")
        out.append({"id": target.id, "alias": alias})
    return out


def _live(containers, c):
    for link in c.data.get("_links") or ():
        try:
            yield link, containers.get(link["id"])
        except NotFound:
            continue  # removed since: the link went with it


def shown(containers, c):
    """HostConfig.Links as dockerd shows it: ["/web:/client/alias"]."""
    return [f"{t.name}:{c.name}/{link['alias']}" for link, t in _live(containers, c)] or None


def names(containers, c):
    """The link names by which other containers reach c: ["/client/alias"]."""
    out = []
    for other in containers.list(all=True):
        for link, t in _live(containers, other):
            if t.id == c.id:
                out.append(f"{other.name}/{link['alias']}")
    return out


def target(containers, ref):
    """The container a link name ("client/alias", "/client/alias") names."""
    parent, _, alias = ref.strip("/").rpartition("/")
    owner = containers.get(parent)
    for link, t in _live(containers, owner):
        if link["alias"] == alias:
            return t
    raise NotFound(f"No such container: {ref}")


def remove(containers, ref):
    """DELETE /containers/client/alias?link=1 (docker rm -l)."""
    if "/" not in ref.strip("/"):
        containers.get(ref)
        raise BerthError("Conflict, cannot remove the default link name of the container")
    parent, _, alias = ref.strip("/").rpartition("/")
    owner = containers.get(parent)
    links = owner.data.get("_links") or []
    keep = [link for link in links if link["alias"] != alias]
    if len(keep) == len(links):
        raise NotFound(f"No such container: {ref}")
    with owner.cond:
        owner.data["_links"] = keep
        owner.save()


def _ip(c):
    return ((c.data.get("NetworkSettings") or {}).get("Networks") or {}) \
        .get("bridge", {}).get("IPAddress") or ""


def refresh(containers, c):
    """Before a start of the linker: each target must run; the ALIAS_*
    variables of its address and ports go into config.json's env."""
    links = list(_live(containers, c))
    path = os.path.join(c.bundle, "config.json")
    spec = jsonio.load_file(path)
    env = [e for e in spec["process"].get("env") or [] if e not in (c.data.get("_link_env") or [])]
    added = []
    for link, t in links:
        if not t.running or not _ip(t):
            raise BerthError(f"Cannot link to a non running container: {t.name} AS "
                             f"{c.name}/{link['alias']}")
        added += link_env(f"{c.name}/{link['alias']}", _ip(t), t.config)
        # for the network driver: the ports a firewall with icc off opens
        link["ports"] = sorted(_ports(t.config))
    if not links and not c.data.get("_link_env"):
        return
    spec["process"]["env"] = env + added
    jsonio.write_atomic(path, spec)
    with c.cond:
        c.data["_link_env"] = added
        c.save()


def _ports(config):
    out = []
    for key in (config.get("ExposedPorts") or {}):
        port, _, proto = key.partition("/")
        if port.isdigit():
            out.append((int(port), proto or "tcp"))
    return out


def link_env(full_name, ip, config):
    """dockerd's variables of a link (moby's links.Link.ToEnv)."""
    alias = re.sub("-", "_", full_name.rsplit("/", 1)[-1].upper())
    out = [f"{alias}_NAME={full_name}"]
    ports = sorted(_ports(config))
    if ports:
        out.append(f"{alias}_PORT={ports[0][1]}://{ip}:{ports[0][0]}")
    for port, proto in ports:
        pre = f"{alias}_PORT_{port}_{proto.upper()}"
        out += [f"{pre}={proto}://{ip}:{port}", f"{pre}_ADDR={ip}", f"{pre}_PORT={port}",
                f"{pre}_PROTO={proto}"]
    for item in config.get("Env") or ():
        k, eq, v = item.partition("=")
        if eq and k not in ("HOME", "PATH"):
            out.append(f"{alias}_ENV_{k}={v}")
    return out

