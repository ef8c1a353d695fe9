"""Image config + run options -> an OCI runtime config (config.json).

The one conversion point between what a user asks for (`berth run`
flags, the Engine API's Config/HostConfig) and what a runtime executes,
like runc's specconv. Defaults are Docker's, stricter where that costs a
user nothing: no NET_RAW/MKNOD, no_new_privileges, a pids limit.

    spec = generate(image["config"], RunOptions(cmd=["sh"], tty=True), "/path/rootfs")
"""
from berth.errors import ConfigError
from berth.engine.specgen import linux, mounts, process, security
from berth.engine.specgen.options import Host, RunOptions

OCI_VERSION = "1.0.2"

__all__ = ["generate", "RunOptions", "Host"]


def generate(image_config, opts, rootfs, host=None):
    """image_config: the image's Config object (Entrypoint, Cmd, Env, User,
    WorkingDir, ...; may be None). rootfs: the prepared root filesystem,
    read for /etc/passwd and /etc/group. host: a Host (default: this
    machine). Returns a fresh dict; raises ConfigError / NotFound naming
    the option at fault."""
    image_config = image_config or {}
    if not isinstance(image_config, dict):
        raise ConfigError("image config: must be an object")
    if not isinstance(opts, RunOptions):
        raise ConfigError("run options: must be a RunOptions")
    if not isinstance(rootfs, str) or not rootfs:
        raise ConfigError("rootfs: must be a path")
    host = host or Host()

    ns, modes = linux.namespaces(opts)
    hostname = _hostname(opts, modes)
    argv = process.args(image_config, opts)
    user, home = process.user(opts.user or image_config.get("User") or "", rootfs,
                              opts.group_add)
    sec = security.parse_security_opt(opts, host)
    caps = security.capabilities(opts, host)

    proc = {
        "terminal": bool(opts.tty),
        "user": user,
        "args": argv,
        "env": process.env(image_config, opts, hostname, home),
        "cwd": process.cwd(image_config, opts),
        "capabilities": {"bounding": list(caps), "effective": list(caps),
                         "permitted": list(caps)},
        "noNewPrivileges": sec["no_new_privileges"],
    }
    rl = linux.rlimits(opts)
    if rl:
        proc["rlimits"] = rl
    if opts.oom_score_adj is not None:
        proc["oomScoreAdj"] = linux.integer(opts.oom_score_adj, "oom_score_adj", -1000, 1000)

    extra = mounts.user_mounts(opts)
    if opts.init:
        argv[:0] = _init(opts, extra)
    devs, dev_rules = mounts.devices(opts, host)
    resources = linux.resources(opts, host)
    resources["devices"] = dev_rules

    lx = {
        "namespaces": ns,
        "resources": resources,
        "devices": devs,
    }
    if opts.userns_map:
        uid, gid, size = (int(v) for v in opts.userns_map)
        if size < 1 or uid < 1 or gid < 1:
            raise ConfigError(f"userns_map: {opts.userns_map!r} must map 0 to a non-root range")
        lx["namespaces"].append({"type": "user"})
        lx["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": size}]
        lx["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": size}]
    sysctl = linux.sysctls(opts, modes)
    if sysctl:
        lx["sysctl"] = sysctl
    if not opts.privileged:
        lx["maskedPaths"] = security.paths(opts.masked_paths, security.MASKED_PATHS,
                                           "masked_paths")
        lx["readonlyPaths"] = security.paths(opts.readonly_paths, security.READONLY_PATHS,
                                             "readonly_paths")
    filt = security.seccomp(sec["seccomp"], caps, opts, host)
    if filt is not None:
        lx["seccomp"] = filt
    cg = _cgroups_path(opts)
    if cg:
        lx["cgroupsPath"] = cg

    spec = {
        "ociVersion": OCI_VERSION,
        "process": proc,
        "root": {"path": rootfs, "readonly": bool(opts.read_only)},
        "mounts": mounts.merge(mounts.default_mounts(opts), extra),
        "linux": lx,
    }
    if hostname:
        spec["hostname"] = hostname
        if opts.domainname:
            spec["domainname"] = opts.domainname
    notes = _image_annotations(image_config)
    notes.update({str(k): str(v) for k, v in (opts.annotations or {}).items()})
    if notes:
        spec["annotations"] = notes
    return spec


def _image_annotations(image_config):
    """The OCI image spec's conversion rules: fields that have no place in
    the runtime spec travel as annotations (the engine reads the stop
    signal back from here)."""
    out = {}
    ports = image_config.get("ExposedPorts")
    if isinstance(ports, dict) and ports:
        out["org.opencontainers.image.exposedPorts"] = ",".join(sorted(ports))
    if image_config.get("StopSignal"):
        out["org.opencontainers.image.stopSignal"] = str(image_config["StopSignal"])
    return out


def _hostname(opts, modes):
    if modes["uts"] != "private":
        if opts.hostname:
            raise ConfigError(f"hostname: cannot be set with uts_mode {opts.uts_mode!r}",
                              hint="the container shares another UTS namespace")
        return ""
    # not the host's name: a fresh UTS namespace starts with a copy of it
    name = opts.hostname or (opts.container_id or "")[:12] or "berth"
    if len(name) > 64:
        raise ConfigError(f"hostname: {name!r} is longer than 64 bytes")
    return name


def _cgroups_path(opts):
    if opts.cgroups_path:
        return opts.cgroups_path
    if not opts.container_id:
        return ""
    parent = opts.cgroup_parent or "/berth"
    if not parent.startswith("/"):
        parent = "/" + parent
    return parent.rstrip("/") + "/" + opts.container_id


INIT_PATH = "/sbin/berth-init"


def _init(opts, extra):
    """A tiny init (tini, catatonit, docker-init) reaps zombies and
    forwards signals; it comes from the host, bind-mounted read-only."""
    if not opts.init_path or not opts.init_path.startswith("/"):
        raise ConfigError("init: needs init_path, the host path of an init binary",
                          hint="e.g. /usr/bin/tini-static or /usr/libexec/catatonit")
    extra.append({"destination": INIT_PATH, "type": "bind", "source": opts.init_path,
                  "options": ["bind", "ro", "nosuid", "nodev"]})
    return [INIT_PATH, "--"]
