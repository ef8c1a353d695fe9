"""network create, ls, inspect, rm, connect, disconnect, prune."""
from berth.client.commands import Exit, filters, labels



def cmd_create(ctx, argv):
    o, args = ctx.parse(argv, "network create", min_args=1, max_args=1)
    if len(o["gateway"]) > len(o["subnet"]) or len(o["ip_range"]) > len(o["subnet"]):
        ctx.fail("every --gateway and --ip-range needs a --subnet")
        raise Exit(1)
    configs = []
    for i, subnet in enumerate(o["subnet"]):
        c = {"Subnet": subnet}
        if i < len(o["gateway"]):
            c["Gateway"] = o["gateway"][i]
        if i < len(o["ip_range"]):
            c["IPRange"] = o["ip_range"][i]
        configs.append(c)
    if o["aux_address"] and configs:
        configs[-1]["AuxiliaryAddresses"] = labels(o["aux_address"])
    body = {"Name": args[0], "CheckDuplicate": True, "Driver": o["driver"] or "bridge",
            "Internal": o["internal"], "Attachable": o["attachable"], "EnableIPv6": o["ipv6"],
            "Options": labels(o["opt"]), "Labels": labels(o["label"]),
            "IPAM": {"Driver": o["ipam_driver"] or "default", "Config": configs,
                     "Options": labels(o["ipam_opt"])}}
    r = ctx.client.post("/networks/create", body)
    if r.get("Warning"):
        ctx.warn(r["Warning"])
    ctx.out.write(r["Id"] + "\n")


def cmd_ls(ctx, argv):
    from berth.client.format import Row, ago, local_time, render, unix_time
    o, _ = ctx.parse(argv, "network ls", max_args=0)
    nets = ctx.client.get("/networks", filters=filters(o["filter"])) or []
    trunc = not o["no_trunc"]
    if o["quiet"]:
        ctx.out.write("".join((n["Id"][:12] if trunc else n["Id"]) + "\n" for n in nets))
        return
    rows = []
    for n in nets:
        t = unix_time(n.get("Created", ""))
        rows.append(Row("network", {"ID": n["Id"][:12] if trunc else n["Id"], "Name": n.get("Name", ""),
                     "Driver": n.get("Driver", ""), "Scope": n.get("Scope", ""),
                     "IPv6": str(bool(n.get("EnableIPv6"))).lower(),
                     "Internal": str(bool(n.get("Internal"))).lower(),
                     "Labels": ",".join(f"{k}={v}" for k, v in (n.get("Labels") or {}).items()),
                     "CreatedAt": local_time(t), "CreatedSince": ago(t)}, labels=n.get("Labels")))
    ctx.out.write(render(rows, o["format"], "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
                         {"ID": "NETWORK ID"}))


def cmd_inspect(ctx, argv):
    from berth.client.commands.system import inspect
    inspect(ctx, argv, "network")


def cmd_rm(ctx, argv):
    o, args = ctx.parse(argv, "network rm", min_args=1)
    ctx.each(args, lambda n: ctx.client.request("DELETE", f"/networks/{n}").close())


def cmd_connect(ctx, argv):
    o, args = ctx.parse(argv, "network connect", min_args=2, max_args=2)
    ep = {"Aliases": o["alias"] or None, "DriverOpts": labels(o["driver_opt"]) or None}
    if o["ip"] or o["ip6"] or o["link_local_ip"]:
        ep["IPAMConfig"] = {"IPv4Address": o["ip"] or "", "IPv6Address": o["ip6"] or "",
                            "LinkLocalIPs": o["link_local_ip"]}
    ctx.client.request("POST", f"/networks/{args[0]}/connect",
                       body={"Container": args[1], "EndpointConfig": ep}).close()


def cmd_disconnect(ctx, argv):
    o, args = ctx.parse(argv, "network disconnect",
                        min_args=2, max_args=2)
    ctx.client.request("POST", f"/networks/{args[0]}/disconnect",
                       body={"Container": args[1], "Force": o["force"]}).close()


def cmd_prune(ctx, argv):
    o, _ = ctx.parse(argv, "network prune", max_args=0)
    if not o["force"] and not ctx.confirm("This will remove all custom networks not used by at least one container."):
        return
    r = ctx.client.post("/networks/prune", filters=filters(o["filter"])) or {}
    if r.get("NetworksDeleted"):
        ctx.out.write("Deleted Networks:\n" + "".join(f"{n}\n" for n in r["NetworksDeleted"]))
