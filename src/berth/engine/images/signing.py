"""The daemon's half of `berth image sign` and `berth image verify` with
sigstore signatures.

Signing is split where the key is: the daemon finds the manifest the
registry serves for name:tag, checks it is the local image, and hands out
the payload; the CLI signs it with the private key it holds (the key
never reaches the daemon); the daemon checks the payload it gets back is
the one for this image and repository, pushes the signature as a sigstore
attachment and keeps it with the image, so create accepts the image under
a policy.json that requires that key."""
import base64

from berth.engine.images import names, sigstore
from berth.engine.images.registry_client import _Client, select_platform
from berth.engine.images.oci_layout import INDEXES
from berth.engine.images.trust import Untrusted
from berth.errors import BerthError, Conflict


def _target(store, ref, auth, actions):
    """(parsed ref, image id, registry client, manifest digest) for a local
    image the registry serves under ref."""
    r = names.parse(ref)
    image_id = store.resolve(str(r))
    client = _Client(r, auth, actions, True)
    client.ping()
    doc, mt, digest = client.manifest(r.digest or r.tag)
    top = doc
    if mt in INDEXES:
        desc = select_platform(doc, what=f"{client.what}: manifest list {r.tag or r.digest}")
        top, _, _ = client.manifest(desc["digest"])
    config = (top.get("config") or {}).get("digest") if isinstance(top, dict) else None
    if config != image_id:
        raise Conflict(f"{client.what}: {r.familiar()} in the registry is image {config}, "
                       f"not the local {image_id}",
                       hint=f"push it first: berth push {r.familiar()}")
    return r, image_id, client, digest


def payload(store, ref, auth=None):
    """{"Payload", "Reference", "ManifestDigest"}: what the CLI signs."""
    r, _, _, digest = _target(store, ref, auth, "pull")
    if r.tag is None:
        raise BerthError(f"sign {ref}: a signature names the image, so give name:tag",
                         hint="cosign and containers/image sign tags, not bare digests")
    reference = str(r.with_tag(r.tag))
    body = sigstore.make_payload(reference, digest)
    return {"Payload": base64.b64encode(body).decode(), "Reference": reference,
            "ManifestDigest": digest}


def attach(store, ref, payload_b64, signature_b64, auth=None):
    """Push a signature the CLI made over a payload from payload() and keep
    it with the image; returns the attachment tag."""
    try:
        body = base64.b64decode(payload_b64, validate=True)
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, TypeError):
        raise BerthError("sign: Payload and Signature must be base64") from None
    if not signature or len(body) > sigstore.MAX_PAYLOAD:
        raise BerthError("sign: empty signature or oversized payload")
    r, image_id, client, digest = _target(store, ref, auth, "pull,push")
    try:
        signed_ref, signed_digest = sigstore.parse_payload(body, "sign: payload")
    except Untrusted as e:
        raise BerthError(str(e)) from None
    if signed_digest != digest or names.parse(signed_ref).name != r.name:
        raise Conflict(f"sign {ref}: the payload is for {signed_ref} ({signed_digest}), "
                       f"not {r.name} ({digest})", hint="ask for a fresh payload")
    sig = sigstore.Signature(body, signature, digest)
    tag = sigstore.push(client, sig)
    sigstore.save(store, image_id, [sig])
    return {"Tag": tag, "ManifestDigest": digest, "Reference": signed_ref}


def verify(store, ref, public_key_pem, auth=None):
    """The identities of ref's signatures in the registry that verify under
    the key (cosign verify's check, with matchRepoDigestOrExact); raises
    Untrusted naming why when none do."""
    from berth.engine.images import policy
    key = sigstore.load_public_key(public_key_pem, "verify: public key")
    r = names.parse(ref)
    client = _Client(r, auth, "pull", True)
    client.ping()
    _, _, digest = client.manifest(r.digest or r.tag)
    req = policy.Requirement(policy.SIGSTORE, [("the given key", key)],
                             {"type": "matchRepoDigestOrExact"})
    good, reasons = [], []
    for i, s in enumerate(sigstore.fetch(client, digest)):
        try:
            policy.accepts(req, r, s, f"signature {i}")
            good.append(sigstore.parse_payload(s.payload, f"signature {i}")[0])
        except Untrusted as e:
            reasons.append(str(e))
    if not good:
        raise Untrusted(f"{r.familiar()} ({digest}) has no valid signature by the key: "
                        + ("; ".join(reasons) or "it has no sigstore signatures"))
    return {"Verified": sorted(set(good)), "ManifestDigest": digest}
