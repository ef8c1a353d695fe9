"""net_cls and net_prio controllers (v1 only): linux.resources.network.
cgroup2 has neither; match traffic by cgroup path in nftables instead."""
from berth.errors import ConfigError
from berth.oci.fields import objects
from berth.runtime.cgroups.values import PREFIX, integer, not_on, section

CONTROLLER = "net_cls"
PRIO = "net_prio"


def _sec(res, v2):
    sec = section(res, "network")
    if sec is None or (sec.get("classID") is None and not sec.get("priorities")):
        return None
    if v2:
        raise not_on(True, "network", "match the cgroup path in nftables instead")
    return sec


def writes(res, v2):
    """net_cls.classid."""
    sec = _sec(res, v2)
    if sec is None:
        return []
    cid = integer(sec, "classID", "network.classID", minimum=0)
    if cid is None:
        return []
    if cid > 0xFFFFFFFF:
        raise ConfigError(f"{PREFIX}.network.classID: {cid} does not fit in 32 bits")
    return [("net_cls.classid", cid, "network.classID")]


def prio_writes(res, v2):
    """net_prio.ifpriomap, one line per interface."""
    sec = _sec(res, v2)
    if sec is None:
        return []
    out = []
    for f, e in objects(sec.get("priorities"), "network.priorities", f"{PREFIX}."):
        name = e.get("name")
        if not isinstance(name, str) or not name or len(name) > 15 or " " in name or "/" in name:
            raise ConfigError(f"{PREFIX}.{f}.name: {name!r} is not an interface name")
        prio = integer(e, "priority", f"{f}.priority", minimum=0)
        out.append(("net_prio.ifpriomap", f"{name} {prio or 0}", f))
    return out
