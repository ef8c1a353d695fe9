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
from berth.engine.containers import (cgwarm, crashpoint, files, joins, links, names, netattach,
                                     rootless, shimctl, validate, volmounts)
from berth.engine.containers.lifecycle import Lifecycle, NotModified, rmtree  # noqa: F401 - NotModified is part of this module's API
from berth.engine.containers import logconfig
from berth.engine.containers.logconfig import check_log_config, parse_size  # noqa: F401 - daemon.py's
from berth.engine.containers.newrecord import (graph_data, network_settings, new_record,
                                               own_new_volumes, show_hardening, shown_ref,
                                               traversable)
from berth.engine.containers.options import run_options
from berth.engine.containers.record import Container, now_rfc3339
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
        if not found and "/" in ref.strip("/"):
            return links.target(self, ref)  # a link's name: /client/alias
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

    # -- create -------------------------------------------------------
    def create(self, body, name=None, platform=""):
        """A 404 here means the image alone: the docker CLI pulls on any 404,
        so a missing user, network, device or container is a 400."""
        try:
            return self._create(body, name, platform)
        except NotFound as e:
            if getattr(e, "image", False):
                raise
            raise ConfigError(str(e)) from None

    def _create(self, body, name, platform):
        self._warm_cgroups()
        if not isinstance(body, dict):
            raise ConfigError("request body: expected a JSON object")
        # a field Docker's config does not have is ignored, as Go's decoder
        # ignores it (docker-py sends Runtime at the top level)
        body = {k: v for k, v in body.items() if k in _CONFIG_FIELDS}
        host = body.get("HostConfig") or {}
        if not isinstance(host, dict):
            raise ConfigError("HostConfig: must be an object")
        host["LogConfig"] = check_log_config(host.get("LogConfig"))
        validate.healthcheck(body.get("Healthcheck"))
        validate.restart_policy(host)
        validate.mounts(host)
        validate.resources(host)
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
            raise _image_missing(f"No such image: {shown_ref(ref)}") from None
        except BerthError as e:
            if "invalid reference format" not in str(e):
                raise
            raise ConfigError("invalid reference format: repository name must be lowercase"
                              if "lowercase" in str(e) else "invalid reference format") from None
        policy = self.e.config.trust_policy
        if policy and os.path.exists(policy):
            from berth.engine.images import trust
            trust.check(store, ref, policy)
        image = store.config(image_id)
        try:
            validate.platform(platform, ref, image.get("os"), image.get("architecture"))
        except NotFound as e:
            raise _image_missing(str(e)) from None
        image_cfg = image.get("config") or {}
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
            c = Container(d, new_record(cid, name, body, host, image_id, image_cfg, self.e.driver.name))
            c.data["_creating"] = True
            c.data["NetworkSettings"] = network_settings(nets)
            keeps = host["LogConfig"]["Type"] != "none"
            c.data["LogPath"] = os.path.join(d, f"{cid}-json.log") if keeps else ""
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
        joined = c.data["_joins"] = joins.record(self, c, host)
        c.data["_links"] = links.record(self, c, host)
        inherited = volmounts.volumes_from(self.get, host.get("VolumesFrom"))
        opts, shown, c.warnings = run_options(
            c.id, body, host, self.e.volumes,
            lambda ref, field: joins.placeholder_pid(self, ref, field),
            self.e.config.init_path, inherited, self.e.driver.name)
        opts.shm_path = joins.shm_for(self, c, host, joined)
        opts.cgroup_parent = opts.cgroup_parent or self.e.config.cgroup_parent
        c.data["Mounts"] = shown
        theirs = {m.get("Name") for m in inherited[1]}  # the other container's to remove
        anon = [m["Name"] for m in shown if m["Type"] == "volume" and len(m["Name"]) == 64
                and m["Name"] not in theirs]
        c.data["_anonymous_volumes"] = anon
        if anon:
            # on record before anything else is made: restore after a crash
            # removes them with the half-made container
            c.save(durable=False)
        idmap = tuple(c.data["IdMap"]) if c.data.get("IdMap") else None
        if idmap:
            opts.userns_map = idmap
            own_new_volumes(shown, idmap)
        rootfs = layers.container_rootfs(self.e.store, self.e.driver, image_id, c.id, idmap=idmap)
        c.mounted_rootfs = rootfs
        if idmap:
            traversable(self.paths.root, os.path.dirname(rootfs), c.dir,
                         *[os.path.dirname(m["Source"]) for m in shown if m["Type"] == "volume"])
        c.data["GraphDriver"] = {"Name": self.e.driver.name,
                                 "Data": graph_data(self.e.driver, c.id, rootfs)}
        hostname = opts.hostname or (c.id[:12] if (host.get("NetworkMode") or "") != "host" else "")
        if opts.uts_mode == "host":
            opts.hostname = ""
        elif host.get("NetworkMode") == "host":
            opts.hostname = opts.hostname or os.uname().nodename  # dockerd's, in its own UTS
        else:
            opts.hostname = hostname
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
        show_hardening(c.host_config, spec)
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
            joins.refresh(self, c)
            links.refresh(self, c)
            volmounts.make_bind_sources(c)
            volmounts.check_propagation(c)
        except BerthError as e:
            self._start_failed(c, e)
            raise
        try:
            ready = shimctl.launch(self.e.config, runtime, self.paths.runtime_root(name), c.id,
                                   c.bundle, shim_dir, c.log_path or os.devnull,
                                   bool(cfg.get("Tty")),
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
        netattach.emit(self, c, "connect")
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
        return logconfig.limits(c, self.e.config.log_max_size, self.e.config.log_max_files)

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
        joins.unmount_shm(c)
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
        with self._lock:
            self._all.pop(c.id, None)
        if volumes:
            # once the container is off the list, which counts as a user of them;
            # one another container uses (--volumes-from) stays
            for name in c.data.get("_anonymous_volumes", []):
                try:
                    self.e.volumes.remove(name, force=True)
                except BerthError:
                    pass
        with c.cond:
            c.deleted = True
        # one rename: the record and its directory are gone together
        self.trash.discard(c.dir)
        with c.cond:
            c.data["_removed"] = True
            c.cond.notify_all()

    def _runtime_delete(self, c, shim_dir):
        subprocess.run(self.runtime_cmd(c, "delete", "-f", c.id), capture_output=True)
        self._wait_shim_gone(shim_dir)

    def rename(self, ref, new):
        c = self.get(ref)
        new = "/" + (new or "").lstrip("/")
        if new == c.name:
            raise ConfigError("Renaming a container with the same name as its current name")
        if not _NAME_RE.match(new):
            raise ConfigError(f"Error when allocating new name: Invalid container name ({new}), "
                              "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        with self._lock:
            for other in self._all.values():
                if other.name == new and other is not c:
                    raise Conflict(f'Error when allocating new name: Conflict. The container '
                                   f'name "{new}" is already in use by container "{other.id}". '
                                   "You have to remove (or rename) that container to be able to "
                                   "reuse that name.")
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


def _image_missing(message):
    e = NotFound(message)
    e.image = True
    return e
