"""pids controller: linux.resources.pids.limit."""
from berth.runtime.cgroups.values import integer, section

CONTROLLER = "pids"


def writes(res, v2):
    """[(file, value, field)]. A limit of 0 means "not set" and a negative
    one "no limit", as in runc."""
    sec = section(res, "pids")
    if sec is None:
        return []
    limit = integer(sec, "limit", "pids.limit")
    if not limit:
        return []
    return [("pids.max", "max" if limit < 0 else limit, "pids.limit")]
