"""memory controller: linux.resources.memory.limit (swap, reservation and
the rest come with the full resources work)."""
from berth.errors import ConfigError
from berth.runtime.cgroups.values import PREFIX, integer, section

CONTROLLER = "memory"


def writes(res, v2):
    sec = section(res, "memory")
    if sec is None:
        return []
    out = []
    limit = integer(sec, "limit", "memory.limit")
    if limit:  # 0 means "not set", as in runc
        if limit < -1:
            raise ConfigError(f"{PREFIX}.memory.limit: {limit} is neither a size nor -1 (no limit)")
        if v2:
            out.append(("memory.max", "max" if limit == -1 else limit, "memory.limit"))
        else:
            out.append(("memory.limit_in_bytes", limit, "memory.limit"))
    return out
