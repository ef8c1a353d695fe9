"""A container's cgroup: one directory in every mounted hierarchy (each v1
controller hierarchy, named ones like name=systemd, and cgroup2), placed by
linux.cgroupsPath, and the operations the verbs need on it.

The object is plain data (to_dict/from_dict), saved in the container's
state file before any directory exists, so that `delete`, `pause` or `ps`
in another process act on exactly the directories `create` made."""
import os

from berth.errors import BerthError, ConfigError, SysError
# what `state`, `kill`, `delete`, `pause` need of an existing cgroup; the
# controllers and the mount discovery are imported by create and update
# only, where limits are written (each module is ~0.2 ms of an exec'd verb)
from berth.runtime.cgroups import fs, v1, v2


def _controllers():
    """One module per controller; each turns linux.resources into file writes."""
    from berth.runtime.cgroups import cpu, cpuset, memory, pids
    from berth.runtime.cgroups import devices as device_rules
    return device_rules, pids, memory, cpu, cpuset

# imported only when the section is there: (section, module, function,
# v1 controller, v2 controller)
_LAZY = (("blockIO", "blkio", "writes", "blkio", "io"),
         ("hugepageLimits", "hugetlb", "writes", "hugetlb", "hugetlb"),
         ("network", "net", "writes", "net_cls", None),
         ("network", "net", "prio_writes", "net_prio", None))

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
    from berth.runtime.cgroups.mounts import clean, discover, is_pure_v2
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
                from berth.runtime.cgroups import cpuset
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
        """Writes linux.resources. Every value is checked, and every
        controller found, before the first write, so a bad value changes
        nothing. With update=True a write the kernel refuses undoes the
        writes before it, so the container keeps its old limits whole.

        devices: linux.devices; a default device rule whose node it lists
        again is left out (see devices.py). The device rules (default list
        included) are written on create; with update=True only if resources
        carries "devices", because v1 rewrites start with "deny all" and
        would cut a running container off its devices for a moment."""
        if resources is not None and not isinstance(resources, dict):
            raise ConfigError(f"linux.resources: must be an object, not {type(resources).__name__}")
        res = resources or {}
        planned, program, enable = self._plan(res, devices, update)
        for mount, leaf, ctrl in enable:
            v2.enable_controller(mount, leaf, ctrl)
        done = []
        try:
            for d, f, v, field in planned:
                path = f"{d}/{f}"
                old = _old_value(path, v) if update else None
                fs.write(path, v, field=f"linux.resources.{field}")
                done.append((path, old))
            if program is not None:
                from berth.runtime.cgroups import ebpf
                ebpf.install(program[0], program[1])
        except BerthError as e:
            if update and done:
                undone = _undo(done)
                e.args = (f"{e.args[0]} (the {undone} change(s) made before it were undone)",)
            raise

    def _plan(self, res, devices, update):
        """([(dir, file, value, field)], (dir, rules) or None, [(mount, leaf,
        v2 controller to enable)]): everything apply does, checked."""
        planned = []
        enable = []
        program = None
        controllers = _controllers()
        device_rules, _, memory, cpu, _ = controllers
        for mod in controllers:
            target = self._target(mod.CONTROLLER, enable)
            is_v2 = bool(target and target["type"] == "v2")
            if mod is device_rules:
                if update and "devices" not in res:
                    continue
                if is_v2:
                    program = (target["dir"], mod.all_rules(res, devices))
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
            if mod is memory and not is_v2:
                ws = memory.arrange(ws, target["dir"], fs.read_or)
            if mod is cpu and not is_v2:
                ws = cpu.arrange(ws, target["dir"], fs.read_or)
                planned += _rt_parents(target, ws)
            planned += [(target["dir"],) + _pick(target["dir"], w) for w in ws]
        for section, modname, fn, ctrl, v2ctrl in _LAZY:
            if not res.get(section):
                continue
            mod = __import__(f"berth.runtime.cgroups.{modname}", fromlist=[fn])
            probe = self._target(ctrl, None, v2ctrl)
            is_v2 = bool(probe and probe["type"] == "v2")
            ws = getattr(mod, fn)(res, is_v2)
            if not ws:
                continue
            target = self._target(ctrl, enable, v2ctrl)
            if target is None:
                raise BerthError(f"linux.resources.{ws[0][2]}: the {ctrl} cgroup controller "
                                 "is not mounted on this host",
                                 hint=f"mount it, or remove linux.resources.{section}")
            planned += [(target["dir"],) + _pick(target["dir"], w) for w in ws]
        if "unified" in res:
            planned += self._plan_unified(res, enable)
        return planned, program, enable

    def _plan_unified(self, res, enable):
        from berth.runtime.cgroups import unified
        ws = unified.writes(res)
        if not ws:
            return []
        u = self._unified()
        if u is None:
            raise ConfigError(f"linux.resources.{ws[0][2]}: no cgroup2 hierarchy is mounted",
                              hint="the unified map needs cgroup v2; use the typed fields on v1")
        out = []
        for f, v, field in ws:
            ctrl = unified.controller_of(f)
            if ctrl != "cgroup" and not self.pure_v2:
                if self._v1(ctrl) is not None:
                    raise ConfigError(f"linux.resources.{field}: the {ctrl} controller is "
                                      "bound to a v1 hierarchy on this host",
                                      hint="use the typed linux.resources field instead")
                if self._target(ctrl, enable) is None:
                    raise ConfigError(f"linux.resources.{field}: cgroup2 offers no {ctrl} "
                                      "controller on this host")
            out.append((u["dir"], f, v, field))
        return out

    def _target(self, ctrl, enable=None, v2name=None):
        """The hierarchy that takes ctrl's files: its v1 hierarchy; cgroup2
        on a pure v2 host; and on a hybrid host cgroup2 too when no v1
        hierarchy holds ctrl but cgroup2 offers it (hugetlb here, for one).
        Such a controller is added to enable, to be switched on down the
        path before the first write."""
        h = self._v1(ctrl)
        if h is not None:
            return h
        u = self._unified()
        if u is None:
            return None
        if self.pure_v2:
            return u
        name = v2name or ctrl
        if name not in fs.read_or(f"{u['mount'].rstrip('/')}/cgroup.controllers").split():
            return None
        if enable is not None and (u["mount"], u["dir"], name) not in enable:
            enable.append((u["mount"], u["dir"], name))
        return u

    # ------------------------------------------------------------ stats

    def stats(self):
        """runc's stats object ({"cpu", "memory", "pids", ...}) from the
        control files; see stats.py."""
        from berth.runtime.cgroups import stats
        return stats.collect(self)

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

    def procs_in_leaf(self):
        """How many processes the container's own directory has already
        (first hierarchy only: one read, as this runs on every create)."""
        if not self.hierarchies:
            return 0
        return len(fs.read_or(f"{self.hierarchies[0]['dir']}/cgroup.procs").split())

    def freezer_dir(self):
        return self._freezer()[1]

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
        gone = self._rmdir_leaves()
        if not gone:
            self._kill_all()
        errors = []
        for h in self.hierarchies:
            made = h["made"]
            leaf = h["dir"]
            try:
                if leaf in made and not gone:
                    for d in fs.subdirs_bottom_up(leaf) + [leaf]:
                        _rmdir(d)
                elif not gone:
                    # made before create (by hand, to set a parent's limit,
                    # or shared with another container): the container's
                    # all the same, so it goes as runc removes it, unless
                    # another container still runs in it
                    try:
                        for d in fs.subdirs_bottom_up(leaf) + [leaf]:
                            _rmdir(d)
                    except BerthError:
                        pass
                for d in reversed(made):
                    if d != leaf and not _rmdir_if_unused(d):
                        break  # shared with another container; so is every parent
            except BerthError as e:
                errors.append(str(e))
        if errors:
            raise BerthError("; ".join(errors))

    def _rmdir_leaves(self):
        """True if every leaf is the container's own and now removed. An
        exited container's cgroups are empty, and an rmdir that succeeds
        makes the scans for processes and subdirectories (~2 ms over a v1
        host's dozen hierarchies) unnecessary; one that fails leaves them
        to destroy()."""
        if not all(h["dir"] in h["made"] for h in self.hierarchies):
            return False
        for h in self.hierarchies:
            try:
                os.rmdir(h["dir"])
            except FileNotFoundError:
                pass
            except OSError:
                return False
        return True

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


def _pick(d, w):
    """(file, value, field) with a choice of files (a tuple) resolved to
    the first that exists in d, the value of the same index with it."""
    f, v, field = w
    if isinstance(f, tuple):
        k = next((i for i, name in enumerate(f) if os.path.exists(f"{d}/{name}")), 0)
        f = f[k]
        if isinstance(v, tuple):
            v = v[k]
    return f, v, field


def _rt_parents(h, ws):
    """A v1 realtime budget must fit in the parent's: raise each ancestor
    below the root that has less (a new parent starts with 0)."""
    want = next((int(v) for f, v, _ in ws if f == "cpu.rt_runtime_us"), 0)
    if want <= 0:
        return []
    out = []
    for d in _chain(h["mount"], h["dir"])[:-1]:
        try:
            cur = int(fs.read_or(f"{d}/cpu.rt_runtime_us", "0") or 0)
        except ValueError:
            cur = 0
        if 0 <= cur < want:
            out.append((d, "cpu.rt_runtime_us", want, "cpu.realtimeRuntime"))
    return out


def _old_value(path, new):
    """What to write back to path to undo writing new; None if unknown.
    Per-device files (blkio throttles, io.max, ifpriomap) take one line per
    device, so the device's old line (or its "no limit" line) is kept."""
    text = fs.read_or(path, None)
    if text is None:
        return None
    name = os.path.basename(path)
    if name.startswith("devices."):
        return None  # write-only rule lists
    if name == "memory.oom_control":
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill_disable":
                return v
        return None
    key = str(new).split(" ", 1)[0] if " " in str(new) else None
    if key is not None and (":" in key or name == "net_prio.ifpriomap"):
        for line in text.splitlines():
            if line.split(" ", 1)[0] == key:
                return line
        if name == "io.max":
            return f"{key} rbps=max wbps=max riops=max wiops=max"
        if name.startswith("blkio.throttle."):
            return f"{key} 0"
        return None
    if "\n" in text:
        first = text.splitlines()[0]
        return first if first.startswith("default ") else None
    return text


def _undo(done):
    n = 0
    for path, old in reversed(done):
        if old is None:
            continue
        try:
            fs.write(path, old)
            n += 1
        except BerthError:
            pass
    return n


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
