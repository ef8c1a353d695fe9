"""linux.resources.unified: cgroup2 files written as given. Applied after
the typed fields, so a key wins over the field that maps to the same file
(as in runc). On a hybrid host the keys go to the container's directory in
the cgroup2 hierarchy, whose controllers are the ones no v1 hierarchy holds."""
from berth.errors import ConfigError
from berth.runtime.cgroups.values import PREFIX

# files that move processes or change the tree: the runtime's business
_REFUSED = frozenset(("cgroup.procs", "cgroup.threads", "cgroup.subtree_control",
                      "cgroup.kill", "cgroup.freeze", "cgroup.type"))


def controller_of(key):
    """"memory.high" -> "memory"; "cgroup.max.depth" -> "cgroup" (core)."""
    return key.split(".", 1)[0]


def writes(res):
    u = res.get("unified")
    if u is None:
        return []
    if not isinstance(u, dict):
        raise ConfigError(f"{PREFIX}.unified: must be an object of file name -> value")
    out = []
    for key, val in u.items():
        f = f"unified[{key!r}]"
        if (not key or "/" in key or key.startswith(".") or "." not in key
                or "\0" in key):
            raise ConfigError(f"{PREFIX}.{f}: not a cgroup2 control file name")
        if key in _REFUSED:
            raise ConfigError(f"{PREFIX}.{f}: the runtime manages {key} itself")
        if not isinstance(val, str):
            raise ConfigError(f"{PREFIX}.{f}: value must be a string, not {type(val).__name__}")
        out.append((key, val, f))
    return out
