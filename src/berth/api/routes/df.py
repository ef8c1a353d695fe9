"""GET /system/df (what `docker system df` shows) and POST /build/prune
(there is no builder, so no build cache)."""
from berth.api.http import json_response


def _status(state):
    s = state.get("Status", "")
    if state.get("Running"):
        return "Paused" if state.get("Paused") else "Up"
    if s == "created":
        return "Created"
    return f"Exited ({state.get('ExitCode', 0)})"


def _unix(created):
    from berth.engine.images.store import _unix as conv
    return conv(created) if isinstance(created, str) else int(created or 0)


def container_summary(c):
    cfg = c.config or {}
    cmd = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
    try:
        size_rw = c.size_rw()
    except Exception:  # noqa: BLE001 - a container whose layer is gone counts 0
        size_rw = 0
    return {"Id": c.id, "Names": [c.name], "Image": c.image, "ImageID": c.image_id,
            "Command": " ".join(cmd), "Created": _unix(c.created),
            "State": (c.state or {}).get("Status", ""), "Status": _status(c.state or {}),
            "SizeRw": size_rw, "SizeRootFs": 0, "Labels": c.labels or {},
            "Mounts": [], "Ports": [], "HostConfig": {
                "NetworkMode": (c.host_config or {}).get("NetworkMode", "default")},
            "NetworkSettings": {"Networks": {}}}


def register(router, engine):
    def df(req):
        store = engine.store
        try:
            containers = list(engine.containers.list(all=True))
        except AttributeError:
            containers = []
        users = {}
        for c in containers:
            users[c.image_id] = users.get(c.image_id, 0) + 1
        images = store.images()
        layer_use = {}
        for i in images:
            for d in store.record(i["Id"])["layers"]:
                layer_use[d] = layer_use.get(d, 0) + 1
        layers_size = 0
        for d in layer_use:
            try:
                layers_size += store.blob_size(d)
            except Exception:  # noqa: BLE001 - a blob collected meanwhile
                pass
        out_images = []
        for i in images:
            rec = store.record(i["Id"])
            shared = sum(s for d, s in zip(rec["layers"], rec.get("diff_sizes") or [])
                         if layer_use.get(d, 0) > 1)
            out_images.append(dict(i, Containers=users.get(i["Id"], 0), SharedSize=shared,
                                   VirtualSize=i["Size"]))
        vols = []
        for v in engine.volumes.list():
            refs = len(engine.volumes.in_use(v["Name"]) or [])
            try:
                size = engine.volumes.usage(v["Name"])
            except Exception:  # noqa: BLE001 - removed meanwhile
                size = -1
            vols.append(dict(v, UsageData={"Size": size, "RefCount": refs}))
        return json_response({
            "LayersSize": layers_size,
            "Images": out_images,
            "Containers": [container_summary(c) for c in containers],
            "Volumes": vols,
            "BuildCache": [],
        })

    def build_prune(req):
        return json_response({"CachesDeleted": [], "SpaceReclaimed": 0})

    router.add("GET", "/system/df", df)
    router.add("POST", "/build/prune", build_prune)

