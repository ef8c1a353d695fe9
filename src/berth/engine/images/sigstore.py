"""sigstore image signatures, stored the way cosign and containers/image
store them ("sigstore attachments").

A signature of manifest sha256:<hex> lives in the image's own repository
under the tag `sha256-<hex>.sig`: an OCI manifest whose every layer is one
signature, media type application/vnd.dev.cosign.simplesigning.v1+json.
The layer blob is the signed payload (simple signing JSON):
  {"critical": {"identity": {"docker-reference": "<name:tag>"},
                "image": {"docker-manifest-digest": "sha256:..."},
                "type": "cosign container image signature"},
   "optional": {...} or null}
and the layer's annotation dev.cosignproject.cosign/signature is the
base64 signature over exactly those bytes: ECDSA (ASN.1 DER) or RSA
PKCS#1 v1.5 over SHA-256, or Ed25519, as cosign's public keys allow.

A signature is trusted only after it verifies; only then is the payload
parsed, strictly (containers/image refuses unknown critical fields too).
Signatures fetched at pull are kept beside the image, with the manifest
digest they were fetched for, in signatures/<image hex>/sigstore.json, so
`create` can check them again under the policy in force then."""
import base64
import hashlib
import json
import os
import time
import urllib.parse

from berth.engine.images import names
from berth.engine.images.registry_client import (
    _drain, _read_small, blob_path, manifest_path, upload_path, with_query)
from berth.engine.images.trust import Untrusted
from berth.errors import BerthError, ConfigError, NotFound
from berth.oci import jsonio

PAYLOAD_TYPE = "cosign container image signature"
MT_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
ANN_SIGNATURE = "dev.cosignproject.cosign/signature"
ANN_CERTIFICATE = "dev.sigstore.cosign/certificate"
MAX_PAYLOAD = 64 << 10
MAX_SIGNATURES = 64
_STORED = "sigstore.json"


class Signature:
    """One signature as found: payload bytes, signature bytes, and the
    manifest digest it was found for (and checked to be this image's)."""

    __slots__ = ("payload", "signature", "manifest", "keyless")

    def __init__(self, payload, signature, manifest, keyless=False):
        self.payload = payload
        self.signature = signature
        self.manifest = manifest
        self.keyless = keyless

    def key(self):
        return (self.payload, self.signature, self.manifest)


def attachment_tag(manifest_digest):
    algo, _, hexpart = manifest_digest.partition(":")
    return f"{algo}-{hexpart}.sig"


def make_payload(reference, manifest_digest, creator="berth"):
    """The simple-signing bytes for reference (name:tag) and its manifest."""
    doc = {"critical": {"identity": {"docker-reference": reference},
                        "image": {"docker-manifest-digest": manifest_digest},
                        "type": PAYLOAD_TYPE},
           "optional": {"creator": creator, "timestamp": int(time.time())}}
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_payload(body, what):
    """(signed docker reference, manifest digest) of verified payload bytes."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise Untrusted(f"{what}: payload is not JSON ({e})") from None
    crit = doc.get("critical") if isinstance(doc, dict) else None
    if not isinstance(crit, dict) or set(crit) != {"identity", "image", "type"}:
        raise Untrusted(f"{what}: payload critical section must hold exactly identity, "
                        "image and type")
    if crit["type"] != PAYLOAD_TYPE:
        raise Untrusted(f"{what}: payload type {crit['type']!r} is not {PAYLOAD_TYPE!r}")
    image, ident = crit["image"], crit["identity"]
    if not isinstance(image, dict) or set(image) != {"docker-manifest-digest"} \
            or not isinstance(image["docker-manifest-digest"], str):
        raise Untrusted(f"{what}: payload critical.image must hold only docker-manifest-digest")
    if not isinstance(ident, dict) or set(ident) != {"docker-reference"} \
            or not isinstance(ident["docker-reference"], str):
        raise Untrusted(f"{what}: payload critical.identity must hold only docker-reference")
    if "optional" in doc and doc["optional"] is not None and not isinstance(doc["optional"], dict):
        raise Untrusted(f"{what}: payload optional must be an object or null")
    return ident["docker-reference"], image["docker-manifest-digest"]


# keys and signatures

def _crypto():
    try:
        from cryptography import exceptions
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    except ImportError:
        raise BerthError("sigstore signatures need the python package cryptography",
                         hint="pip install cryptography==43.0.3") from None
    return exceptions, hashes, serialization, ec, ed25519, padding, rsa


def load_public_key(data, what):
    """A public key cosign accepts (PEM SubjectPublicKeyInfo: ECDSA P-256,
    P-384 or P-521, RSA, Ed25519) from bytes."""
    _, _, serialization, ec, ed25519, _, rsa = _crypto()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{what}: not a PEM public key ({e})") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise ConfigError(f"{what}: ECDSA curve {key.curve.name} is not one cosign uses")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ConfigError(f"{what}: RSA keys under 2048 bits are refused")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{what}: {type(key).__name__} is not a key type cosign signs with")
    return key


def signature_matches(key, signature, payload):
    exceptions, hashes, _, ec, ed25519, padding, rsa = _crypto()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, payload)
    except (exceptions.InvalidSignature, ValueError):
        return False
    return True


# the registry side

def fetch(client, manifest_digest):
    """The signatures attached to manifest_digest in client's repository
    ([] when there are none)."""
    tag = attachment_tag(manifest_digest)
    what = f"{client.what}: signatures {tag}"
    try:
        doc, _, _ = client.manifest(tag)
    except NotFound:
        return []
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise Untrusted(f"{what}: the attachment manifest has no layers list")
    out = []
    for i, ld in enumerate(layers[:MAX_SIGNATURES]):
        if not isinstance(ld, dict) or ld.get("mediaType") != MT_SIMPLESIGNING:
            continue
        ann = ld.get("annotations") if isinstance(ld.get("annotations"), dict) else {}
        sig_b64 = ann.get(ANN_SIGNATURE)
        size = ld.get("size")
        if not isinstance(sig_b64, str) or not isinstance(size, int) or not 0 < size <= MAX_PAYLOAD:
            continue
        try:
            signature = base64.b64decode(sig_b64, validate=True)
        except ValueError:
            continue
        payload = _small_blob(client, ld.get("digest"), size, f"{what} layers[{i}]")
        out.append(Signature(payload, signature, manifest_digest, ANN_CERTIFICATE in ann))
    return out


def _small_blob(client, digest, size, what):
    if not isinstance(digest, str) or not names.is_digest(digest):
        raise Untrusted(f"{what}: bad digest {digest!r}")
    resp = client.open_blob(digest, 0)
    data = _read_small(resp, MAX_PAYLOAD)
    if len(data) != size or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise Untrusted(f"{what}: blob {digest} does not match its descriptor")
    return data


def push(client, sig):
    """Add sig to the attachment of its manifest (made if missing); an
    identical signature already there is not added twice."""
    tag = attachment_tag(sig.manifest)
    try:
        doc, _, _ = client.manifest(tag)
    except NotFound:
        doc = None
    layers = list(doc.get("layers") or []) if isinstance(doc, dict) else []
    sig_b64 = base64.b64encode(sig.signature).decode()
    digest = _put_blob(client, sig.payload)
    if not any(isinstance(d, dict) and d.get("digest") == digest
               and (d.get("annotations") or {}).get(ANN_SIGNATURE) == sig_b64 for d in layers):
        layers.append({"mediaType": MT_SIMPLESIGNING, "digest": digest,
                       "size": len(sig.payload), "annotations": {ANN_SIGNATURE: sig_b64}})
    # the config lists the layers as an image's would (what cosign and
    # containers/image write)
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers",
                                    "diff_ids": [d.get("digest") for d in layers]}},
                        separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "config": {"mediaType": MT_OCI_CONFIG, "digest": _put_blob(client, config),
                           "size": len(config)},
                "layers": layers}
    body = json.dumps(manifest, separators=(",", ":")).encode()
    resp = client.request("PUT", manifest_path(client.ref.repository, tag),
                          {"Content-Type": MT_OCI_MANIFEST, "Content-Length": str(len(body))},
                          body)
    data = _read_small(resp, 1 << 16)
    if resp.status not in (200, 201):
        raise client.fail(resp, f"signature manifest PUT {tag}", data)
    return tag


def _put_blob(client, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    repo = client.ref.repository
    resp = client.request("HEAD", blob_path(repo, digest))
    _drain(resp)
    if resp.status == 200:
        return digest
    resp = client.request("POST", upload_path(repo), {"Content-Length": "0"}, b"")
    body = _read_small(resp, 1 << 16)
    if resp.status != 202 or not resp.getheader("Location"):
        raise client.fail(resp, f"starting the upload of blob {digest}", body)
    location = urllib.parse.urljoin(client.url(upload_path(repo)), resp.getheader("Location"))
    resp = client.request("PUT", with_query(location, digest=digest), {
        "Content-Type": "application/octet-stream", "Content-Length": str(len(data))}, data)
    body = _read_small(resp, 1 << 16)
    if resp.status != 201:
        raise client.fail(resp, f"finishing the upload of blob {digest}", body)
    return digest


# the store side

def _path(store, image_id):
    return os.path.join(store.root, "signatures", image_id[len("sha256:"):], _STORED)


def stored(store, image_id):
    path = _path(store, image_id)
    if not os.path.exists(path):
        return []
    doc = jsonio.load_file(path, f"signatures of {image_id}")
    out = []
    for e in doc.get("signatures", []) if isinstance(doc, dict) else []:
        try:
            out.append(Signature(base64.b64decode(e["payload"]), base64.b64decode(e["signature"]),
                                 e["manifest"], bool(e.get("keyless"))))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def save(store, image_id, sigs):
    """Keep sigs (already checked to be for this image's manifests)."""
    if not sigs:
        return
    with store:
        have = stored(store, image_id)
        seen = {s.key() for s in have}
        merged = have + [s for s in sigs if s.key() not in seen]
        path = _path(store, image_id)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        jsonio.write_atomic(path, {"signatures": [
            {"payload": base64.b64encode(s.payload).decode(),
             "signature": base64.b64encode(s.signature).decode(),
             "manifest": s.manifest, "keyless": s.keyless}
            for s in merged[-MAX_SIGNATURES:]]}, mode=0o600)
