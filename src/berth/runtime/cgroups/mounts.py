"""Which cgroup hierarchies are mounted where, and this process's place in
each: /proc/self/cgroup names the hierarchies (v1 ones by their controller
list, named ones as name=X, the v2 one as an empty list) and
/proc/self/mountinfo says where they are mounted. Works the same on v1-only,
v2-only and hybrid hosts; `root` prefixes every path so the unit tests can
point it at a fake tree."""
import os

from berth.errors import SysError
from berth.sys.mountinfo import unescape

# super options of a v1 mount that are not controllers
_FLAGS = frozenset(("rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode",
                    "favordynmods", "nofavordynmods", "none", "nsdelegate",
                    "memory_localevents", "memory_recursiveprot", "memory_hugetlb_accounting"))


class Hierarchy:
    """One mounted hierarchy. kind is "v1" or "v2"; controllers lists the v1
    controllers (or "name=systemd"), empty for v2; own is this process's
    cgroup in it, relative to the hierarchy's root."""
    __slots__ = ("kind", "controllers", "mount", "mroot", "own")

    def __init__(self, kind, controllers, mount, mroot="/", own="/"):
        self.kind = kind
        self.controllers = controllers
        self.mount = mount
        self.mroot = mroot
        self.own = own

    @property
    def name(self):
        return "unified" if self.kind == "v2" else ",".join(self.controllers)

    def dir_of(self, cgpath):
        """Host directory of cgpath (relative to the hierarchy's root). A
        mount of a subtree (a container without a cgroup namespace) holds
        only what lies below its root; anything else is taken as relative to
        the mount, as runc does."""
        mroot = self.mroot.rstrip("/")
        if mroot and (cgpath == mroot or cgpath.startswith(mroot + "/")):
            cgpath = cgpath[len(mroot):]
        return (self.mount + cgpath).rstrip("/") or "/"


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode()
    except OSError as e:
        raise SysError(f"cannot read {path}", errno=e.errno) from None


def cgroup_mounts(mountinfo_text, root=""):
    """[(kind, set of super options, mount point, mount root)] in mount order."""
    out = []
    for line in mountinfo_text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        post = post.split()
        if len(post) < 3 or post[0] not in ("cgroup", "cgroup2"):
            continue
        fields = pre.split()
        mroot, mp = unescape(fields[3]), unescape(fields[4])
        kind = "v2" if post[0] == "cgroup2" else "v1"
        out.append((kind, set(post[2].split(",")), root + mp, mroot))
    return out


def discover(root="/"):
    """Every mounted hierarchy this process is in, v1 ones first."""
    prefix = root.rstrip("/")
    mounts = cgroup_mounts(_read(f"{prefix}/proc/self/mountinfo"), prefix)
    found = []
    for line in _read(f"{prefix}/proc/self/cgroup").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, own = parts
        if ctrls:
            names = ctrls.split(",")
            cands = [m for m in mounts if m[0] == "v1" and all(n in m[1] for n in names)]
            kind = "v1"
        else:
            # "0::/..." is printed even where no cgroup2 is mounted
            names = []
            cands = [m for m in mounts if m[0] == "v2"]
            kind = "v2"
        if not cands:
            continue
        # a hierarchy may be mounted twice (bind mounts): prefer a whole one
        best = next((m for m in cands if m[3] == "/"), cands[0])
        found.append(Hierarchy(kind, names, best[2], best[3], own))
    if not found:
        raise SysError(f"no cgroup hierarchy is mounted (read {prefix}/proc/self/mountinfo)",
                       hint="mount cgroup2 at /sys/fs/cgroup, or the v1 controllers below it")
    found.sort(key=lambda h: h.kind == "v2")
    return found


def is_pure_v2(hierarchies):
    """True where no v1 hierarchy carries a controller (a named v1 hierarchy
    kept for old containers does not count): resources go to cgroup2."""
    has_v2 = any(h.kind == "v2" for h in hierarchies)
    return has_v2 and not any(c for h in hierarchies if h.kind == "v1"
                              for c in h.controllers if not c.startswith("name="))


def clean(path):
    """Lexically cleaned path that cannot climb above its start: "a/../../b"
    is "b" and "/../b" is "/b" (runc cleans cgroupsPath the same way)."""
    absolute = path.startswith("/")
    norm = os.path.normpath("/" + path)
    if norm.startswith("//"):
        norm = norm[1:]
    return norm if absolute else norm.lstrip("/")
