"""berth's own endpoints for image signatures (not in Docker's API):

    POST /berth/images/{name}/sign?key=<private key file>&signer=<name>
    POST /berth/images/{name}/verify?keys=<dir of *.pub or a .pub file>
    GET  /berth/trust/policy

Key files are paths on the daemon's host: whoever may use the socket is
root there anyway, and the authorization policy can deny these routes."""
import os

from berth.api.errors import BadRequest, Forbidden
from berth.api.http import json_response
from berth.engine.images import trust
from berth.errors import NotFound


def register(router, engine):
    store = engine.store

    def sign(req):
        key, signer = req.q("key"), req.q("signer")
        if not key or not signer:
            raise BadRequest("sign: query parameters key and signer are required")
        path = trust.sign(store, req.params["name"], key, signer)
        engine.events.emit("image", "sign", req.params["name"], {"signer": signer})
        return json_response({"Signature": os.path.basename(path)}, 201)

    def verify(req):
        keys = req.q("keys")
        if not keys:
            raise BadRequest("verify: query parameter keys is required")
        if not os.path.exists(keys):
            raise NotFound(f"verify: {keys} does not exist")
        signers = trust.verify(store, req.params["name"],
                               keys if os.path.isdir(keys) else [keys])
        if not signers:
            raise Forbidden(f"image {req.params['name']} has no valid signature by the keys in {keys}")
        return json_response({"Signers": signers})

    def policy(req):
        path = engine.config.trust_policy
        if not path or not os.path.exists(path):
            return json_response({"Path": path, "Policy": None})
        trust.load_policy(path)   # refuses a broken file with its reason
        with open(path) as f:
            import json
            return json_response({"Path": path, "Policy": json.load(f)})

    router.add("POST", "/berth/images/{name:.+}/sign", sign)
    router.add("POST", "/berth/images/{name:.+}/verify", verify)
    router.add("GET", "/berth/trust/policy", policy)
