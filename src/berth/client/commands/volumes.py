"""volume create, ls, inspect, rm, prune."""
from berth.client.commands import Exit, filters, labels, prune_report


def cmd_create(ctx, argv):
    o, args = ctx.parse(argv, "volume create",
                        max_args=1)
    if args and o["name"] and args[0] != o["name"]:
        ctx.fail("conflicting options: either specify --name or provide positional arg, not both")
        raise Exit(1)
    body = {"Name": (args[0] if args else o["name"]) or "", "Driver": o["driver"] or "local",
            "DriverOpts": labels(o["opt"]), "Labels": labels(o["label"])}
    ctx.out.write(ctx.client.post("/volumes/create", body)["Name"] + "\n")


def cmd_ls(ctx, argv):
    from berth.client.format import render
    o, _ = ctx.parse(argv, "volume ls", max_args=0)
    vols = ctx.client.get("/volumes", filters=filters(o["filter"]))
    items = vols.get("Volumes") or []
    for w in vols.get("Warnings") or []:
        ctx.warn(w)
    if o["quiet"]:
        ctx.out.write("".join(v["Name"] + "\n" for v in items))
        return
    from berth.client.format import Row
    rows = [Row("volume", dict(v, Labels=",".join(f"{k}={x}" for k, x in (v.get("Labels") or {}).items()),
                               Size=_size(v)), labels=v.get("Labels")) for v in items]
    ctx.out.write(render(rows, o["format"], "table {{.Driver}}\t{{.Name}}",
                         {"Name": "VOLUME NAME", "Driver": "DRIVER"}))


def _size(v):
    from berth.client.format import human_size
    n = (v.get("UsageData") or {}).get("Size", -1)
    return human_size(n) if n >= 0 else "N/A"


def cmd_inspect(ctx, argv):
    from berth.client.commands.system import inspect
    inspect(ctx, argv, "volume")


def cmd_rm(ctx, argv):
    o, args = ctx.parse(argv, "volume rm", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("DELETE", f"/volumes/{n}", {"force": o["force"] or None}).close())


def cmd_prune(ctx, argv):
    o, _ = ctx.parse(argv, "volume prune", max_args=0)
    if not o["force"] and not ctx.confirm(
            "This will remove all local volumes not used by at least one container."
            if o["all"] else "This will remove anonymous local volumes not used by at least one container."):
        return
    flt = filters(o["filter"]) or {}
    if o["all"]:
        flt["all"] = ["true"]
    r = ctx.client.post("/volumes/prune", filters=flt or None) or {}
    prune_report(ctx, "Deleted Volumes", r.get("VolumesDeleted") or [], r.get("SpaceReclaimed"))
