"""Image trust: which policy file applies, and berth's own local signatures.

The daemon's policy file is either containers' policy.json (policy.py:
sigstore signatures from the registry, sigstore.py; enforced at pull and
again at create) or, told apart by its shape, berth's own format below
(detached Ed25519 signatures kept in the store, for images that never
pass through a registry; enforced at create). docs/trust.md has both.

berth's own format: detached Ed25519 signatures and a policy that requires them.

A signature vouches that a key holder published one image (config digest
and layer diff ids) under one name. It is kept in the store as
  signatures/<image hex>/<n>.json  {"keyId", "payload", "signature"}
where payload is the exact signed bytes (base64), so verifying never
depends on re-encoding JSON. The signed document is checked only after its
signature is, and every critical field must match the image being run:
a re-tagged image or a signature copied onto other content does not verify.

The policy file (JSON) says what each image needs:
  {"default": "insecureAcceptAnything" | "reject" | {"signedBy": [<pubkey files>]},
   "registries":   {"quay.io": <requirement>},
   "repositories": {"docker.io/library/alpine": <requirement>}}
The most specific scope wins: repository, then registry, then default.
Key files named in signedBy are relative to the policy file. Removing a key
from the policy revokes it: its signatures stop counting at once.

`cryptography` is imported lazily so the rest of berth does not need it."""
import base64
import hashlib
import os
import time

from berth.engine.images import names
from berth.errors import BerthError, ConfigError, Conflict, NotFound
from berth.oci import jsonio

SIGNATURE_TYPE = "berth image signature"
ACCEPT = "insecureAcceptAnything"
REJECT = "reject"
DEFAULT_POLICY = "/etc/berth/policy.json"
_MAX_SIG = 64 << 10
_CRITICAL_KEYS = frozenset(("type", "image", "identity"))
_HEX = frozenset("0123456789abcdef")


class Untrusted(BerthError):
    """The policy does not accept this image; running it is not permitted."""


def _crypto():
    try:
        from cryptography import exceptions
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise BerthError("image signatures need the python package cryptography",
                         hint="pip install cryptography==43.0.3") from None
    return serialization, ed25519, exceptions


# keys

def generate_key(path):
    """Write a new Ed25519 private key to path (mode 0600, PEM PKCS#8) and
    its public key to path + ".pub". Returns the public key path."""
    serialization, ed25519, _ = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    pub_path = path + ".pub"
    for p in (path, pub_path):
        if os.path.lexists(p):
            raise Conflict(f"key file {p} exists already",
                           hint="remove it or pick another path; keys are never overwritten")
    _write_new(path, private, 0o600)
    try:
        _write_new(pub_path, public, 0o644)
    except BaseException:
        os.unlink(path)
        raise
    return pub_path


def _write_new(path, data, mode):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise Conflict(f"key file {path} exists already") from None
    except OSError as e:
        raise BerthError(f"cannot create key file {path}", errno=e.errno) from None
    try:
        os.fchmod(fd, mode)  # umask must not widen or narrow what we meant
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def _read_key_file(path, what):
    try:
        with open(path, "rb") as f:
            return f.read(_MAX_SIG)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}", errno=e.errno) from None


def load_private_key(path):
    serialization, ed25519, _ = _crypto()
    data = _read_key_file(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"private key {path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"private key {path}: not an Ed25519 key")
    return key


def load_public_key(path):
    """The Ed25519 public key in path and its key id."""
    serialization, ed25519, _ = _crypto()
    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"public key {path}: not a PEM public key ({e})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"public key {path}: not an Ed25519 key")
    return key, _key_id(key)


def _key_id(public_key):
    serialization, _, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def key_id(pub_path):
    """sha256 of the raw public key: how signatures name their key."""
    return load_public_key(pub_path)[1]


def _trusted_keys(trust):
    """{key id: public key} from a directory of *.pub files or a list of files."""
    if isinstance(trust, str):
        if not os.path.isdir(trust):
            raise ConfigError(f"trust directory {trust}: not a directory")
        paths = [os.path.join(trust, n) for n in sorted(os.listdir(trust)) if n.endswith(".pub")]
    else:
        paths = list(trust)
    keys = {}
    for p in paths:
        key, kid = load_public_key(p)
        keys[kid] = key
    return keys


# payload

def _canonical(obj):
    if isinstance(obj, dict):
        return {k: _canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def payload(image_id, diff_ids, reference, signer, created):
    """The bytes a signature covers: compact ASCII JSON with sorted keys, so
    one image, name, signer and time always give the same bytes."""
    doc = {
        "critical": {
            "type": SIGNATURE_TYPE,
            "image": {"id": image_id, "diffIds": list(diff_ids)},
            "identity": {"reference": reference},
        },
        "optional": {"signer": signer, "created": created},
    }
    return jsonio.dumps(_canonical(doc)).encode("ascii")


def _parse_ref(ref):
    """The parsed name in ref, or None when ref is an image id."""
    if not isinstance(ref, str) or not ref:
        raise NotFound("no such image: empty reference")
    if ref.startswith("sha256:") and "/" not in ref:
        return None
    try:
        return names.parse(ref)
    except BerthError:
        if set(ref) <= _HEX:
            return None
        raise


def _resolve(store, ref):
    """(image id, parsed name or None) the way the store resolves ref: a
    short hex string is a name only if such a tag exists, else an id prefix,
    so an id can never borrow the laxer scope of a made-up name."""
    r = _parse_ref(ref)
    image_id = store.resolve(ref)
    if r is not None and r.digest is None and set(ref) <= _HEX \
            and str(r) not in store.tags_of(image_id):
        r = None
    return image_id, r


def _signature_dir(store, image_id):
    return os.path.join(store.root, "signatures", image_id[len("sha256:"):])


# signing

def sign(store, ref, key_path, signer_name):
    """Sign the image ref names, for that name, with the private key in
    key_path. Returns the path of the new signature file."""
    if not isinstance(signer_name, str) or not signer_name:
        raise BerthError("sign: signer name must be a non-empty string")
    key = load_private_key(key_path)
    with store:
        image_id, r = _resolve(store, ref)
        if r is None or r.tag is None:
            raise BerthError(f"sign {ref}: a signature names the image, so give name:tag",
                             hint="tag the image first, then sign the tag")
        reference = str(r.with_tag(r.tag))
        rec = store.record(image_id)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = payload(image_id, rec["diff_ids"], reference, signer_name, created)
        doc = {
            "keyId": _key_id(key.public_key()),
            "payload": base64.b64encode(body).decode("ascii"),
            "signature": base64.b64encode(key.sign(body)).decode("ascii"),
        }
        d = _signature_dir(store, image_id)
        os.makedirs(d, mode=0o700, exist_ok=True)
        n = 0
        while os.path.lexists(os.path.join(d, f"{n}.json")):
            n += 1
        path = os.path.join(d, f"{n}.json")
        jsonio.write_atomic(path, doc, mode=0o600)
    return path


def signatures(store, image_id):
    """Paths of the signature files stored for image_id, in order."""
    d = _signature_dir(store, image_id)
    try:
        entries = os.listdir(d)
    except FileNotFoundError:
        return []
    nums = sorted(int(n[:-5]) for n in entries if n.endswith(".json") and n[:-5].isdigit())
    return [os.path.join(d, f"{n}.json") for n in nums]


def remove_signatures(store, image_id):
    """Drop every signature of image_id (for when the image is deleted)."""
    with store:
        for p in signatures(store, image_id):
            os.unlink(p)
        try:
            os.rmdir(_signature_dir(store, image_id))
        except FileNotFoundError:
            pass


# verifying

def _check_one(path, keys, image_id, diff_ids, r):
    """The signer named in the signature at path if it is valid for this
    image and name under keys; raises Untrusted with the reason if not."""
    _, _, exceptions = _crypto()
    where = f"signature {os.path.basename(path)}"
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_SIG + 1)
    except OSError as e:
        raise Untrusted(f"{where}: cannot read", errno=e.errno) from None
    if len(raw) > _MAX_SIG:
        raise Untrusted(f"{where}: larger than {_MAX_SIG} bytes")
    try:
        doc = jsonio.loads(raw, where)
    except ConfigError as e:
        raise Untrusted(str(e)) from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str)
                                            for k in ("keyId", "payload", "signature")):
        raise Untrusted(f"{where}: keyId, payload and signature must be strings")
    kid = doc["keyId"]
    key = keys.get(kid)
    if key is None:
        raise Untrusted(f"{where}: key {kid} is not trusted")
    try:
        body = base64.b64decode(doc["payload"], validate=True)
        sig = base64.b64decode(doc["signature"], validate=True)
    except ValueError:
        raise Untrusted(f"{where}: payload or signature is not valid base64") from None
    try:
        key.verify(sig, body)
    except exceptions.InvalidSignature:
        raise Untrusted(f"{where}: signature does not match its payload under key {kid}") from None
    # only bytes the key holder signed are parsed from here on
    try:
        signed = jsonio.loads(body, f"{where} payload")
    except ConfigError as e:
        raise Untrusted(str(e)) from None
    crit = signed.get("critical") if isinstance(signed, dict) else None
    if not isinstance(crit, dict) or set(crit) != _CRITICAL_KEYS:
        raise Untrusted(f"{where}: payload critical section must hold exactly "
                        f"{', '.join(sorted(_CRITICAL_KEYS))}")
    if crit["type"] != SIGNATURE_TYPE:
        raise Untrusted(f"{where}: payload type {crit['type']!r} is not {SIGNATURE_TYPE!r}")
    image = crit["image"] if isinstance(crit["image"], dict) else {}
    if image.get("id") != image_id:
        raise Untrusted(f"{where}: signed for image {image.get('id')}, not {image_id}")
    if image.get("diffIds") != list(diff_ids):
        raise Untrusted(f"{where}: signed layers (diffIds) differ from image {image_id}")
    ident = crit["identity"] if isinstance(crit["identity"], dict) else {}
    signed_ref = ident.get("reference")
    if r is not None and not _identity_matches(signed_ref, r):
        raise Untrusted(f"{where}: signed for {signed_ref}, not {r}")
    opt = signed.get("optional") if isinstance(signed.get("optional"), dict) else {}
    signer = opt.get("signer")
    return signer if isinstance(signer, str) and signer else kid


def _identity_matches(signed_ref, r):
    if not isinstance(signed_ref, str):
        return False
    if r.tag is not None:
        return signed_ref == str(r.with_tag(r.tag))
    # name@digest: the digest pins content (checked via the image id), so
    # any tag of the same repository names it
    try:
        return names.parse(signed_ref).name == r.name
    except BerthError:
        return False


def _evaluate(store, ref, keys):
    """(image id, valid signers, reasons the other signatures failed)."""
    image_id, r = _resolve(store, ref)
    rec = store.record(image_id)
    valid, reasons = [], []
    for p in signatures(store, image_id):
        try:
            valid.append(_check_one(p, keys, image_id, rec["diff_ids"], r))
        except Untrusted as e:
            reasons.append(str(e))
    return image_id, sorted(set(valid)), reasons


def verify(store, ref, trust_dir):
    """Signers of valid signatures of ref under the public keys in trust_dir
    (a directory of *.pub files, or a list of key files). A name must match
    the signed name; an image id matches any signature of that content."""
    return _evaluate(store, ref, _trusted_keys(trust_dir))[1]


# policy

class Policy:
    """A loaded policy file; requirements are ACCEPT, REJECT or a
    {key id: public key} dict that at least one signature must match."""

    def __init__(self, path, default, registries, repositories):
        self.path = path
        self.default = default
        self.registries = registries
        self.repositories = repositories

    def requirement(self, r):
        """(requirement, scope name) for a parsed reference, or the default
        for None (an image id)."""
        if r is not None:
            if r.name in self.repositories:
                return self.repositories[r.name], r.name
            if r.registry in self.registries:
                return self.registries[r.registry], r.registry
        return self.default, "default"


def load_policy(path=DEFAULT_POLICY):
    """A Policy (berth's format) or a policy.ContainersPolicy (policy.json)."""
    doc = jsonio.load_file(path, f"policy {path}")
    if not isinstance(doc, dict):
        raise ConfigError(f"policy {path}: expected a JSON object")
    from berth.engine.images import policy as containers
    if containers.is_containers_format(doc):
        return containers.load(path, doc)
    unknown = set(doc) - {"default", "registries", "repositories"}
    if unknown:
        raise ConfigError(f"policy {path}: unknown field {sorted(unknown)[0]!r}",
                          hint="fields are default, registries and repositories")
    if "default" not in doc:
        raise ConfigError(f"policy {path}: \"default\" is required",
                          hint=f"use \"{REJECT}\" or \"{ACCEPT}\" explicitly")
    base = os.path.dirname(os.path.abspath(path))
    default = _requirement(doc["default"], f"policy {path}: default", base)
    scopes = {}
    for field in ("registries", "repositories"):
        table = doc.get(field, {})
        if not isinstance(table, dict):
            raise ConfigError(f"policy {path}: {field} must be an object")
        out = {}
        for scope, req in table.items():
            what = f"policy {path}: {field}[{scope!r}]"
            if field == "registries":
                key = _registry_scope(scope, what)
            else:
                key = _repo_scope(scope, what)
            out[key] = _requirement(req, what, base)
        scopes[field] = out
    return Policy(path, default, scopes["registries"], scopes["repositories"])


def _registry_scope(scope, what):
    if not scope or "/" in scope or "@" in scope:
        raise ConfigError(f"{what}: a registry scope is a host name with an optional port")
    return "docker.io" if scope == "index.docker.io" else scope


def _repo_scope(scope, what):
    tail = scope.rsplit("/", 1)[-1]
    if "@" in scope or ":" in tail:
        raise ConfigError(f"{what}: a repository scope names no tag or digest")
    try:
        return names.parse(scope).name
    except BerthError as e:
        raise ConfigError(f"{what}: {e}") from None


def _requirement(req, what, base):
    if req == ACCEPT or req == REJECT:
        return req
    if isinstance(req, str):
        raise ConfigError(f"{what}: unknown requirement {req!r}",
                          hint=f"use \"{ACCEPT}\", \"{REJECT}\" or {{\"signedBy\": [...]}}")
    if not isinstance(req, dict) or set(req) != {"signedBy"}:
        raise ConfigError(f"{what}: expected \"{ACCEPT}\", \"{REJECT}\" or {{\"signedBy\": [...]}}")
    files = req["signedBy"]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        raise ConfigError(f"{what}: signedBy must be a non-empty list of public key files",
                          hint=f"to refuse everything say \"{REJECT}\"")
    return _trusted_keys([os.path.join(base, f) for f in files])


def check(store, ref, policy=DEFAULT_POLICY):
    """Raise Untrusted unless policy (a Policy or a policy file path) accepts
    the image ref names. An image id is accepted if the image is under one
    of its names (running by id can do nothing running by that name could
    not); an untagged image is held to the default."""
    if isinstance(policy, (str, os.PathLike)):
        policy = load_policy(os.fspath(policy))
    if not isinstance(policy, Policy):
        return _check_sigstore(store, ref, policy)
    _under_its_names(store, ref, lambda shown, r: _check_scope(store, shown, r, policy))


def _under_its_names(store, ref, check_one):
    """check_one(shown, parsed name or None) for ref's name, or for an image
    id under each of the image's tags until one passes (no tag: None)."""
    image_id, r = _resolve(store, ref)
    if r is not None:
        check_one(ref, r)
        return
    tags = store.tags_of(image_id)
    if not tags:
        check_one(image_id, None)
        return
    errors = []
    for t in tags:
        try:
            check_one(t, names.parse(t))
            return
        except Untrusted as e:
            errors.append(str(e))
    if len(errors) == 1:
        raise Untrusted(errors[0])
    raise Untrusted(f"image {image_id} is not accepted under any of its names: "
                    + " | ".join(errors))


def _check_scope(store, ref, r, policy):
    req, scope = policy.requirement(r)
    shown = str(r) if r is not None else ref
    if req == ACCEPT:
        store.resolve(ref)  # an unknown image is still NotFound, not accepted
        return
    if req == REJECT:
        raise Untrusted(f"image {shown} is rejected by policy {policy.path} for {scope}")
    image_id, valid, reasons = _evaluate(store, ref, req)
    if valid:
        return
    why = "; ".join(reasons) if reasons else f"image {image_id} has no signatures"
    raise Untrusted(f"image {shown} is not signed by a trusted key (policy {policy.path} "
                    f"requires signedBy for {scope}): {why}")


# containers' policy.json

def _check_sigstore(store, ref, pol):
    """check() under a policy.json: the signatures kept at pull (or by
    `berth image sign`) are verified again under the policy of today."""
    from berth.engine.images import policy as containers, sigstore
    sigs = sigstore.stored(store, store.resolve(ref))
    _under_its_names(store, ref, lambda shown, r: containers.evaluate(
        pol, r, str(r) if r is not None else shown, sigs))


def admit_pull(policy_path, r, client, manifest_digest):
    """Before a pull downloads anything: raise Untrusted unless the
    policy.json at policy_path accepts r, whose registry manifest is
    manifest_digest; returns the signatures to keep with the image.
    berth's own policy format is enforced at create only (its signatures
    are made after the image is here)."""
    if not policy_path or not os.path.exists(policy_path):
        return []
    pol = load_policy(policy_path)
    if isinstance(pol, Policy):
        return []
    from berth.engine.images import policy as containers, sigstore
    reqs, _ = pol.requirements(r)
    sigs, why = [], ""
    if any(q.kind == containers.SIGSTORE for q in reqs) \
            and not any(q.kind == containers.REJECT for q in reqs):
        enabled, why = containers.attachments_enabled(pol.registries_d, r)
        if enabled:
            sigs = sigstore.fetch(client, manifest_digest)
    containers.evaluate(pol, r, str(r), sigs, why)
    return sigs
