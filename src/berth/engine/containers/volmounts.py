"""Named and anonymous volumes -> bind mounts of their directories, and
the Mounts list `inspect` shows."""
import os

from berth.errors import BerthError, ConfigError
from berth.sys.mountinfo import unescape

_PROPAGATION = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


def _named(volumes, name, anonymous=False):
    try:
        vol = volumes.get(name)
    except Exception:  # noqa: BLE001 - NotFound: made on first use, as Docker does
        vol = volumes.create(name=name or None)
    return vol


def _entry(kind, source, dest, rw, name="", mode="", propagation="rprivate"):
    e = {"Type": kind, "Source": source, "Destination": dest, "Mode": mode,
         "RW": rw, "Propagation": propagation if kind == "bind" else ""}
    if kind == "volume":
        e["Name"] = name
        e["Driver"] = "local"
    return e


def resolve_binds(volumes, binds):
    out, shown = [], []
    for i, spec in enumerate(binds):
        if not isinstance(spec, str):
            raise ConfigError(f"HostConfig.Binds[{i}]: must be a \"src:dst[:opts]\" string")
        parts = spec.split(":")
        if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
            raise ConfigError(f"HostConfig.Binds[{i}]: {spec!r} is not \"source:/container[:options]\"")
        src, dst = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else ""
        rw = "ro" not in mode.split(",")
        if src.startswith("/"):
            out.append(spec)
            prop = next((f for f in mode.split(",") if f in _PROPAGATION), "rprivate")
            shown.append(_entry("bind", src, dst, rw, mode=mode, propagation=prop))
            continue
        vol = _named(volumes, src)
        path = vol["Mountpoint"]
        flags = [f for f in mode.split(",") if f and f != "nocopy"]
        out.append(f"{path}:{dst}" + (":" + ",".join(flags) if flags else ""))
        shown.append(_entry("volume", path, dst, rw, name=vol["Name"], mode=mode or "z"))
    return out, shown


def resolve_mounts(volumes, mounts):
    out, shown = [], []
    for i, m in enumerate(mounts):
        if not isinstance(m, dict):
            raise ConfigError(f"HostConfig.Mounts[{i}]: must be an object")
        kind = m.get("Type") or "volume"
        rw = not m.get("ReadOnly")
        if kind == "volume":
            vol = _named(volumes, m.get("Source") or "")
            m = dict(m, Source=vol["Mountpoint"])
            shown.append(_entry("volume", vol["Mountpoint"], m.get("Target"), rw, name=vol["Name"]))
        elif kind == "bind":
            prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
            shown.append(_entry("bind", m.get("Source"), m.get("Target"), rw, propagation=prop))
        elif kind == "tmpfs":
            shown.append(_entry("tmpfs", "", m.get("Target"), rw))
        else:
            raise ConfigError(f"HostConfig.Mounts[{i}].Type: {kind!r} is not supported",
                              hint="bind, volume or tmpfs")
        out.append(m)
    return out, shown


def image_volumes(volumes, declared, taken):
    """VOLUME lines of the image: an anonymous volume each, unless the
    user mounted something there already."""
    out, shown = [], []
    for dest in sorted(declared):
        if dest in taken:
            continue
        vol = volumes.create()
        out.append(f"{vol['Mountpoint']}:{dest}")
        shown.append(_entry("volume", vol["Mountpoint"], dest, True, name=vol["Name"]))
    return out, shown


def volumes_from(get, specs):
    """HostConfig.VolumesFrom ["name[:ro|rw]"]: the volumes and binds of
    other containers at the same destinations (not their tmpfs), their
    mode kept unless ro or rw is given, as dockerd does."""
    out, shown = [], []
    for i, spec in enumerate(specs or ()):
        if not isinstance(spec, str) or not spec:
            raise ConfigError(f"HostConfig.VolumesFrom[{i}]: must be \"name[:ro|rw]\"")
        name, _, mode = spec.partition(":")
        if mode not in ("", "ro", "rw"):
            raise ConfigError(f"invalid mode for volumes-from: {mode}")
        src = get(name)
        for m in src.data.get("Mounts") or ():
            if m.get("Type") not in ("volume", "bind") or not m.get("Source"):
                continue
            rw = m.get("RW", True) if not mode else mode == "rw"
            flags = [] if rw else ["ro"]
            if m.get("Type") == "bind" and m.get("Propagation"):
                flags.append(m["Propagation"])
            out.append(f"{m['Source']}:{m['Destination']}" + (":" + ",".join(flags) if flags
                                                               else ""))
            shown.append(dict(m, RW=rw, Mode=mode))
    return out, shown


def make_bind_sources(c):
    """As dockerd, at each start: a -v /host/path that is not there is made,
    a directory (--mount type=bind never makes one: refused at create)."""
    for spec in c.host_config.get("Binds") or ():
        src = spec.split(":", 1)[0] if isinstance(spec, str) else ""
        if src.startswith("/") and not os.path.lexists(src):
            try:
                os.makedirs(src, mode=0o755, exist_ok=True)
            except OSError as e:
                raise BerthError(f"error while creating mount source path '{src}'",
                                 errno=e.errno) from None


def check_propagation(c):
    """dockerd's rule, at each start: a shared bind needs a source on a
    shared mount, a slave bind one on a shared or slave mount; otherwise
    the propagation asked for could not be what applies."""
    for m in c.data.get("Mounts") or ():
        prop = m.get("Propagation") or ""
        if m.get("Type") != "bind" or prop not in ("shared", "rshared", "slave", "rslave"):
            continue
        point, tags = _mount_of(m["Source"])
        if "shared" in prop and not any(t.startswith("shared:") for t in tags):
            raise BerthError(f"path {m['Source']} is mounted on {point} but it is not a shared "
                             "mount")
        if "slave" in prop and not any(t.startswith(("shared:", "master:")) for t in tags):
            raise BerthError(f"path {m['Source']} is mounted on {point} but it is not a shared "
                             "or slave mount")


def _mount_of(path):
    """(mount point, optional fields) of the mount path lies on."""
    path = os.path.realpath(path)
    best, tags = "/", []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = unescape(fields[4])
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, tags = point, fields[6:fields.index("-")]
    return best, tags
