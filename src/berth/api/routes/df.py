"""GET /system/df (what `docker system df` shows) and POST /build/prune
(there is no builder, so no build cache)."""
from berth.api.routes.volumes import shown_volume
from berth.api.http import json_response
from berth.engine.containers import view


def container_summary(c):
    return view.summary(c, size=True)


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
                                   VirtualSize=i["Size"], RepoDigests=i["RepoDigests"] or None,
                                   Labels=i["Labels"] or None))
        vols = []
        for v in engine.volumes.list():
            refs = len(engine.volumes.in_use(v["Name"]) or [])
            try:
                size = engine.volumes.usage(v["Name"])
            except Exception:  # noqa: BLE001 - removed meanwhile
                size = -1
            vols.append(dict(shown_volume(v), UsageData={"Size": size, "RefCount": refs}))
        return json_response({
            "LayersSize": layers_size,
            "Images": out_images,
            "Containers": [container_summary(c) for c in containers],
            "Volumes": vols,
            "BuildCache": None,   # dockerd's legacy builder keeps none
            "BuilderSize": 0,
        })

    def build_prune(req):
        return json_response({"CachesDeleted": None, "SpaceReclaimed": 0})

    router.add("GET", "/system/df", df)
    router.add("POST", "/build/prune", build_prune)

