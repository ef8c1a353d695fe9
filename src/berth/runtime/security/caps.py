"""process.capabilities: parse the five sets, then apply them in the
container's init in two steps around the uid change:

  drop_bounding()  while still full root, before setresuid (dropping from
                   the bounding set needs CAP_SETPCAP)
  apply()          after PR_SET_KEEPCAPS=1 and setresuid/setresgid: capset,
                   then ambient (the kernel only accepts ambient caps that
                   are permitted and inheritable already), then KEEPCAPS=0
"""
from berth.errors import ConfigError, SysError
from berth.sys import caps
from berth.sys import libc

_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


class CapSets:
    """Bitmasks (bit n = capability n). unknown: names this kernel does not
    have, left out as runc does; the caller may warn about them."""

    __slots__ = _SETS + ("unknown",)

    def __init__(self, bounding=0, effective=0, inheritable=0, permitted=0, ambient=0,
                 unknown=()):
        self.bounding = bounding
        self.effective = effective
        self.inheritable = inheritable
        self.permitted = permitted
        self.ambient = ambient
        self.unknown = list(unknown)

    def __eq__(self, other):
        return isinstance(other, CapSets) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self):
        return "CapSets(" + ", ".join(
            f"{s}={caps.names(getattr(self, s))}" for s in _SETS) + ")"

    def warnings(self):
        """Lowercase messages for what will be silently left out."""
        out = [f"capability {name} is not known to this kernel; ignored"
               for name in self.unknown]
        for name in caps.names(self.ambient & ~(self.permitted & self.inheritable)):
            out.append(f"ambient capability {name} is not both permitted and "
                       f"inheritable; not raised")
        return out


def parse(capabilities, field="process.capabilities"):
    """OCI process.capabilities -> CapSets. None means no capabilities."""
    if capabilities is None:
        return CapSets()
    if not isinstance(capabilities, dict):
        raise ConfigError(f"{field}: must be an object")
    last = caps.last_cap()
    masks = {}
    unknown = []
    for name in _SETS:
        items = capabilities.get(name)
        mask = 0
        if items is not None:
            if not isinstance(items, list):
                raise ConfigError(f"{field}.{name}: must be a list of names such as \"CAP_CHOWN\"")
            for i, cap in enumerate(items):
                nr = caps.NUMBERS.get(cap) if isinstance(cap, str) else None
                if nr is None:
                    raise ConfigError(f"{field}.{name}[{i}]: unknown capability {cap!r}")
                if nr > last:
                    if cap not in unknown:
                        unknown.append(cap)
                    continue
                mask |= 1 << nr
        masks[name] = mask
    return CapSets(unknown=unknown, **masks)


def drop_bounding(cs):
    """Drop every capability not in cs.bounding from the bounding set."""
    for nr in range(caps.last_cap() + 1):
        if cs.bounding >> nr & 1:
            continue
        try:
            libc.prctl(libc.PR_CAPBSET_DROP, nr)
        except SysError as e:
            raise SysError(f"drop {caps.name(nr)} from the bounding set", errno=e.errno,
                           hint="this needs CAP_SETPCAP; call it before changing uid") from None


def apply(cs):
    """Set effective, permitted, inheritable and ambient, then clear
    KEEPCAPS so a later exec follows the normal rules."""
    try:
        libc.capset(cs.effective, cs.permitted, cs.inheritable)
    except SysError as e:
        hint = None
        if cs.effective & ~cs.permitted:
            hint = (f"effective has {', '.join(caps.names(cs.effective & ~cs.permitted))} "
                    f"which permitted lacks")
        elif e.errno == 1:
            hint = "permitted can only shrink: was PR_SET_KEEPCAPS set before the uid change?"
        raise SysError("set capabilities (capset)", errno=e.errno, hint=hint) from None
    try:
        libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    except SysError as e:
        raise SysError("clear ambient capabilities", errno=e.errno) from None
    # like runc, ambient caps the kernel would refuse are skipped, not fatal
    raise_mask = cs.ambient & cs.permitted & cs.inheritable
    nr = 0
    while raise_mask >> nr:
        if raise_mask >> nr & 1:
            try:
                libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, nr)
            except SysError as e:
                raise SysError(f"raise ambient capability {caps.name(nr)}",
                               errno=e.errno) from None
        nr += 1
    try:
        libc.prctl(libc.PR_SET_KEEPCAPS, 0)
    except SysError as e:
        raise SysError("clear PR_SET_KEEPCAPS", errno=e.errno) from None
