"""The registry v2 HTTP client: urls, auth (basic and bearer tokens),
requests with redirects, manifests, and the login check.

Plain http is spoken only to registries on loopback; everything else is
https with the default certificate checks."""
import base64
import hashlib
import http.client
import ipaddress
import urllib.parse

from berth.engine.images import names
from berth.engine.images.oci_layout import (
    MANIFESTS, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST, _host_arch)
from berth.errors import BerthError, NotFound
from berth.oci import jsonio

DOCKER_HUB = "registry-1.docker.io"
ACCEPT = ", ".join([MT_OCI_MANIFEST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_DOCKER_LIST])
_JSON_MAX = 16 << 20
_REDIRECTS = 5
_TIMEOUT = 60

# small pure helpers (unit tested)

def is_loopback(host):
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(registry):
    """("host", port or None) of "host[:port]" or "[v6]:port"."""
    if registry.startswith("["):
        host, _, rest = registry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    host, sep, port = registry.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return registry, None


def base_url(registry, insecure_loopback_ok=True):
    """scheme://host[:port] the API of registry lives at."""
    if registry == names.DEFAULT_REGISTRY:
        registry = DOCKER_HUB
    host, _ = split_host(registry)
    scheme = "http" if insecure_loopback_ok and is_loopback(host) else "https"
    return f"{scheme}://{registry}"


def manifest_path(repository, reference):
    return f"/v2/{repository}/manifests/{reference}"


def blob_path(repository, digest):
    return f"/v2/{repository}/blobs/{digest}"


def upload_path(repository):
    return f"/v2/{repository}/blobs/uploads/"


def with_query(url, **params):
    """url with params added to its query (an upload Location may carry one)."""
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urllib.parse.urlunsplit(parts._replace(query=query))


def parse_www_authenticate(header):
    """("bearer", {"realm": ..., ...}) from a WWW-Authenticate value; the
    scheme is lowercased, quoted values may hold commas and escapes."""
    if not header or not header.strip():
        raise BerthError("www-authenticate: empty challenge")
    text = header.strip()
    scheme, _, rest = text.partition(" ")
    params = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,\t":
            i += 1
        j = rest.find("=", i)
        if j < 0:
            break
        key = rest[i:j].strip().lower()
        i = j + 1
        if i < n and rest[i] == '"':
            i += 1
            val = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                val.append(rest[i])
                i += 1
            i += 1
            value = "".join(val)
        else:
            j = i
            while j < n and rest[j] != ",":
                j += 1
            value = rest[i:j].strip()
            i = j
        if key:
            params[key] = value
    return scheme.lower(), params


def select_platform(index, os_name="linux", arch=None, variant=None, what="manifest list"):
    """The descriptor in an index or manifest list for os/arch (the host's
    architecture by default); an exact variant wins over a missing one."""
    arch = arch or _host_arch()
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise BerthError(f"{what}: manifests must be a list")
    best = None
    for m in entries:
        if not isinstance(m, dict) or m.get("mediaType", MT_OCI_MANIFEST) not in MANIFESTS:
            continue
        p = m.get("platform") or {}
        if p.get("os") != os_name or p.get("architecture") != arch:
            continue
        if variant is None or p.get("variant") == variant:
            return m
        if best is None and not p.get("variant"):
            best = m
    if best is not None:
        return best
    have = sorted({f"{(m.get('platform') or {}).get('os')}/{(m.get('platform') or {}).get('architecture')}"
                   for m in entries if isinstance(m, dict)})
    raise NotFound(f"{what}: no manifest for {os_name}/{arch}"
                   + (f"/{variant}" if variant else ""),
                   hint=f"the image is published for {', '.join(have) or 'no platform'}")


def _basic(auth):
    if auth is None:
        return None
    if isinstance(auth, dict):
        if auth.get("auth"):
            return "Basic " + auth["auth"]
        user, pw = auth.get("username"), auth.get("password")
    else:
        user, pw = auth
    if not user:
        return None
    return "Basic " + base64.b64encode(f"{user}:{pw or ''}".encode()).decode()


def _sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _short(digest):
    return digest[7:19]


class _Client:
    """Requests against one repository, with the auth dance done once and
    reused (a token per repository and set of actions)."""

    def __init__(self, ref, auth, actions, insecure_loopback_ok):
        self.ref = ref
        self.base = base_url(ref.registry, insecure_loopback_ok)
        self.insecure_loopback_ok = insecure_loopback_ok
        self.basic = _basic(auth)
        self.actions = actions
        self.authz = None
        self.what = f"registry {ref.registry}, repository {ref.repository}"

    # transport

    def _check_url(self, url):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BerthError(f"{self.what}: refusing url {url!r}")
        if parts.scheme == "http" and not (self.insecure_loopback_ok
                                           and is_loopback(parts.hostname)):
            raise BerthError(f"{self.what}: refusing plain http to {parts.hostname}",
                             hint="only registries on loopback are spoken to without tls")
        return parts

    def _send(self, method, url, headers, body=None):
        parts = self._check_url(url)
        if parts.scheme == "https":
            import ssl
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=_TIMEOUT,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=_TIMEOUT)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise BerthError(f"{self.what}: {method} {parts.scheme}://{parts.netloc}{parts.path}"
                             f" failed: {e}") from None
        return _Resp(resp, conn)

    def url(self, path):
        return path if "://" in path else self.base + path

    def request(self, method, path, headers=None, body=None, redirects=False):
        """A response (body not read). body may be a callable returning a
        fresh body, so the request can be repeated after a 401."""
        url = self.url(path)
        headers = dict(headers or {})
        for attempt in range(2):
            h = dict(headers)
            if self.authz:
                h["Authorization"] = self.authz
            resp = self._send(method, url, h, body() if callable(body) else body)
            if resp.status != 401 or attempt == 1:
                break
            challenge = resp.getheader("WWW-Authenticate")
            resp.read()
            resp.close()
            if not challenge:
                break
            self.authenticate(challenge)
        if resp.status == 401:
            _drain(resp)
            raise BerthError(f"{self.what}: {method} {urllib.parse.urlsplit(url).path}: "
                             "401 unauthorized",
                             hint="credentials were rejected; check user name and password"
                             if self.basic else "the registry wants credentials; log in first")
        hops = 0
        while redirects and resp.status in (301, 302, 303, 307, 308):
            hops += 1
            loc = resp.getheader("Location")
            _drain(resp)
            if not loc or hops > _REDIRECTS:
                raise BerthError(f"{self.what}: too many or empty redirects for {path}")
            url = urllib.parse.urljoin(url, loc)
            h = dict(headers)
            # credentials stay with the registry; a blob store gets none
            if self.authz and urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(self.base).netloc:
                h["Authorization"] = self.authz
            resp = self._send(method, url, h)
        return resp

    def authenticate(self, challenge):
        scheme, params = parse_www_authenticate(challenge)
        if scheme == "basic":
            if self.basic is None:
                raise BerthError(f"{self.what}: the registry wants credentials (basic auth)",
                                 hint="log in to the registry first")
            self.authz = self.basic
            return
        if scheme != "bearer" or not params.get("realm"):
            raise BerthError(f"{self.what}: unsupported auth challenge {challenge!r}")
        query = {}
        if params.get("service"):
            query["service"] = params["service"]
        query["scope"] = f"repository:{self.ref.repository}:{self.actions}"
        url = with_query(params["realm"], **query)
        h = {"Accept": "application/json"}
        if self.basic:
            h["Authorization"] = self.basic
        resp = self._send("GET", url, h)
        data = _read_small(resp)
        if resp.status == 401:
            if self.basic:
                raise BerthError(f"{self.what}: token server {params['realm']} refused the "
                                 "credentials (401 unauthorized)",
                                 hint="check user name and password")
            raise BerthError(f"{self.what}: token server {params['realm']} gives no "
                             "anonymous token (401 unauthorized)",
                             hint="the registry wants credentials; log in first")
        if resp.status != 200:
            raise BerthError(f"{self.what}: token server {params['realm']} answered "
                             f"{resp.status} {resp.reason}")
        doc = jsonio.loads(data, f"token from {params['realm']}")
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise BerthError(f"{self.what}: token server {params['realm']} sent no token")
        self.authz = "Bearer " + token

    # api

    def fail(self, resp, doing, data=None):
        if data is None:
            data = _read_small(resp, 1 << 16)
        code, msg = _error_of(data)
        text = f"{self.what}: {doing}: {resp.status} {resp.reason}"
        if code:
            text += f" ({code.lower().replace('_', ' ')}{': ' + msg if msg and msg.lower() != code.lower().replace('_', ' ') else ''})"
        cls = NotFound if resp.status == 404 else BerthError
        return cls(text)

    def ping(self):
        resp = self.request("GET", "/v2/")
        data = _read_small(resp, 1 << 16)
        if resp.status != 200:
            raise self.fail(resp, "ping /v2/", data)

    def manifest(self, reference):
        """(bytes, media type, digest) of a manifest, checked against the
        digest when reference is one."""
        resp = self.request("GET", manifest_path(self.ref.repository, reference),
                            {"Accept": ACCEPT})
        if resp.status != 200:
            raise self.fail(resp, f"manifest {reference}")
        data = _read_small(resp)
        digest = _sha(data)
        if names.is_digest(reference) and digest != reference:
            raise BerthError(f"{self.what}: manifest {reference} hashes to {digest}",
                             hint="the registry or something in between altered it")
        said = resp.getheader("Docker-Content-Digest")
        if said and names.is_digest(said) and said != digest:
            raise BerthError(f"{self.what}: manifest {reference} hashes to {digest}, "
                             f"the registry says {said}")
        mt = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        doc = jsonio.loads(data, f"{self.what}: manifest {reference}")
        if not isinstance(doc, dict):
            raise BerthError(f"{self.what}: manifest {reference}: expected a json object")
        mt = doc.get("mediaType") or mt
        return doc, mt, digest

    def open_blob(self, digest, offset):
        h = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.request("GET", blob_path(self.ref.repository, digest), h, redirects=True)
        if resp.status not in (200, 206):
            raise self.fail(resp, f"blob {digest}")
        return resp


class _Resp:
    """A response that closes its connection when it is closed (each
    request has its own connection)."""

    def __init__(self, resp, conn):
        self._resp = resp
        self._conn = conn
        self.status = resp.status
        self.reason = resp.reason

    def getheader(self, name, default=None):
        return self._resp.getheader(name, default)

    def read(self, n=None):
        return self._resp.read(n)

    def close(self):
        self._resp.close()
        self._conn.close()


def _drain(resp):
    try:
        resp.read(1 << 16)
    except (OSError, http.client.HTTPException):
        pass
    resp.close()


def _read_small(resp, limit=_JSON_MAX):
    try:
        data = resp.read(limit + 1)
    except (OSError, http.client.HTTPException) as e:
        resp.close()
        raise BerthError(f"reading a registry response failed: {e}") from None
    resp.close()
    if len(data) > limit:
        raise BerthError(f"registry response is larger than {limit} bytes")
    return data


def _error_of(data):
    try:
        doc = jsonio.loads(data)
        e = doc["errors"][0]
        return str(e.get("code") or ""), str(e.get("message") or "")
    except Exception:
        return "", ""



# login

class LoginRefused(BerthError):
    """The registry said 401 to these credentials."""


def login(registry, auth, insecure_loopback_ok=True):
    """Checks credentials the way `docker login` does: /v2/ answered 200
    with them (basic auth, or a token the registry's token server gives
    for them without a scope). Raises LoginRefused when they are not."""
    from berth.engine.images.names import Ref
    c = _Client(Ref(registry, "login"), auth, "", insecure_loopback_ok)
    resp = c._send("GET", c.url("/v2/"), {})
    challenge = resp.getheader("WWW-Authenticate")
    _drain(resp)
    if resp.status == 200:
        return
    if resp.status != 401 or not challenge:
        raise BerthError(f"login to {registry}: /v2/ answered {resp.status} {resp.reason}")
    scheme, params = parse_www_authenticate(challenge)
    refused = f"login attempt to {c.base}/v2/ failed with status: 401 Unauthorized"
    if c.basic is None:
        raise LoginRefused(refused, hint="give a user name and password")
    if scheme == "bearer" and params.get("realm"):
        url = with_query(params["realm"], **({"service": params["service"]}
                                             if params.get("service") else {}))
        resp = c._send("GET", url, {"Authorization": c.basic, "Accept": "application/json"})
        _drain(resp)
        if resp.status == 200:
            return
        raise LoginRefused(refused)
    resp = c._send("GET", c.url("/v2/"), {"Authorization": c.basic})
    _drain(resp)
    if resp.status != 200:
        raise LoginRefused(refused)
