"""What a create writes down: the container's record (its Config merged
with the image's), the settings inspect shows, and the filesystem
preparation a user namespace needs."""
import os

from berth.errors import ConfigError
from berth.engine.containers.record import new_state, now_rfc3339


def new_record(cid, name, body, host, image_id, image_cfg, driver):
    cfg = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    merged = dict(cfg)
    merged["Env"] = merge_env(image_cfg.get("Env") or [], cfg.get("Env") or [])
    if not cfg.get("Entrypoint") and not cfg.get("Cmd"):
        merged["Cmd"] = image_cfg.get("Cmd")
    if cfg.get("Entrypoint") is None:
        merged["Entrypoint"] = image_cfg.get("Entrypoint")
    for k in ("WorkingDir", "User", "StopSignal"):
        if not cfg.get(k) and image_cfg.get(k):
            merged[k] = image_cfg[k]
    merged["Healthcheck"] = _healthcheck(image_cfg.get("Healthcheck"), cfg.get("Healthcheck"))
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
    hc["IpcMode"] = hc.get("IpcMode") or "private"  # dockerd's default, as it shows it
    hc.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    return {
        "Id": cid, "Created": now_rfc3339(), "Name": name, "Image": image_id,
        "Config": merged, "HostConfig": hc, "State": new_state(), "RestartCount": 0,
        "Driver": driver, "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "Mounts": [], "Path": "", "Args": [],
        "NetworkingConfig": body.get("NetworkingConfig") or {},
    }


def _healthcheck(image, user):
    """The image's HEALTHCHECK unless the request has its own; fields the
    request leaves at zero come from the image (dockerd's merge)."""
    if not user:
        return image or None
    out = dict(user)
    for k in ("Test", "Interval", "Timeout", "StartPeriod", "Retries"):
        if not out.get(k) and (image or {}).get(k):
            out[k] = image[k]
    return out


# Docker's 14 default capabilities: what berth drops beyond them shows in
# HostConfig.CapDrop, so compliance tools reading `docker inspect` see it
_DOCKER_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
                "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                "AUDIT_WRITE")


def show_hardening(hc, spec):
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
    elif (hc.get("PidsLimit") or 0) < 0:
        hc["PidsLimit"] = None  # unlimited, shown as dockerd shows it


def traversable(root, *dirs):
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


def own_new_volumes(shown, idmap):
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


def network_settings(nets):
    return {"Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": nets}


def shown_ref(ref):
    if "@" in ref or ":" in ref.rsplit("/", 1)[-1]:
        return ref
    return ref + ":latest"


def merge_env(base, extra):
    out = {}
    for item in list(base) + list(extra):
        k, eq, v = item.partition("=")
        out[k] = item
    return list(out.values())


def graph_data(driver, cid, rootfs):
    d = os.path.dirname(rootfs)
    if driver.name == "overlay":
        return {"MergedDir": rootfs, "UpperDir": os.path.join(d, "upper"),
                "WorkDir": os.path.join(d, "work")}
    return {"MergedDir": rootfs}
