"""Namespaces shared with another container (--ipc, --pid, --network
container:X) and the IPC modes none, private and shareable.

At create only the other container's existence is checked, as dockerd
does; which process to join is decided at each start, from the other
container's pid then, so a restart of either side never joins a stale (or
recycled) pid. A shareable container's /dev/shm is a tmpfs the engine
mounts on the host at <container dir>/shm when the container starts and
unmounts when it stops, so a container joining its IPC namespace can
bind the same /dev/shm."""
import os

from berth.errors import BerthError, ConfigError, Conflict
from berth.oci import jsonio
from berth.sys import libc

# HostConfig field -> (spec namespace type, /proc/<pid>/ns/ file)
KINDS = {"IpcMode": ("ipc", "ipc"), "PidMode": ("pid", "pid"), "NetworkMode": ("network", "net"),
         "UTSMode": ("uts", "uts")}
IPC_MODES = ("", "none", "private", "shareable", "host")


def shm_path(c):
    return os.path.join(c.dir, "shm")


def record(containers, c, host):
    """-> {HostConfig field: the id of the container to join}, checking
    each exists (a 400 otherwise, as dockerd) and the IPC mode is known."""
    ipc = host.get("IpcMode") or ""
    if ipc not in IPC_MODES and not ipc.startswith("container:"):
        raise ConfigError(f"invalid IPC mode: {ipc}")
    out = {}
    for field in KINDS:
        mode = host.get(field) or ""
        if mode.startswith("container:"):
            other = containers.get(mode[len("container:"):])
            if other.id == c.id:
                raise ConfigError(f"cannot join own {KINDS[field][0]} namespace")
            out[field] = other.id
    return out


def placeholder_pid(containers, ref, field):
    """The pid specgen writes at create; refresh() sets the real one at
    every start. A container that is not running yet has none: 0."""
    other = containers.get(ref)
    return other.state["Pid"] if other.running and other.state["Pid"] else 0


def shm_for(containers, c, host, joined):
    """The host directory bound at /dev/shm, or "" for specgen's default
    (a tmpfs of the container's own, none for --ipc none, the host's for
    --ipc host)."""
    if (host.get("IpcMode") or "") == "shareable":
        return shm_path(c)
    if "IpcMode" in joined:
        other = containers.get(joined["IpcMode"])
        return "/dev/shm" if other.host_config.get("IpcMode") == "host" else shm_path(other)
    return ""


def refresh(containers, c):
    """Before a start: points config.json's joined namespaces (and a joined
    IPC's /dev/shm) at the other containers as they are now, with
    dockerd's errors when they cannot be joined; mounts the shm of a
    shareable container."""
    joins = c.data.get("_joins") or {}
    if (c.host_config.get("IpcMode") or "") == "shareable":
        mount_shm(c)
    if not joins:
        return
    path = os.path.join(c.bundle, "config.json")
    spec = jsonio.load_file(path)
    for field, other_id in joins.items():
        ns_type, ns_file = KINDS[field]
        other = containers.get(other_id)
        pid = other.state["Pid"] if other.running else 0
        if field == "IpcMode":
            if not pid:
                raise BerthError(f"can't join IPC of container {other.id}: container {other.id} "
                                 "is not running")
            if (other.host_config.get("IpcMode") or "") not in ("shareable", "host"):
                raise BerthError(f"can't join IPC of container {other.id}: non-shareable IPC "
                                 "(hint: use IpcMode:shareable for the donor container)")
        elif field == "NetworkMode" and not pid:
            raise Conflict(f"cannot join network of a non running container: {other.id}")
        elif not pid:
            raise BerthError(f"container {other.id} is not running")
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == ns_type:
                ns["path"] = f"/proc/{pid}/ns/{ns_file}"
        if field == "IpcMode":
            src = "/dev/shm" if other.host_config.get("IpcMode") == "host" else shm_path(other)
            for m in spec["mounts"]:
                if m["destination"] == "/dev/shm" and m["type"] == "bind":
                    m["source"] = src
    jsonio.write_atomic(path, spec)


def mount_shm(c):
    p = shm_path(c)
    if os.path.ismount(p):
        return
    os.makedirs(p, mode=0o700, exist_ok=True)
    size = int(c.host_config.get("ShmSize") or 64 << 20)
    opts = f"mode=1777,size={size}"
    if c.data.get("IdMap"):
        opts += f",uid={c.data['IdMap'][0]},gid={c.data['IdMap'][1]}"
    libc.mount("shm", p, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC, opts)


def unmount_shm(c):
    """After the container stopped, and on remove; safe to repeat."""
    p = shm_path(c)
    if os.path.ismount(p):
        try:
            libc.umount2(p, libc.MNT_DETACH)
        except BerthError:
            pass
