"""berth's own endpoints for image signatures (not in Docker's API):

    POST /berth/images/{name}/sign?key=<private key file>&signer=<name>
    POST /berth/images/{name}/verify?keys=<dir of *.pub or a .pub file>
    GET  /berth/trust/policy
sigstore signatures in the registry (X-Registry-Auth as for push):
    POST /berth/images/{name}/sigstore/payload      -> {Payload, Reference, ManifestDigest}
    POST /berth/images/{name}/sigstore/signatures   {Payload, Signature} -> 201 {Tag, ...}
    POST /berth/images/{name}/sigstore/verify       {PublicKey: PEM} -> {Verified, ...}

berth's own key files are paths on the daemon's host: whoever may use the
socket is root there anyway, and the authorization policy can deny these
routes. sigstore private keys never come here: the CLI signs the payload."""
import os

from berth.api.errors import BadRequest, Forbidden
from berth.api.http import json_response
from berth.api.routes.image_transfer import registry_auth
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

    def sigstore_payload(req):
        from berth.engine.images import signing
        return json_response(signing.payload(store, req.params["name"], registry_auth(req)))

    def sigstore_attach(req):
        from berth.engine.images import signing
        body = req.json() or {}
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str)
                                                 for k in ("Payload", "Signature")):
            raise BadRequest("sign: the body must be {\"Payload\": b64, \"Signature\": b64}")
        out = signing.attach(store, req.params["name"], body["Payload"], body["Signature"],
                             registry_auth(req))
        engine.events.emit("image", "sign", req.params["name"], {"tag": out["Tag"]})
        return json_response(out, 201)

    def sigstore_verify(req):
        from berth.engine.images import signing
        body = req.json() or {}
        key = body.get("PublicKey") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise BadRequest("verify: the body must be {\"PublicKey\": \"<PEM>\"}")
        return json_response(signing.verify(store, req.params["name"], key.encode(), registry_auth(req)))

    # the longer routes first: {name:.+} would swallow their suffixes
    router.add("POST", "/berth/images/{name:.+}/sigstore/payload", sigstore_payload)
    router.add("POST", "/berth/images/{name:.+}/sigstore/signatures", sigstore_attach)
    router.add("POST", "/berth/images/{name:.+}/sigstore/verify", sigstore_verify)
    router.add("POST", "/berth/images/{name:.+}/sign", sign)
    router.add("POST", "/berth/images/{name:.+}/verify", verify)
    router.add("GET", "/berth/trust/policy", policy)
