"""/distribution/{name}/json: what a registry says of a name (the manifest's
descriptor and its platforms) without pulling it, as dockerd answers it."""
from berth.api.http import json_response
from berth.api.routes.image_transfer import reachable, registry_auth, registry_error
from berth.api.routes.images import ref_of
from berth.engine.images import registry
from berth.errors import BerthError


def register(router, engine):
    def inspect(req):
        ref = ref_of(req.params["name"])
        reachable(engine, ref)
        try:
            desc, platforms = registry.describe(ref, auth=registry_auth(req))
        except BerthError as e:
            raise registry_error(e) from None
        return json_response({"Descriptor": desc, "Platforms": platforms})

    router.add("GET", "/distribution/{name:.+}/json", inspect)
