"""A container's cgroup: one directory in every mounted hierarchy (each v1
controller hierarchy, named ones like name=systemd, and cgroup2), placed by
linux.cgroupsPath, and the operations the verbs need on it.

The object is plain data (to_dict/from_dict), saved in the container's
state file before any directory exists, so that `delete`, `pause` or `ps`
in another process act on exactly the directories `create` made."""
import os

from berth.errors import BerthError, ConfigError, SysError
from berth.runtime.cgroups import cpu, cpuset, fs, memory, pids, v1, v2
from berth.runtime.cgroups import devices as device_rules
from berth.runtime.cgroups.mounts import clean, discover, is_pure_v2

# one module per controller; each turns linux.resources into file writes
CONTROLLERS = (device_rules, pids, memory, cpu, cpuset)

KILL_WAIT_S = 5.0
RMDIR_WAIT_S = 2.0


def open_cgroup(cgroups_path, container_id, root="/"):
    """Resolves linux.cgroupsPath in every mounted hierarchy. Nothing is
    created yet; see Cgroup.create.

    - "/a/b": relative to each hierarchy's root.
    - "a/b": relative to the runtime's own cgroup in each hierarchy, as
      runc's cgroupfs driver does; on a v2-only host relative to its
      parent, as runc's fs2 driver does, because the runtime's own cgroup
      holds processes and so cannot hand controllers to a child.
    - systemd's "slice:prefix:name": berth has no systemd driver, so this is
      taken literally as one relative directory name, exactly what runc
      does without --systemd-cgroup.
    - empty: "/berth/<id>". runc would use "<own cgroup>/<id>", which puts
      containers wherever the caller happens to run (here the memory
      hierarchy's /process_api/<hash>, a transient cgroup), and on v2 under
      a cgroup that has processes, where controllers cannot be enabled. One
      fixed parent keeps them findable and removable by any later process.
    """
    if cgroups_path is not None and not isinstance(cgroups_path, str):
        raise ConfigError(f"linux.cgroupsPath: must be a string, not {type(cgroups_path).__name__}")
    if "\0" in (cgroups_path or ""):
        raise ConfigError("linux.cgroupsPath: contains a NUL byte")
    inner = clean(cgroups_path) if cgroups_path else clean(f"/berth/{container_id}")
    if inner in ("", "/"):
        # destroy kills everything in the cgroup: never the root or our own
        what = "the root cgroup" if inner == "/" else "the runtime's own cgroup"
        raise ConfigError(f"linux.cgroupsPath: {cgroups_path!r} names {what}",
                          hint="give the container a cgroup of its own, like /berth/<id>")
    found = discover(root)
    pure = is_pure_v2(found)
    hs = []
    for h in found:
        if inner.startswith("/"):
            cg = inner
        else:
            own = h.own
            if h.kind == "v2" and pure:
                own = os.path.dirname(own.rstrip("/")) or "/"
            cg = own.rstrip("/") + "/" + inner
        d = h.dir_of(cg)
        if d == h.mount.rstrip("/"):
            raise ConfigError(f"linux.cgroupsPath: {cgroups_path!r} is the top of the "
                              f"hierarchy mounted at {h.mount}",
                              hint="give the container a cgroup of its own, like /berth/<id>")
        chain = _chain(h.mount, d)
        made = [p for p in chain if not os.path.isdir(p)]
        if not cgroups_path and chain[0] not in made:
            # /berth is berth's own: the last container out removes it, even
            # when another one made it (destroy skips it while it is in use)
            made.insert(0, chain[0])
        hs.append({"type": h.kind, "controllers": list(h.controllers), "mount": h.mount,
                   "dir": d, "made": made})
    return Cgroup(inner, hs, pure)


def _chain(mount, d):
    """Directories from just below mount down to d, top first."""
    rel = d[len(mount):].strip("/") if d.startswith(mount) else ""
    out = []
    cur = mount.rstrip("/")
    for part in rel.split("/") if rel else ():
        cur = f"{cur}/{part}"
        out.append(cur)
    return out


class Cgroup:
    def __init__(self, path, hierarchies, pure_v2):
        self.path = path
        self.pure_v2 = pure_v2
        # [{"type": "v1"|"v2", "controllers": [...], "mount", "dir", "made": [...]}]
        self.hierarchies = hierarchies

    # ------------------------------------------------------------ record

    @property
    def paths(self):
        """{controller or "name=X" or "unified": directory}."""
        out = {}
        for h in self.hierarchies:
            if h["type"] == "v2":
                out["unified"] = h["dir"]
            for c in h["controllers"]:
                out[c] = h["dir"]
        return out

    def to_dict(self):
        return {"path": self.path, "pureV2": self.pure_v2,
                "hierarchies": [dict(h, controllers=list(h["controllers"]), made=list(h["made"]))
                                for h in self.hierarchies]}

    @classmethod
    def from_dict(cls, d):
        try:
            hs = [{"type": h["type"], "controllers": list(h["controllers"]), "mount": h["mount"],
                   "dir": h["dir"], "made": list(h["made"])} for h in d["hierarchies"]]
            return cls(d["path"], hs, bool(d.get("pureV2")))
        except (KeyError, TypeError) as e:
            raise BerthError(f"container state: malformed cgroup record ({e})") from None

    def _v1(self, ctrl):
        for h in self.hierarchies:
            if h["type"] == "v1" and ctrl in h["controllers"]:
                return h
        return None

    def _unified(self):
        for h in self.hierarchies:
            if h["type"] == "v2":
                return h
        return None

    # ------------------------------------------------------------ life cycle

    def create(self):
        """mkdir -p in every hierarchy; `made` keeps the directories this
        call created, and only those are removed again by destroy."""
        for h in self.hierarchies:
            chain = _chain(h["mount"], h["dir"])
            for attempt in range(5):
                try:
                    for d in chain:
                        # a planned parent that another container made in the
                        # meantime stays on the list: destroy removes parents
                        # only when empty, so claiming it too is harmless
                        if fs.mkdir(d) and d not in h["made"]:
                            h["made"].append(d)
                    break
                except FileNotFoundError:
                    # a parent was removed by another container's destroy
                    # between our mkdirs: walk the chain again
                    if attempt == 4:
                        raise SysError(f"cannot create cgroup {h['dir']}", errno=2) from None
            h["made"].sort(key=lambda p: p.count("/"))
            if h["type"] == "v1" and "cpuset" in h["controllers"]:
                parent = h["mount"].rstrip("/")
                for d in chain:
                    cpuset.inherit(parent, d, fs.read_or, fs.write)
                    parent = d
            elif h["type"] == "v2" and self.pure_v2:
                v2.enable_controllers(h["mount"].rstrip("/"), h["dir"])

    def enter_self(self):
        """Moves the calling process in ("0" is the writer itself)."""
        self.add(0)

    def add(self, pid):
        for h in self.hierarchies:
            fs.write(f"{h['dir']}/cgroup.procs", pid)

    def apply(self, resources, devices=None, update=False):
        """Writes linux.resources. Every value is checked before the first
        write, so a bad one changes nothing.

        devices: linux.devices, whose nodes the container may use. The
        device rules (default list included) are written on create; with
        update=True only if resources carries "devices", because v1 rewrites
        start with "deny all" and would cut a running container off its
        devices for a moment."""
        if resources is not None and not isinstance(resources, dict):
            raise ConfigError(f"linux.resources: must be an object, not {type(resources).__name__}")
        res = resources or {}
        planned = []
        for mod in CONTROLLERS:
            target = self._target(mod.CONTROLLER)
            is_v2 = bool(target and target["type"] == "v2")
            if mod is device_rules:
                if update and "devices" not in res:
                    continue
                ws = mod.writes(res, is_v2, devices)
            else:
                ws = mod.writes(res, is_v2)
            if not ws:
                continue
            if target is None:
                raise BerthError(f"linux.resources.{ws[0][2]}: the {mod.CONTROLLER} cgroup "
                                 f"controller is not mounted on this host",
                                 hint=f"mount it, or remove linux.resources.{ws[0][2]}")
            planned += [(target["dir"], f, v, field) for f, v, field in ws]
        for d, f, v, field in planned:
            fs.write(f"{d}/{f}", v, field=f"linux.resources.{field}")

    def _target(self, ctrl):
        h = self._v1(ctrl)
        if h is None and self.pure_v2:
            h = self._unified()
        return h

    def pids(self):
        """Every process in the container's cgroup and below it, in any
        hierarchy: a process may have moved itself within its cgroup
        namespace in one hierarchy only."""
        seen = set()
        for h in self.hierarchies:
            top = h["dir"]
            for d in [top] + fs.subdirs_bottom_up(top):
                for tok in fs.read_or(f"{d}/cgroup.procs").split():
                    seen.add(int(tok))
        return sorted(seen)

    # ------------------------------------------------------------ freezer

    def _freezer(self):
        """v1 freezer where mounted (runc's choice on hybrid hosts), else
        cgroup2, whose freezer needs no controller."""
        h = self._v1("freezer")
        if h is not None:
            return "v1", h["dir"]
        h = self._unified()
        if h is not None:
            return "v2", h["dir"]
        return None, None

    def freeze(self):
        kind, d = self._freezer()
        if kind is None:
            raise BerthError("cannot pause: no freezer cgroup is mounted",
                             hint="mount the v1 freezer controller or cgroup2")
        if kind == "v1":
            v1.freeze(d)
        else:
            v2.set_frozen(d, True)

    def thaw(self):
        kind, d = self._freezer()
        if kind == "v1":
            v1.thaw(d)
        elif kind == "v2":
            v2.set_frozen(d, False)

    def frozen(self):
        kind, d = self._freezer()
        if kind == "v1":
            return v1.frozen(d)
        if kind == "v2":
            return v2.frozen(d)
        return False

    # ------------------------------------------------------------ teardown

    def destroy(self):
        """Kills what is left, waits (bounded) for the cgroup to empty and
        removes the directories create made, children first, in every
        hierarchy. Gone already is fine; calling it twice is fine."""
        self._kill_all()
        errors = []
        for h in self.hierarchies:
            made = h["made"]
            leaf = h["dir"]
            try:
                if leaf in made:
                    for d in fs.subdirs_bottom_up(leaf) + [leaf]:
                        _rmdir(d)
                for d in reversed(made):
                    if d != leaf and not _rmdir_if_unused(d):
                        break  # shared with another container; so is every parent
            except BerthError as e:
                errors.append(str(e))
        if errors:
            raise BerthError("; ".join(errors))

    def _kill_all(self):
        import time
        me = os.getpid()
        fk, fdir = self._freezer()
        uni = self._unified()
        end = time.monotonic() + KILL_WAIT_S
        delay = 0.001
        while True:
            if uni is not None and os.path.exists(f"{uni['dir']}/cgroup.kill"):
                # race-free against forks, and kills tasks frozen in v2 too
                try:
                    fs.write(f"{uni['dir']}/cgroup.kill", 1)
                except BerthError:
                    pass
            left = [p for p in self.pids() if p != me]
            if not left or time.monotonic() > end:
                return
            for p in left:
                try:
                    os.kill(p, 9)
                except ProcessLookupError:
                    pass
            if fk == "v1" and os.path.isdir(fdir):
                # a task frozen by the v1 freezer dies only once thawed
                try:
                    v1.thaw(fdir)
                except BerthError:
                    pass
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _rmdir(d):
    """Removes a cgroup of the container's own; EBUSY while its last
    processes finish exiting is waited out for a while."""
    import time
    end = time.monotonic() + RMDIR_WAIT_S
    while True:
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != 16 or time.monotonic() > end:
                left = fs.read_or(f"{d}/cgroup.procs").split()
                hint = f"processes still in it: {' '.join(left)}" if left else None
                raise SysError(f"cannot remove cgroup {d}", errno=e.errno, hint=hint) from None
            time.sleep(0.01)


def _rmdir_if_unused(d):
    """Removes a parent this container made unless another container uses
    it by now. False if it stays."""
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno in (16, 39):  # EBUSY, ENOTEMPTY: someone else's cgroup is in it
            return False
        raise SysError(f"cannot remove cgroup {d}", errno=e.errno) from None
    return True
