"""/volumes: list, create, inspect, remove, prune (local driver)."""
from berth.api import filters as F
from berth.api.app import asked_before
from berth.api.errors import BadRequest
from berth.api.http import empty, json_response


def _strmap(body, key):
    v = body.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise BadRequest(f"{key}: expected an object of strings")
    return v


def shown_volume(v):
    """As dockerd shows a volume: Options and Labels null when none were given."""
    return dict(v, Options=v.get("Options") or None, Labels=v.get("Labels") or None)


def register(router, engine):
    vols = engine.volumes

    def list_(req):
        return json_response({"Volumes": [shown_volume(v) for v in vols.list(F.parse(req.q("filters")))],
                              "Warnings": None})

    def create(req):
        body = req.json(default={})
        name = body.get("Name")
        if name is not None and not isinstance(name, str):
            raise BadRequest("Name: expected a string")
        driver = body.get("Driver") or "local"
        if not isinstance(driver, str):
            raise BadRequest("Driver: expected a string")
        v = vols.create(name or None, driver=driver, labels=_strmap(body, "Labels"),
                        options=_strmap(body, "DriverOpts"))
        return json_response(shown_volume(v), 201)

    def inspect(req):
        return json_response(shown_volume(vols.get(req.params["name"])))

    def remove(req):
        vols.remove(req.params["name"], force=req.qbool("force"))
        return empty()

    def prune(req):
        filt = F.parse(req.q("filters"))
        if asked_before(req, "1.42") and "all" not in filt:
            # API 1.42 made prune keep named volumes unless all=true; the
            # clients of older versions (docker-py 5, compose 1) expect them gone
            filt["all"] = ["true"]
        removed, freed = vols.prune(filt)
        return json_response({"VolumesDeleted": removed, "SpaceReclaimed": freed})

    router.add("GET", "/volumes", list_)
    router.add("POST", "/volumes/create", create)
    router.add("POST", "/volumes/prune", prune)
    # {name:.*} as dockerd's route: GET /volumes/ is a look-up of no name
    router.add("GET", "/volumes/{name:.*}", inspect)
    router.add("DELETE", "/volumes/{name:.*}", remove)
