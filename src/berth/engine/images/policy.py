"""containers' policy.json (what Podman, Skopeo and CRI-O read;
containers-policy.json(5)) and the part of registries.d that says where
sigstore signatures live.

  {"default": [<requirement>, ...],
   "transports": {"docker": {"<scope>": [<requirement>, ...], ...}}}

Scopes of the docker transport, most specific first (containers/image's
order): the reference with its tag or digest, the repository, each
enclosing namespace, the registry host[:port], wildcards `*.example.com`
(from the longest suffix of a host without a port), then "" (the
transport's default), then the top-level default. Every requirement of the
chosen list must accept the image. Implemented requirement types:
insecureAcceptAnything, reject, and sigstoreSigned with keyPath, keyPaths,
keyData or keyDatas and a signedIdentity (matchRepoDigestOrExact by
default, matchExact, matchRepository, exactReference, exactRepository,
remapIdentity). Everything else - signedBy (GPG), signedBaseLayer,
keyless sigstoreSigned (fulcio, rekorPublicKey*, pki) - refuses the whole
file by name, as a policy berth cannot enforce must not be half-enforced.
Other transports than docker are not read.

registries.d/*.yaml beside policy.json: `default-docker` and
`docker: {<host[/namespace[/repo]]>: ...}` entries, most specific wins;
`use-sigstore-attachments: false` (or absent) means signatures are not
read from the registry for that scope. Without a registries.d directory
berth reads attachments everywhere (the only place it can find sigstore
signatures). lookaside (GPG signature servers) is not used."""
import base64
import os

from berth.engine.images import names
from berth.errors import BerthError, ConfigError

ACCEPT = "insecureAcceptAnything"
REJECT = "reject"
SIGSTORE = "sigstoreSigned"
_NOT_IMPLEMENTED = {
    "signedBy": "GPG simple signing (signedBy) is not implemented by berth",
    "signedBaseLayer": "signedBaseLayer is not implemented by berth",
}
_KEYLESS = {"fulcio": "keyless (Fulcio certificate) verification",
            "rekorPublicKeyPath": "Rekor transparency-log verification",
            "rekorPublicKeyData": "Rekor transparency-log verification",
            "pki": "X.509 PKI verification"}
_KEY_FIELDS = ("keyPath", "keyPaths", "keyData", "keyDatas")
_IDENTITIES = ("matchExact", "matchRepoDigestOrExact", "matchRepository", "exactReference",
               "exactRepository", "remapIdentity")


class Requirement:
    def __init__(self, kind, keys=(), identity=None, where=""):
        self.kind = kind
        self.keys = list(keys)          # [(key name, public key)]
        self.identity = identity        # dict with "type" (and its fields)
        self.where = where


class ContainersPolicy:
    """A loaded policy.json: default and docker scopes -> [Requirement]."""

    def __init__(self, path, default, docker, registries_d):
        self.path = path
        self.default = default
        self.docker = docker
        self.registries_d = registries_d

    def requirements(self, r):
        """([Requirement], scope) for a parsed reference; None: the default."""
        if r is not None:
            for scope in scopes_of(r):
                if scope in self.docker:
                    return self.docker[scope], f"transports.docker[{scope!r}]"
        return self.default, "default"


def scopes_of(r):
    """The docker transport's scopes for r, most specific first."""
    out = [str(r), r.name]
    parts = r.name.split("/")
    for i in range(len(parts) - 1, 0, -1):
        out.append("/".join(parts[:i]))
    host = r.registry
    if ":" not in host:
        labels = host.split(".")
        out += ["*." + ".".join(labels[i:]) for i in range(1, len(labels))]
    out.append("")
    return out


def is_containers_format(doc):
    return isinstance(doc, dict) and (isinstance(doc.get("default"), list) or "transports" in doc)


def load(path, doc):
    what = f"policy {path}"
    unknown = set(doc) - {"default", "transports"}
    if unknown:
        raise ConfigError(f"{what}: unknown field {sorted(unknown)[0]!r}",
                          hint="policy.json has default and transports")
    base = os.path.dirname(os.path.abspath(path))
    if "default" not in doc:
        raise ConfigError(f"{what}: \"default\" is required",
                          hint=f'use [{{"type": "{REJECT}"}}] or [{{"type": "{ACCEPT}"}}]')
    default = _requirements(doc["default"], f"{what}: default", base)
    transports = doc.get("transports", {})
    if not isinstance(transports, dict):
        raise ConfigError(f"{what}: transports must be an object")
    docker = {}
    table = transports.get("docker", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{what}: transports.docker must be an object")
    for scope, reqs in table.items():
        where = f"{what}: transports.docker[{scope!r}]"
        docker[_scope(scope, where)] = _requirements(reqs, where, base)
    return ContainersPolicy(path, default, docker, os.path.join(base, "registries.d"))


def _scope(scope, where):
    if scope == "":
        return scope
    if scope.startswith("*."):
        host = scope[2:]
        if not host or "/" in host or ":" in host or "*" in host:
            raise ConfigError(f"{where}: a wildcard scope is *.domain, without port or path")
        return scope
    if "/" not in scope:
        if not names._DOMAIN.match(scope):
            raise ConfigError(f"{where}: {scope!r} is not a host name with an optional port")
        return scope
    try:
        r = names.parse(scope)
    except BerthError as e:
        raise ConfigError(f"{where}: {e}") from None
    tail = scope.rsplit("/", 1)[-1]
    shown = str(r) if ("@" in scope or ":" in tail) else r.name
    if shown != scope:
        raise ConfigError(f"{where}: scopes are written in full, as {shown!r}")
    return scope


def _requirements(reqs, where, base):
    if not isinstance(reqs, list) or not reqs:
        raise ConfigError(f"{where}: expected a non-empty list of requirements",
                          hint=f'to refuse everything say [{{"type": "{REJECT}"}}]')
    return [_requirement(req, f"{where}[{i}]", base) for i, req in enumerate(reqs)]


def _requirement(req, where, base):
    kind = req.get("type") if isinstance(req, dict) else None
    if kind in (ACCEPT, REJECT):
        if set(req) != {"type"}:
            raise ConfigError(f"{where}: {kind} takes no fields besides type")
        return Requirement(kind, where=where)
    if kind in _NOT_IMPLEMENTED:
        raise ConfigError(f"{where}: {_NOT_IMPLEMENTED[kind]}",
                          hint="sign with cosign keys and require sigstoreSigned")
    if kind != SIGSTORE:
        raise ConfigError(f"{where}: unknown requirement type {kind!r}",
                          hint=f"berth implements {ACCEPT}, {REJECT} and {SIGSTORE}")
    for field, name in _KEYLESS.items():
        if field in req:
            raise ConfigError(f"{where}: {SIGSTORE} with {field}: {name} is not "
                              "implemented by berth", hint="use keyPath or keyData")
    unknown = set(req) - {"type", "signedIdentity", *_KEY_FIELDS}
    if unknown:
        raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r} in {SIGSTORE}")
    given = [f for f in _KEY_FIELDS if f in req]
    if len(given) != 1:
        raise ConfigError(f"{where}: {SIGSTORE} needs exactly one of "
                          f"{', '.join(_KEY_FIELDS)}")
    return Requirement(SIGSTORE, _keys(req, given[0], where, base),
                       _identity(req.get("signedIdentity"), where), where)


def _keys(req, field, where, base):
    from berth.engine.images.sigstore import load_public_key
    value = req[field]
    values = value if field.endswith("s") else [value]
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v
                                                             for v in values):
        raise ConfigError(f"{where}: {field} must be "
                          + ("a non-empty list of strings" if field.endswith("s") else "a string"))
    out = []
    for v in values:
        if field.startswith("keyPath"):
            path = os.path.join(base, v)
            try:
                with open(path, "rb") as f:
                    data = f.read(64 << 10)
            except OSError as e:
                raise ConfigError(f"{where}: cannot read {field} {path}", errno=e.errno) from None
            out.append((path, load_public_key(data, f"{where}: {field} {path}")))
        else:
            try:
                data = base64.b64decode(v, validate=True)
            except ValueError:
                raise ConfigError(f"{where}: {field} is not base64") from None
            out.append((field, load_public_key(data, f"{where}: {field}")))
    return out


def _identity(ident, where):
    where = f"{where}.signedIdentity"
    if ident is None:
        return {"type": "matchRepoDigestOrExact"}
    kind = ident.get("type") if isinstance(ident, dict) else None
    if kind not in _IDENTITIES:
        raise ConfigError(f"{where}: unknown type {kind!r}",
                          hint="one of " + ", ".join(_IDENTITIES))
    fields = {"exactReference": {"dockerReference"}, "exactRepository": {"dockerRepository"},
              "remapIdentity": {"prefix", "signedPrefix"}}.get(kind, set())
    if set(ident) - {"type"} != fields:
        raise ConfigError(f"{where}: {kind} takes "
                          + (", ".join(sorted(fields)) if fields else "no fields"))
    out = dict(ident)
    try:
        if kind == "exactReference":
            r = names.parse(ident["dockerReference"])
            if str(r) != ident["dockerReference"]:
                raise ConfigError(f"{where}: dockerReference is written in full, as {str(r)!r}")
        elif kind == "exactRepository":
            r = names.parse(ident["dockerRepository"])
            if r.name != ident["dockerRepository"]:
                raise ConfigError(f"{where}: dockerRepository is a full repository name "
                                  f"without tag, as {r.name!r}")
        elif kind == "remapIdentity":
            for f in ("prefix", "signedPrefix"):
                _scope(ident[f], f"{where}.{f}")
                if ident[f] == "" or ident[f].startswith("*.") or "@" in ident[f]:
                    raise ConfigError(f"{where}.{f}: a host, namespace or repository")
    except (BerthError, AttributeError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where}: {e}") from None
    return out


def identity_matches(ident, image, signed_text):
    """Whether the docker-reference a signature names is acceptable for
    image (a parsed reference) under signedIdentity ident."""
    try:
        signed = names.parse(signed_text)
    except BerthError:
        return False
    kind = ident["type"]
    if kind == "remapIdentity":
        image = _remapped(image, ident["prefix"], ident["signedPrefix"])
        kind = "matchRepoDigestOrExact"
    if kind == "matchExact":
        return str(signed) == str(image)
    if kind == "matchRepoDigestOrExact":
        if image.digest is not None and image.tag is None:
            return signed.name == image.name
        return str(signed) == str(image)
    if kind == "matchRepository":
        return signed.name == image.name
    if kind == "exactReference":
        return str(signed) == ident["dockerReference"]
    if kind == "exactRepository":
        return signed.name == ident["dockerRepository"]
    return False


def _remapped(image, prefix, signed_prefix):
    text = str(image)
    if not text.startswith(prefix) or text[len(prefix):len(prefix) + 1] not in ("/", ":", "@"):
        return image
    try:
        return names.parse(signed_prefix + text[len(prefix):])
    except BerthError:
        return image


# registries.d

def attachments_enabled(registries_d, r):
    """(read sigstore attachments for r?, why not) under registries_d."""
    if not os.path.isdir(registries_d):
        return True, ""
    default, scopes = _registries_d(registries_d)
    parts = r.name.split("/")
    for i in range(len(parts), 0, -1):
        scope = "/".join(parts[:i])
        if scope in scopes:
            return _enabled(scopes[scope], f"docker[{scope!r}]", registries_d)
    if default is not None:
        return _enabled(default, "default-docker", registries_d)
    return False, f"{registries_d} has no entry for {r.name}"


def _enabled(entry, scope, registries_d):
    if entry.get("use-sigstore-attachments") is True:
        return True, ""
    return False, f"{registries_d}: {scope} does not set use-sigstore-attachments: true"


def _registries_d(path):
    try:
        import yaml
    except ImportError:
        raise BerthError(f"reading {path} needs the python package pyyaml",
                         hint="pip install pyyaml==6.0.2") from None
    default, scopes = None, {}
    for name in sorted(os.listdir(path)):
        if not name.endswith(".yaml"):
            continue
        f_path = os.path.join(path, name)
        try:
            with open(f_path) as f:
                doc = yaml.safe_load(f.read(1 << 20)) or {}
        except OSError as e:
            raise ConfigError(f"cannot read {f_path}", errno=e.errno) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{f_path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{f_path}: expected a mapping")
        if "default-docker" in doc:
            if default is not None:
                raise ConfigError(f"{f_path}: default-docker is set in another file too")
            default = _entry(doc["default-docker"], f"{f_path}: default-docker")
        table = doc.get("docker") or {}
        if not isinstance(table, dict):
            raise ConfigError(f"{f_path}: docker must be a mapping")
        for scope, entry in table.items():
            if scope in scopes:
                raise ConfigError(f"{f_path}: docker scope {scope!r} is set in another file too")
            scopes[scope] = _entry(entry, f"{f_path}: docker[{scope!r}]")
    return default, scopes


def _entry(entry, where):
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping")
    flag = entry.get("use-sigstore-attachments")
    if flag is not None and not isinstance(flag, bool):
        raise ConfigError(f"{where}: use-sigstore-attachments must be true or false")
    return entry


# evaluation

def evaluate(pol, r, shown, sigs, no_sigs_why=""):
    """Raise Untrusted unless every requirement for r (None: an image
    without a name) accepts; sigs are the image's sigstore Signatures."""
    from berth.engine.images.trust import Untrusted
    reqs, scope = pol.requirements(r)
    for req in reqs:
        if req.kind == ACCEPT:
            continue
        if req.kind == REJECT:
            raise Untrusted(f"image {shown} is rejected by policy {pol.path} for {scope}")
        if r is None:
            raise Untrusted(f"image {shown} has no name to check its signatures' identity "
                            f"against (policy {pol.path} requires {SIGSTORE} for {scope})")
        reasons = []
        for i, s in enumerate(sigs):
            try:
                accepts(req, r, s, f"signature {i}")
                break
            except Untrusted as e:
                reasons.append(str(e))
        else:
            why = "; ".join(reasons) or no_sigs_why or "the image has no sigstore signatures"
            raise Untrusted(f"image {shown} is not signed by a trusted key (policy {pol.path} "
                            f"requires {SIGSTORE} for {scope}): {why}")


def accepts(req, r, s, what):
    from berth.engine.images.sigstore import parse_payload, signature_matches
    from berth.engine.images.trust import Untrusted
    if not any(signature_matches(key, s.signature, s.payload) for _, key in req.keys):
        if s.keyless:
            raise Untrusted(f"{what} was made keyless (Fulcio certificate), which berth "
                            "does not verify")
        raise Untrusted(f"{what} does not verify under "
                        + ", ".join(os.path.basename(n) for n, _ in req.keys))
    signed_ref, digest = parse_payload(s.payload, what)
    if digest != s.manifest:
        raise Untrusted(f"{what} is for manifest {digest}, not {s.manifest}")
    if not identity_matches(req.identity, r, signed_ref):
        raise Untrusted(f"{what} names {signed_ref}, not {r} "
                        f"(signedIdentity {req.identity['type']})")
