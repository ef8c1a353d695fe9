"""Container lifecycle behind the Engine API.

A container is a record (containers/<id>/container.json), a rootfs from
the snapshot driver and a bundle; `start` hands the bundle to a berth-shim,
which outlives this daemon. One watcher thread per running container waits
on its shim's control socket and records the exit. On start-up (restore)
the watchers are re-attached to live shims and the exits of shims that
ended while the daemon was away are read from their exit.json."""
import os
import re
import secrets
import subprocess
import threading
import time

from berth.errors import BerthError, ConfigError, Conflict, NotFound
from berth.engine.containers import cgwarm, crashpoint, files, names, rootless, shimctl
from berth.engine.containers.lifecycle import Lifecycle, NotModified, rmtree  # noqa: F401 - NotModified is part of this module's API
from berth.engine.containers.options import run_options
from berth.engine.containers.record import Container, new_state, now_rfc3339
from berth.engine.containers.restore import Restore, load_records
from berth.engine.containers.trash import Trash
from berth.engine.specgen import generate
from berth.engine.storage import layers
from berth.oci import jsonio

_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
# per-container user namespaces: 65536 ids each, above the ranges
# /etc/subuid hands to people (Debian starts those at 100000)
USERNS_BASE = 1 << 30
USERNS_SIZE = 65536
_CONFIG_FIELDS = frozenset((
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
    "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled",
    "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell", "HostConfig",
    "NetworkingConfig", "Platform"))


class Containers(Lifecycle, Restore):
    def __init__(self, engine):
        self.e = engine
        self.paths = engine.paths
        self._lock = threading.RLock()
        self._all = {}
        self._closing = False
        from berth.engine.containers.execs import Execs
        self.execs = Execs(self)
        self.trash = Trash(self.paths.root)
        self._all, self.unreadable = load_records(self.paths.containers)

    # -- lookup -------------------------------------------------------
    def get(self, ref):
        if not isinstance(ref, str) or not ref:
            raise NotFound("No such container: " + str(ref))
        with self._lock:
            c = self._all.get(ref)
            if c:
                return c
            name = "/" + ref.lstrip("/")
            for c in self._all.values():
                if c.name == name:
                    return c
            found = [c for c in self._all.values() if c.id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ConfigError(f"multiple containers found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def list(self, all=False):
        with self._lock:
            cs = list(self._all.values())
        cs.sort(key=lambda c: c.created, reverse=True)
        return [c for c in cs if all or c.running]

    def volume_users(self, name):
        return [c.id for c in self.list(all=True)
                if any(m.get("Name") == name for m in c.data.get("Mounts", []))]

    def image_users(self, image_id):
        return [c.id for c in self.list(all=True) if c.image_id == image_id]

    def _runtime(self, c):
        name = c.host_config.get("Runtime") or self.e.config.default_runtime
        path = self.e.config.runtimes.get(name)
        if not path:
            raise ConfigError(f"HostConfig.Runtime: unknown runtime {name!r}",
                              hint="known: " + ", ".join(sorted(self.e.config.runtimes)))
        return name, path

    def runtime_cmd(self, c, *args):
        name, path = self._runtime(c)
        return [path, "--root", self.paths.runtime_root(name)] + list(args)

    def resolve_pid(self, ref, field):
        if ref.isdigit():
            return int(ref)
        c = self.get(ref)
        if not c.running or not c.state["Pid"]:
            raise Conflict(f"{field}: container {ref} is not running")
        return c.state["Pid"]

    # -- create -------------------------------------------------------
    def create(self, body, name=None):
        self._warm_cgroups()
        if not isinstance(body, dict):
            raise ConfigError("request body: expected a JSON object")
        # a field Docker's config does not have is ignored, as Go's decoder
        # ignores it (docker-py sends Runtime at the top level)
        body = {k: v for k, v in body.items() if k in _CONFIG_FIELDS}
        host = body.get("HostConfig") or {}
        if not isinstance(host, dict):
            raise ConfigError("HostConfig: must be an object")
        _check_log_config(host.get("LogConfig"))
        if self.e.config.rootless:
            rootless.check(host)
        ref = body.get("Image")
        if not isinstance(ref, str) or not ref:
            raise ConfigError("Config.Image: an image is required")
        store = self.e.store
        try:
            image_id = store.resolve(ref)
        except NotFound:
            # Docker's wording, which scripts and clients look for
            raise NotFound(f"No such image: {_shown_ref(ref)}") from None
        policy = self.e.config.trust_policy
        if policy and os.path.exists(policy):
            from berth.engine.images import trust
            trust.check(store, ref, policy)
        image_cfg = store.config(image_id).get("config") or {}
        from berth.engine.containers import netattach
        nets = netattach.initial(self.e.networks, host, body.get("NetworkingConfig"))
        cid = secrets.token_hex(32)
        with self._lock:
            if name:
                if not _NAME_RE.match(name):
                    raise ConfigError(f"Invalid container name ({name}), only "
                                      "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
                name = "/" + name.lstrip("/")
                for other in self._all.values():
                    if other.name == name:
                        raise Conflict(f'Conflict. The container name "{name}" is already in use '
                                       f'by container "{other.id}". You have to remove (or rename) '
                                       "that container to be able to reuse that name.")
            else:
                taken = {c.name for c in self._all.values()}
                name = "/" + names.generate(taken)
            d = self.paths.container(cid)
            c = Container(d, _record(cid, name, body, host, image_id, image_cfg, self.e.driver.name))
            c.data["_creating"] = True
            c.data["NetworkSettings"] = _network_settings(nets)
            c.data["LogPath"] = os.path.join(d, f"{cid}-json.log")
            self._runtime(c)
            c.data["IdMap"] = self._idmap(host.get("UsernsMode") or "")
            # the name and id range are taken; the disk is written outside
            # the lock, which every create and remove shares
            self._all[cid] = c
        try:
            # no record yet: a crash before the one below leaves a directory
            # without one, which restore removes with the storage it names
            os.makedirs(os.path.join(d, "bundle"), mode=0o700)
        except BaseException:
            with self._lock:
                self._all.pop(cid, None)
            rmtree(d)      # a full disk: nothing of this container stays
            raise
        try:
            self._prepare(c, body, host, image_id, image_cfg)
        except BaseException:
            self._destroy(c, volumes=True)
            raise
        crashpoint.reached("create:prepared")
        c.data.pop("_creating", None)
        c.save()
        self.e.events.emit("container", "create", cid, self._attrs(c))
        return c

    def _prepare(self, c, body, host, image_id, image_cfg):
        opts, shown = run_options(c.id, body, host, self.e.volumes, self.resolve_pid,
                                  self.e.config.init_path)
        opts.cgroup_parent = opts.cgroup_parent or self.e.config.cgroup_parent
        c.data["Mounts"] = shown
        anon = [m["Name"] for m in shown if m["Type"] == "volume" and len(m["Name"]) == 64]
        c.data["_anonymous_volumes"] = anon
        if anon:
            # on record before anything else is made: restore after a crash
            # removes them with the half-made container
            c.save(durable=False)
        idmap = tuple(c.data["IdMap"]) if c.data.get("IdMap") else None
        if idmap:
            opts.userns_map = idmap
            _own_new_volumes(shown, idmap)
        rootfs = layers.container_rootfs(self.e.store, self.e.driver, image_id, c.id, idmap=idmap)
        c.mounted_rootfs = rootfs
        if idmap:
            _traversable(self.paths.root, os.path.dirname(rootfs), c.dir,
                         *[os.path.dirname(m["Source"]) for m in shown if m["Type"] == "volume"])
        c.data["GraphDriver"] = {"Name": self.e.driver.name,
                                 "Data": _graph_data(self.e.driver, c.id, rootfs)}
        hostname = opts.hostname or (c.id[:12] if (host.get("NetworkMode") or "") != "host" else "")
        opts.hostname = "" if opts.uts_mode == "host" or host.get("NetworkMode") == "host" else hostname
        etc = files.write_etc(c.dir, opts.hostname or os.uname().nodename,
                              body.get("Domainname") or "", host)
        taken = {m["Destination"] for m in shown} | set(opts.tmpfs or {})
        opts.binds = list(opts.binds) + [f"{src}:{dst}" for dst, src in etc.items() if dst not in taken]
        c.data.update({"HostnamePath": etc.get("/etc/hostname", ""),
                       "HostsPath": etc.get("/etc/hosts", ""),
                       "ResolvConfPath": etc.get("/etc/resolv.conf", "")})
        spec = generate(image_cfg, opts, rootfs)
        if self.e.config.rootless:
            rootless.adjust(spec)
        _show_hardening(c.host_config, spec)
        c.data["Path"] = spec["process"]["args"][0]
        c.data["Args"] = spec["process"]["args"][1:]
        c.config["Hostname"] = opts.hostname or c.config.get("Hostname", "")
        # renamed into place without fsync (that survives a killed berthd):
        # one fsync per create, the finished record's, is what a loaded disk
        # can take
        jsonio.write_atomic(os.path.join(c.bundle, "config.json"), spec, durable=False)

    # -- start --------------------------------------------------------
    def start(self, ref):
        c = self.get(ref)
        with c.lifecycle:
            with c.cond:
                if c.state["Status"] in ("running", "paused") and c.state["Pid"]:
                    raise NotModified("container already started")
                if c.state["Status"] == "removing" or c.data.get("_removed"):
                    raise Conflict(f"container {c.id[:12]} is marked for removal and cannot "
                                   "be started")
                c.data["_manual_stop"] = False
                c.data["RestartCount"] = 0   # as dockerd: a start by hand starts the count anew
            try:
                self._start(c)
            except BaseException:
                if c.host_config.get("AutoRemove"):
                    # `docker run --rm` waits for the removal, also of a
                    # container that never ran
                    threading.Thread(target=self._auto_remove, args=(c,), daemon=True).start()
                raise

    def _warm_cgroups(self):
        z = getattr(self.e, "zygote", None)
        if z is not None and z.proc is not None and not self.e.config.rootless:
            cgwarm.start(z.proc.pid)

    def rootfs(self, c):
        """The container's filesystem, mounted again if it was unmounted
        when the container stopped (docker cp, export and start need it).
        Mounted by this berthd and not unmounted since: no need to read
        the image's records and the mount table again (~0.5 ms of start)."""
        if c.mounted_rootfs:
            return c.mounted_rootfs
        idmap = tuple(c.data["IdMap"]) if c.data.get("IdMap") else None
        c.mounted_rootfs = layers.container_rootfs(self.e.store, self.e.driver, c.image_id,
                                                   c.id, idmap=idmap)
        return c.mounted_rootfs

    def _start(self, c):
        self._warm_cgroups()
        self.rootfs(c)
        name, runtime = self._runtime(c)
        shim_dir = self.paths.shim(c.id)
        if os.path.isdir(shim_dir):
            # a restart right after an exit: the old shim may still be
            # deleting the runtime's container of the same id
            self._wait_shim_gone(shim_dir)
            rmtree(shim_dir)
        if c.state.get("Error") == shimctl.SHIM_LOST:
            self._runtime_delete(c, shim_dir)
        cfg = c.config
        c.starts = getattr(c, "starts", 0) + 1
        try:
            ready = shimctl.launch(self.e.config, runtime, self.paths.runtime_root(name), c.id,
                                   c.bundle, shim_dir, c.log_path, bool(cfg.get("Tty")),
                                   bool(cfg.get("OpenStdin")), bool(cfg.get("StdinOnce")),
                                   *self._log_limits(c), zygote=self.e.zygote)
        except BerthError as e:
            self._start_failed(c, e)
            rmtree(shim_dir)
            raise
        crashpoint.reached("start:launched")
        try:
            # the init waits for "start": its network namespace exists and
            # is empty, the moment to plug it in
            self.e.network.setup(c, ready["pid"])
        except BaseException as e:
            self._runtime_delete(c, shim_dir)
            self._net_teardown(c)
            self._start_failed(c, e)
            rmtree(shim_dir)
            raise
        with c.cond:
            c.shim_ready = True
            c.cond.notify_all()
            # attach requests made before start get every byte of output
            deadline = time.monotonic() + 5
            while getattr(c, "attaching", 0) > 0 and time.monotonic() < deadline:
                c.cond.wait(0.05)
            c.shim_ready = False
        size = c.host_config.get("ConsoleSize")
        if cfg.get("Tty") and isinstance(size, list) and len(size) == 2 and all(size):
            shimctl.request(shim_dir, {"op": "resize", "height": size[0], "width": size[1]})
        waiting = None
        try:
            # the exit is asked for before the start: a container that ends
            # at once gets its answer before the shim's clean-up, not after
            waiting = shimctl.send(shim_dir, {"op": "wait"}, timeout=None)
            reply = shimctl.request(shim_dir, {"op": "start"})
            if "error" in reply:
                raise BerthError(reply["error"])
            crashpoint.reached("start:started")
        except (OSError, ValueError, BerthError) as e:
            if waiting is not None:
                waiting.close()
            self._runtime_delete(c, shim_dir)
            self._net_teardown(c)
            self._start_failed(c, e)
            rmtree(shim_dir)
            raise BerthError(str(e))
        c.data["_exit_seq"] = c.data.get("_exit_seq", 0)
        c.started_at = time.monotonic()    # the restart back-off's measure
        c.set_state(Status="running", Pid=ready["pid"], StartedAt=now_rfc3339(), Error="",
                    ExitCode=0, OOMKilled=False, FinishedAt=c.state["FinishedAt"])
        self._watch(c, waiting)
        self.e.events.emit("container", "start", c.id, self._attrs(c))
        from berth.engine.containers import health
        health.start(self, c)

    def _idmap(self, mode):
        """[uid, gid, size] of the container's own user namespace, or None.
        Called under self._lock, so two creates never pick one range."""
        remap = self.e.config.userns_remap
        if mode not in ("", "host", "auto", "private"):
            raise ConfigError(f"HostConfig.UsernsMode: {mode!r} is not a user namespace mode",
                              hint="host, or auto for a range of its own")
        if mode == "host" or (not mode and not remap):
            return None
        if mode in ("auto", "private") or remap == "auto":
            used = {tuple(c.data["IdMap"])[0] for c in self._all.values() if c.data.get("IdMap")}
            base = USERNS_BASE
            while base in used:
                base += USERNS_SIZE
            return [base, base, USERNS_SIZE]
        return list(remap)

    def _log_limits(self, c):
        opts = (c.host_config.get("LogConfig") or {}).get("Config") or {}
        size = self.e.config.log_max_size
        files = self.e.config.log_max_files
        if opts.get("max-size"):
            size = parse_size(opts["max-size"], "LogConfig max-size")
        if opts.get("max-file"):
            files = int(opts["max-file"])
        return size, files

    def _net_teardown(self, c):
        try:
            self.e.network.teardown(c)
        except Exception as e:  # noqa: BLE001 - logged; the record says what to retry
            import sys
            print(f"berthd: network teardown of {c.id[:12]}: {e}", file=sys.stderr, flush=True)

    def remove(self, ref, force=False, volumes=False):
        c = self.get(ref)
        with c.lifecycle:
            if c.data.get("_removed"):
                raise NotFound(f"No such container: {ref}")
            self._remove(c, force, volumes)

    def _remove(self, c, force, volumes):
        with c.cond:
            if c.state["Status"] == "removing":
                raise Conflict(f"removal of container {c.id[:12]} is already in progress")
            if c.running and not force:
                what = "restarting" if c.state["Status"] == "restarting" else "running"
                raise Conflict(f"You cannot remove a {what} container {c.id}. Stop the "
                               "container before attempting removal or force remove")
            c.data["_manual_stop"] = True
            if c.state["Status"] == "restarting":
                # between two runs: nothing to kill, the timer sees _manual_stop
                c.set_state(Status="exited")
        if c.running:
            if c.state["Paused"]:
                try:
                    self.unpause(c.id)
                except BerthError:
                    pass
            try:
                self.kill(c.id, "KILL", wait=0, record=False)
            except Conflict:
                pass
            if not self._wait_stopped(c, 30):
                raise BerthError(f"container {c.id[:12]} did not stop after SIGKILL")
        c.set_state(Status="removing")
        crashpoint.reached("remove:removing")
        self._destroy(c, volumes)
        crashpoint.reached("remove:destroyed")
        self.e.events.emit("container", "destroy", c.id, self._attrs(c))

    def _destroy(self, c, volumes):
        """Releases everything a container holds; safe to repeat."""
        shim_dir = self.paths.shim(c.id)
        pid = shimctl.shim_alive(shim_dir)
        if pid and c.running or c.state.get("Error") == shimctl.SHIM_LOST:
            self._runtime_delete(c, shim_dir)
            pid = 0
        # the shim of a container that has exited may still be deleting the
        # runtime's container: the storage goes meanwhile, its directory after
        self._net_teardown(c)
        c.mounted_rootfs = None
        try:
            self.e.driver.unmount(c.id)
        except BerthError:
            pass
        else:
            # unmounted: its upper layer can go with the trash
            self.trash.discard(self.e.driver.container_path(c.id))
        self.e.driver.remove_container(c.id)
        if pid and not shimctl.wait_gone(pid):
            self._runtime_delete(c, shim_dir)
        rmtree(shim_dir)
        if volumes:
            for name in c.data.get("_anonymous_volumes", []):
                try:
                    self.e.volumes.remove(name, force=True)
                except BerthError:
                    pass
        with c.cond:
            c.deleted = True
        # one rename: the record and its directory are gone together
        self.trash.discard(c.dir)
        with self._lock:
            self._all.pop(c.id, None)
        with c.cond:
            c.data["_removed"] = True
            c.cond.notify_all()

    def _runtime_delete(self, c, shim_dir):
        subprocess.run(self.runtime_cmd(c, "delete", "-f", c.id), capture_output=True)
        self._wait_shim_gone(shim_dir)

    def rename(self, ref, new):
        c = self.get(ref)
        if not new or not _NAME_RE.match(new):
            raise ConfigError(f"Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                              "are allowed")
        new = "/" + new.lstrip("/")
        with self._lock:
            for other in self._all.values():
                if other.name == new and other is not c:
                    raise Conflict(f'Conflict. The container name "{new}" is already in use by '
                                   f'container "{other.id}". You have to remove (or rename) that '
                                   "container to be able to reuse that name.")
            old = c.name
            with c.cond:
                c.data["Name"] = new
                c.save()
        self.e.events.emit("container", "rename", c.id, dict(self._attrs(c), oldName=old))

    def prune(self, keep=lambda c: False):
        gone, space = [], 0
        for c in self.list(all=True):
            if c.running or c.state["Status"] in ("removing", "restarting") or keep(c):
                continue
            size = c.size_rw()
            try:
                self.remove(c.id)
            except BerthError:
                continue
            gone.append(c.id)
            space += size
        return gone, space

    # -- daemon start/stop (restore: restore.py) -------------------------
    def close(self):
        self._closing = True

    def _attrs(self, c):
        out = {"image": c.image, "name": c.name.lstrip("/")}
        out.update(c.labels)
        return out


def _record(cid, name, body, host, image_id, image_cfg, driver):
    cfg = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    merged = dict(cfg)
    merged["Env"] = _merge_env(image_cfg.get("Env") or [], cfg.get("Env") or [])
    if not cfg.get("Entrypoint") and not cfg.get("Cmd"):
        merged["Cmd"] = image_cfg.get("Cmd")
    if cfg.get("Entrypoint") is None:
        merged["Entrypoint"] = image_cfg.get("Entrypoint")
    for k in ("WorkingDir", "User", "StopSignal"):
        if not cfg.get(k) and image_cfg.get(k):
            merged[k] = image_cfg[k]
    for k in ("Labels", "ExposedPorts", "Volumes"):
        both = dict(image_cfg.get(k) or {})
        both.update(cfg.get(k) or {})
        merged[k] = both or None
    merged.setdefault("Hostname", "")
    merged.setdefault("Domainname", "")
    for k in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        merged[k] = bool(cfg.get(k))
    hc = dict(host)
    hc.setdefault("NetworkMode", "bridge")
    if hc["NetworkMode"] == "default":
        hc["NetworkMode"] = "bridge"
    hc.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    hc.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    return {
        "Id": cid, "Created": now_rfc3339(), "Name": name, "Image": image_id,
        "Config": merged, "HostConfig": hc, "State": new_state(), "RestartCount": 0,
        "Driver": driver, "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "Mounts": [], "Path": "", "Args": [],
        "NetworkingConfig": body.get("NetworkingConfig") or {},
    }


# Docker's 14 default capabilities: what berth drops beyond them shows in
# HostConfig.CapDrop, so compliance tools reading `docker inspect` see it
_DOCKER_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
                "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                "AUDIT_WRITE")


def _show_hardening(hc, spec):
    """The effective settings of the generated spec, in Docker's inspect
    fields (which are what docker-bench-security and friends read)."""
    proc, lx = spec["process"], spec["linux"]
    if not hc.get("Privileged"):
        have = {c[4:] for c in proc["capabilities"]["bounding"]}
        drop = list(hc.get("CapDrop") or [])
        drop += [c for c in _DOCKER_CAPS if c not in have and c not in drop
                 and "CAP_" + c not in drop]
        hc["CapDrop"] = drop or None
        hc["MaskedPaths"] = lx.get("maskedPaths")
        hc["ReadonlyPaths"] = lx.get("readonlyPaths")
    opts = list(hc.get("SecurityOpt") or [])
    if proc.get("noNewPrivileges") and not any(o.startswith("no-new-privileges") for o in opts):
        opts.append("no-new-privileges")
    hc["SecurityOpt"] = opts or None
    pids = (lx.get("resources") or {}).get("pids", {}).get("limit")
    if pids and pids > 0:
        hc["PidsLimit"] = pids


def _traversable(root, *dirs):
    """The container's root (an unmapped uid on the host) must walk to its
    rootfs, its volumes and the files bind-mounted from its directory:
    search (x) for others is added inside berth's data root, never read;
    above it nothing is changed, a missing x is an error naming the dir."""
    for start in dirs:
        d = start
        while True:
            st = os.stat(d)
            inside = d == root or d.startswith(root.rstrip("/") + "/")
            if not st.st_mode & 0o001:
                if not inside:
                    raise ConfigError(f"user namespaces: {d} must be searchable by others "
                                      f"(chmod o+x) for remapped containers to reach {start}")
                os.chmod(d, (st.st_mode & 0o7777) | 0o001)
            if d == "/":
                break
            d = os.path.dirname(d)


def _own_new_volumes(shown, idmap):
    """A fresh, empty volume belongs to the container's root, as with
    Docker's --userns-remap; host binds keep their owners."""
    for m in shown:
        if m["Type"] != "volume":
            continue
        src = m["Source"]
        try:
            st = os.stat(src)
            if st.st_uid == 0 and not os.listdir(src):
                os.chown(src, idmap[0], idmap[1])
        except OSError:
            pass


def parse_size(text, what):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = str(text).strip().lower().rstrip("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a size", hint="e.g. 10m") from None


def _check_log_config(lc):
    if not lc:
        return
    if not isinstance(lc, dict):
        raise ConfigError("HostConfig.LogConfig: must be an object")
    if lc.get("Type") not in (None, "", "json-file"):
        raise ConfigError(f"HostConfig.LogConfig.Type: logging driver {lc['Type']!r} is not "
                          "supported", hint="berth writes json-file logs")
    for k, v in (lc.get("Config") or {}).items():
        if k == "max-size":
            parse_size(v, "LogConfig max-size")
        elif k == "max-file":
            if not str(v).isdigit() or int(v) < 1:
                raise ConfigError(f"LogConfig max-file: {v!r} must be a positive integer")
        else:
            raise ConfigError(f"HostConfig.LogConfig.Config: unknown log option {k!r}",
                              hint="json-file takes max-size and max-file")


def _network_settings(nets):
    return {"Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": nets}


def _shown_ref(ref):
    if "@" in ref or ":" in ref.rsplit("/", 1)[-1]:
        return ref
    return ref + ":latest"


def _merge_env(base, extra):
    out = {}
    for item in list(base) + list(extra):
        k, eq, v = item.partition("=")
        out[k] = item
    return list(out.values())


def _graph_data(driver, cid, rootfs):
    d = os.path.dirname(rootfs)
    if driver.name == "overlay":
        return {"MergedDir": rootfs, "UpperDir": os.path.join(d, "upper"),
                "WorkDir": os.path.join(d, "work")}
    return {"MergedDir": rootfs}
