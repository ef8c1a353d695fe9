"""A container record as Docker shows it: inspect, the list entry, and
the human Status ("Up 3 minutes", "Exited (0) 2 seconds ago")."""
import calendar
import time

from berth.engine.containers.logs import _parse_time

PRIVATE = ("_creating", "_manual_stop", "_exit_seq", "_anonymous_volumes", "_removed",
           "_pausing", "NetworkingConfig")


def _ago(seconds):
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''}"
    m = s // 60
    if m < 60:
        return "About a minute" if m == 1 else f"{m} minutes"
    h = round(s / 3600)
    if h < 48:
        return "About an hour" if h == 1 else f"{h} hours"
    d = s // 86400
    if d < 14:
        return f"{d} days"
    return f"{d // 7} weeks"


def _since(rfc):
    try:
        return time.time() - _parse_time(rfc) / 1e9
    except (ValueError, TypeError):
        return 0


def status_text(c):
    st = c.state
    s = st["Status"]
    if s == "running" or s == "paused":
        text = "Up " + _ago(_since(st["StartedAt"]))
        h = (st.get("Health") or {}).get("Status")
        if h:
            text += f" ({'health: starting' if h == 'starting' else h})"
        return text + (" (Paused)" if s == "paused" else "")
    if s == "restarting":
        return f"Restarting ({st['ExitCode']}) {_ago(_since(st['FinishedAt']))} ago"
    if s == "exited":
        if st["FinishedAt"].startswith("0001"):
            return "Created"
        return f"Exited ({st['ExitCode']}) {_ago(_since(st['FinishedAt']))} ago"
    if s == "removing":
        return "Removal In Progress"
    if s == "dead":
        return "Dead"
    return "Created"


def inspect(c, size=False, containers=None):
    """containers: for the names made from links (HostConfig.Links)."""
    out = {k: v for k, v in c.data.items() if k not in PRIVATE and not k.startswith("_")}
    if containers is not None:
        from berth.engine.containers import links
        out["HostConfig"] = dict(out["HostConfig"], Links=links.shown(containers, c))
    out["ExecIDs"] = out.get("ExecIDs") or None
    out["NetworkSettings"] = network_settings(c)
    if size:
        out["SizeRw"] = c.size_rw()
        out["SizeRootFs"] = out["SizeRw"]
    return out


def network_settings(c):
    return c.data.get("NetworkSettings") or {"Networks": {}, "Ports": {}}


def command(c):
    argv = [c.data.get("Path") or ""] + list(c.data.get("Args") or [])
    return " ".join(a for a in argv if a is not None).strip()


def summary(c, size=False, containers=None):
    created = c.created
    try:
        created_unix = calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        created_unix = 0
    ns = network_settings(c)
    names = [c.name]
    if containers is not None:
        from berth.engine.containers import links
        names = sorted(names + links.names(containers, c))
    out = {"Id": c.id, "Names": names, "Image": c.image, "ImageID": c.image_id,
           "Command": command(c), "Created": created_unix, "Ports": ports(c),
           "Labels": c.labels, "State": c.state["Status"], "Status": status_text(c),
           "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode") or "bridge"},
           "NetworkSettings": {"Networks": ns.get("Networks", {})},
           "Mounts": c.data.get("Mounts") or []}
    if size:
        out["SizeRw"] = c.size_rw()
        out["SizeRootFs"] = out["SizeRw"]
    return out


def ports(c):
    out = []
    for key, binds in ((c.data.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, _, proto = key.partition("/")
        if not binds:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
            continue
        for b in binds:
            out.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(port),
                        "PublicPort": int(b.get("HostPort") or 0), "Type": proto or "tcp"})
    return out
