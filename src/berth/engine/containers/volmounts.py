"""Named and anonymous volumes -> bind mounts of their directories, and
the Mounts list `inspect` shows."""
from berth.errors import ConfigError


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
            shown.append(_entry("bind", src, dst, rw, mode=mode))
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
            shown.append(_entry("bind", m.get("Source"), m.get("Target"), rw))
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
