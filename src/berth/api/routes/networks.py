"""/networks: the registry of networks (create, list, inspect, remove,
connect, disconnect, prune)."""
from berth.api import filters as F
from berth.api.errors import BadRequest, Forbidden, HTTPError
from berth.api.http import Response, empty, json_response
from berth.engine.networks import NotSupported, PredefinedNetwork


def _call(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except NotSupported as e:
        raise HTTPError(501, str(e)) from None
    except PredefinedNetwork as e:
        raise Forbidden(str(e)) from None


def _dict(body, key):
    v = body.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise BadRequest(f"{key}: expected an object")
    return v


def register(router, engine):
    nets = engine.networks

    def list_(req):
        return json_response(nets.list(F.parse(req.q("filters"))))

    def inspect(req):
        return json_response(nets.get(req.params["id"]))

    def create(req):
        body = req.json(default={})
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise BadRequest("Name: a network name is required")
        driver = body.get("Driver") or "bridge"
        if not isinstance(driver, str):
            raise BadRequest("Driver: expected a string")
        ipam = body.get("IPAM")
        if ipam is not None and not isinstance(ipam, dict):
            raise BadRequest("IPAM: expected an object")
        net = _call(nets.create, name, driver=driver, internal=bool(body.get("Internal")),
                    attachable=bool(body.get("Attachable")), labels=_dict(body, "Labels"),
                    ipam=ipam, options=_dict(body, "Options"),
                    enable_ipv6=bool(body.get("EnableIPv6")))
        return json_response({"Id": net["Id"], "Warning": ""}, 201)

    def remove(req):
        _call(nets.remove, req.params["id"])
        return empty()

    def _container(body):
        c = body.get("Container")
        if not isinstance(c, str) or not c:
            raise BadRequest("Container: a container name or id is required")
        return c

    def connect(req):
        body = req.json(default={})
        ep = body.get("EndpointConfig")
        if ep is not None and not isinstance(ep, dict):
            raise BadRequest("EndpointConfig: expected an object")
        _call(nets.connect, req.params["id"], _container(body), ep or {})
        return Response(200, b"", content_type=None)

    def disconnect(req):
        body = req.json(default={})
        _call(nets.disconnect, req.params["id"], _container(body), bool(body.get("Force")))
        return Response(200, b"", content_type=None)

    def prune(req):
        removed = _call(nets.prune, F.parse(req.q("filters")))
        return json_response({"NetworksDeleted": removed or None})

    router.add("GET", "/networks", list_)
    router.add("GET", "/networks/", list_)   # dockerd has both, for old clients
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    # {id:.+} as dockerd's routes: a network's name may hold a slash
    router.add("GET", "/networks/{id:.+}", inspect)
    router.add("DELETE", "/networks/{id:.+}", remove)
    router.add("POST", "/networks/{id:.+}/connect", connect)
    router.add("POST", "/networks/{id:.+}/disconnect", disconnect)

