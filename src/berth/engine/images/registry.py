"""Pull and push over the OCI distribution API (registry v2).

Plain http is spoken only to registries on loopback; everything else is
https with the default certificate checks. Blobs stream straight into the
store with their digest checked on the way, and a connection that drops in
the middle of a blob is picked up again with a Range request. What a failed
or interrupted pull got of a blob stays in the store's tmp/ as
pull.<pid>.<hex>, and the next pull of that blob goes on from there. The store's
writer lock is held from the first blob to the image record, so a failed
pull can collect what it staged and leave the store as it was."""
import base64
import hashlib
import http.client
import ipaddress
import os
import urllib.parse

from berth.engine.images import names
from berth.engine.images.archive import DiffTap, DEFAULT_MAX_BYTES
from berth.engine.images.oci_layout import (
    INDEXES, LAYERS, MANIFESTS, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX,
    MT_OCI_MANIFEST, _host_arch)
from berth.engine.images.store import check_digest
from berth.errors import BerthError, NotFound
from berth.oci import jsonio

DOCKER_HUB = "registry-1.docker.io"
ACCEPT = ", ".join([MT_OCI_MANIFEST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_DOCKER_LIST])
_JSON_MAX = 16 << 20
_READ = 1 << 16
_RETRIES = 5
_REDIRECTS = 5
_TIMEOUT = 60
_STEP = 256 << 10


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


class _TransferBroken(BerthError):
    """The network gave up on a blob; what arrived is worth keeping."""


class _BlobReader:
    """File-like view of a remote blob that reconnects with a Range
    request when the transfer breaks, so put_blob sees one clean stream."""

    def __init__(self, client, digest, size, report):
        self.client = client
        self.digest = digest
        self.size = size
        self.report = report
        self.offset = 0
        self.resp = None
        self.failures = 0
        self.skip = 0

    def _open(self):
        resp = self.client.open_blob(self.digest, self.offset)
        self.skip = 0
        if self.offset and resp.status == 200:
            # the server ignored Range: read past what we have already
            self.skip = self.offset
        elif self.offset:
            start = (resp.getheader("Content-Range") or "").replace("bytes ", "").split("-")[0]
            if start.strip() != str(self.offset):
                resp.close()
                raise BerthError(f"{self.client.what}: blob {self.digest}: asked for bytes from "
                                 f"{self.offset}, got range {resp.getheader('Content-Range')!r}")
        self.resp = resp

    def _broken(self, why):
        if self.resp is not None:
            self.resp.close()
            self.resp = None
        self.failures += 1
        if self.failures > _RETRIES:
            raise _TransferBroken(f"{self.client.what}: blob {self.digest}: transfer broke "
                             f"{self.failures} times, last at byte {self.offset}: {why}")

    def read(self, n=-1):
        n = _READ if n is None or n < 0 else min(n, _READ)
        if self.resp is None and self.offset >= self.size:
            return b""
        while True:
            if self.resp is None:
                self._open()
            try:
                data = self.resp.read(n)
            except (OSError, http.client.HTTPException) as e:
                self._broken(e)
                continue
            if self.skip:
                cut = min(self.skip, len(data))
                self.skip -= cut
                data = data[cut:]
                if not data and self.skip:
                    continue
            if not data:
                if self.offset < self.size:
                    self._broken("connection closed early")
                    continue
                self.resp.close()
                return b""
            self.offset += len(data)
            self.report(self.offset)
            return data

    def close(self):
        if self.resp is not None:
            self.resp.close()
            self.resp = None


class _Meter:
    """Byte progress for one blob, at most every _STEP bytes and at the end."""

    def __init__(self, progress, short, status, total):
        self.progress, self.short, self.status, self.total = progress, short, status, total
        self.last = -1

    def __call__(self, current):
        if self.progress is None:
            return
        if current - self.last >= _STEP or current == self.total:
            self.last = current
            _progress(self.progress, id=self.short, status=self.status, current=current,
                      total=self.total)


def _progress(progress, **event):
    if progress is not None:
        if "current" in event:
            event["progressDetail"] = {"current": event["current"], "total": event["total"]}
        progress(event)


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


# pull

def describe(ref, *, auth=None, insecure_loopback_ok=True):
    """What GET /distribution/{name}/json tells: (the descriptor of the
    manifest ref names, the platforms it offers: each entry's of a
    manifest list, the image config's of a single image)."""
    r = names.parse(ref) if isinstance(ref, str) else ref
    client = _Client(r, auth, "pull", insecure_loopback_ok)
    reference = r.digest or r.tag
    where = f"{client.what}: manifest {reference}"
    resp = client.request("GET", manifest_path(r.repository, reference), {"Accept": ACCEPT})
    if resp.status != 200:
        raise client.fail(resp, f"manifest {reference}")
    data = _read_small(resp)
    doc = jsonio.loads(data, where)
    if not isinstance(doc, dict):
        raise BerthError(f"{where}: expected a json object")
    mt = doc.get("mediaType") or (resp.getheader("Content-Type") or "").split(";")[0].strip()
    if mt in INDEXES:
        platforms = [m.get("platform") or {} for m in doc.get("manifests") or []
                     if isinstance(m, dict)]
    else:
        digest = check_digest((doc.get("config") or {}).get("digest"), f"{where} config.digest")
        cfg = jsonio.loads(_read_small(client.open_blob(digest, 0)), f"{where} config")
        platforms = [{k: cfg[k] for k in ("architecture", "os", "variant")
                      if isinstance(cfg, dict) and cfg.get(k)}]
    return {"mediaType": mt, "digest": _sha(data), "size": len(data)}, platforms


def pull(store, ref, *, auth=None, progress=None, insecure_loopback_ok=True):
    """Pull ref (name[:tag] or name@digest) into store and return the image
    id. auth: (user, password), or a dict with username/password or auth."""
    r = names.parse(ref) if isinstance(ref, str) else ref
    client = _Client(r, auth, "pull", insecure_loopback_ok)
    reference = r.digest or r.tag
    _progress(progress, status=f"Pulling from {r.familiar_name()}", id=reference)
    client.ping()
    doc, mt, top_digest = client.manifest(reference)
    if mt in INDEXES:
        desc = select_platform(doc, what=f"{client.what}: manifest list {reference}")
        check_digest(desc.get("digest"), f"{client.what}: manifest list entry digest")
        doc, mt, _ = client.manifest(desc["digest"])
    if mt not in MANIFESTS:
        raise BerthError(f"{client.what}: manifest {reference}: media type {mt!r} is not "
                         "an image manifest", hint="schema1 manifests are not supported")
    where = f"{client.what}: manifest {reference}"
    cdesc = doc.get("config")
    ldescs = doc.get("layers")
    if not isinstance(cdesc, dict) or not isinstance(ldescs, list):
        raise BerthError(f"{where}: config and layers are required")
    config_digest = check_digest(cdesc.get("digest"), f"{where} config.digest")
    with store:
        try:
            if not store.has_blob(config_digest):
                _fetch(store, client, config_digest, _size(cdesc, where), None,
                       lambda n: None)
            cfg = store.config(config_digest)
            diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") if isinstance(cfg, dict) else None
            if not isinstance(diff_ids, list) or len(diff_ids) != len(ldescs):
                raise BerthError(f"{where}: layers and config rootfs.diff_ids differ in length")
            layers, sizes = [], []
            for j, ld in enumerate(ldescs):
                d, size = _pull_layer(store, client, ld, diff_ids[j], f"{where} layers[{j}]",
                                      progress)
                layers.append(d)
                sizes.append(size)
            try:
                before = store.record(config_digest).get("repo_digests", [])
            except NotFound:
                before = None
            image_id = store.add_image(config_digest, layers, doc, diff_sizes=sizes,
                                       repo_digests=[f"{r.name}@{top_digest}"])
            if r.tag is not None:
                store.tag(image_id, r.with_tag(r.tag))
        finally:
            store.gc()
    _progress(progress, status=f"Digest: {top_digest}")
    fresh = before is None or f"{r.name}@{top_digest}" not in before
    _progress(progress, status=f"Status: Downloaded newer image for {r.familiar()}" if fresh
              else f"Status: Image is up to date for {r.familiar()}")
    return image_id


def _size(desc, where):
    size = desc.get("size")
    if not isinstance(size, int) or size < 0:
        raise BerthError(f"{where}.size: expected a non-negative integer")
    return size


def _partial(store, digest):
    """Path of this process's partial download of digest, taking over one
    an interrupted pull left behind. Pulls hold the store lock, so no
    other pull can be writing it."""
    tmp = store.tmp_dir()
    mine = os.path.join(tmp, f"pull.{os.getpid()}.{digest[7:]}")
    for name in os.listdir(tmp):
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "pull" and parts[2] == digest[7:]:
            path = os.path.join(tmp, name)
            if path != mine:
                try:
                    os.rename(path, mine)
                except FileNotFoundError:
                    continue
            break
    return mine


class _Resumed:
    """What an earlier pull got of a blob, then the rest from the network,
    copied to the partial file as it goes so a later pull can go on."""

    def __init__(self, path, reader):
        self.reader = reader
        self.out = open(path, "ab")
        self.have = self.out.tell()
        self.replay = open(path, "rb") if self.have else None
        reader.offset = self.have

    def read(self, n=-1):
        if self.replay is not None:
            data = self.replay.read(_READ if n is None or n < 0 else n)
            if data:
                return data
            self.replay.close()
            self.replay = None
        data = self.reader.read(n)
        if data:
            self.out.write(data)
        return data

    def close(self):
        if self.replay is not None:
            self.replay.close()
        self.out.close()
        self.reader.close()


def _fetch(store, client, digest, size, tap, meter):
    """Download a blob into the store, checking its digest and size."""
    path = _partial(store, digest)
    src = _Resumed(path, _BlobReader(client, digest, size, meter))
    if src.have:
        meter(min(src.have, size))
    keep = False
    try:
        return store.put_blob(src, digest, max_bytes=size, tap=tap)
    except BerthError as e:
        keep = isinstance(e, _TransferBroken)
        if "digest mismatch" in str(e):
            raise BerthError(f"{client.what}: blob {digest}: content does not match its digest",
                             hint="the registry's copy is corrupt or was altered") from None
        if "larger than" in str(e) and "uncompressed" not in str(e):
            raise BerthError(f"{client.what}: blob {digest} is larger than the "
                             f"{size} bytes its descriptor says") from None
        raise
    except BaseException:
        keep = True  # interrupted: the next pull picks up from here
        raise
    finally:
        src.close()
        if not keep:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _pull_layer(store, client, ld, want_diff, what, progress):
    if not isinstance(ld, dict) or ld.get("mediaType") not in LAYERS:
        raise BerthError(f"{what}.mediaType: {ld.get('mediaType') if isinstance(ld, dict) else ld!r}"
                         " is not a supported layer type")
    digest = check_digest(ld.get("digest"), f"{what}.digest")
    want_diff = check_digest(want_diff, f"{what}: config diff id")
    size = _size(ld, what)
    short = _short(digest)
    tap = DiffTap(f"{client.what}: layer {digest}", DEFAULT_MAX_BYTES)
    if store.has_blob(digest):
        # the blob is content-addressed; only its diff id and size are needed
        with store.open_blob(digest) as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                tap(chunk)
        _progress(progress, id=short, status="Already exists")
    else:
        _progress(progress, id=short, status="Pulling fs layer")
        _fetch(store, client, digest, size, tap, _Meter(progress, short, "Downloading", size))
        _progress(progress, id=short, status="Verifying Checksum")
        _progress(progress, id=short, status="Download complete")
    diff_id, usize = tap.finish()
    if diff_id != want_diff:
        raise BerthError(f"{what}: blob {digest} uncompresses to {diff_id}, "
                         f"the config says {want_diff}")
    _progress(progress, id=short, status="Pull complete")
    return digest, usize


# push

def push(store, ref, *, auth=None, progress=None, chunk_size=None,
         insecure_loopback_ok=True):
    """Push the image ref names to its registry; returns the manifest
    digest. chunk_size uploads blobs in PATCH chunks of that many bytes
    instead of one PUT."""
    r = names.parse(ref) if isinstance(ref, str) else ref
    if r.tag is None:
        raise BerthError(f"push {r}: a tag is required, a digest cannot be pushed to")
    image_id = store.resolve(str(r))
    rec = store.record(image_id)
    client = _Client(r, auth, "pull,push", insecure_loopback_ok)
    _progress(progress, status=f"The push refers to repository [{r.name}]")
    client.ping()
    manifest = _manifest_for(store, image_id, rec)
    blobs = [(d["digest"], d["size"]) for d in manifest["layers"]]
    blobs.append((manifest["config"]["digest"], manifest["config"]["size"]))
    for digest, size in blobs:
        _push_blob(store, client, digest, size, progress, chunk_size)
    body = jsonio.dumps(manifest).encode()
    digest = _sha(body)
    mt = manifest["mediaType"]
    resp = client.request("PUT", manifest_path(r.repository, r.tag),
                          {"Content-Type": mt, "Content-Length": str(len(body))}, body)
    data = _read_small(resp, 1 << 16)
    if resp.status not in (200, 201):
        raise client.fail(resp, f"manifest PUT {r.tag}", data)
    got = resp.getheader("Docker-Content-Digest")
    if got and got != digest:
        raise BerthError(f"{client.what}: manifest {r.tag}: registry says digest {got}, "
                         f"we sent {digest}")
    _progress(progress, status=f"{r.tag}: digest: {digest} size: {len(body)}")
    return digest


def _manifest_for(store, image_id, rec):
    """The stored manifest if it still describes the stored blobs, else a
    fresh Docker schema2 one."""
    m = rec.get("manifest")
    layers = rec["layers"]
    try:
        ok = (m["mediaType"] in MANIFESTS and m["config"]["digest"] == image_id
              and [d["digest"] for d in m["layers"]] == layers
              and all(d["size"] == store.blob_size(d["digest"]) for d in m["layers"])
              and m["config"]["size"] == store.blob_size(image_id))
    except (KeyError, TypeError):
        ok = False
    if ok:
        return m
    from berth.engine.images.archive import MT_DOCKER_CONFIG, layer_media_kind
    descs = []
    for d in layers:
        with store.open_blob(d) as f:
            kind = "gzip" if f.read(2) == b"\x1f\x8b" else "tar"
        descs.append({"mediaType": layer_media_kind(kind), "size": store.blob_size(d),
                      "digest": d})
    return {"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
            "config": {"mediaType": MT_DOCKER_CONFIG, "size": store.blob_size(image_id),
                       "digest": image_id},
            "layers": descs}


class _Counted:
    """A slice of a store blob as a request body, reporting progress."""

    def __init__(self, f, length, report):
        self.f = f
        self.left = length
        self.report = report
        self.sent = 0

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        self.sent += len(data)
        self.report(len(data))
        return data


def _push_blob(store, client, digest, size, progress, chunk_size):
    short = _short(digest)
    repo = client.ref.repository
    resp = client.request("HEAD", blob_path(repo, digest))
    _drain(resp)
    if resp.status == 200:
        _progress(progress, id=short, status="Layer already exists")
        return
    if resp.status != 404:
        raise client.fail(resp, f"blob HEAD {digest}", b"")
    _progress(progress, id=short, status="Preparing")
    resp = client.request("POST", upload_path(repo), {"Content-Length": "0"}, b"")
    data = _read_small(resp, 1 << 16)
    if resp.status != 202 or not resp.getheader("Location"):
        raise client.fail(resp, f"starting the upload of blob {digest}", data)
    location = urllib.parse.urljoin(client.url(upload_path(repo)), resp.getheader("Location"))
    done = [0]
    meter = _Meter(progress, short, "Pushing", size)

    def report(n):
        done[0] += n
        meter(done[0])

    with store.open_blob(digest) as f:
        if chunk_size:
            offset = 0
            while offset < size:
                n = min(chunk_size, size - offset)
                f.seek(offset)
                body = _Counted(f, n, report)
                resp = client.request("PATCH", location, {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(n),
                    "Content-Range": f"{offset}-{offset + n - 1}"}, body)
                data = _read_small(resp, 1 << 16)
                if resp.status != 202 or not resp.getheader("Location"):
                    raise client.fail(resp, f"uploading blob {digest} at byte {offset}", data)
                location = urllib.parse.urljoin(location, resp.getheader("Location"))
                offset += n
            resp = client.request("PUT", with_query(location, digest=digest),
                                  {"Content-Length": "0"}, b"")
        else:
            def body():
                f.seek(0)
                done[0] = 0
                return _Counted(f, size, report)
            resp = client.request("PUT", with_query(location, digest=digest), {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size)}, body)
    data = _read_small(resp, 1 << 16)
    if resp.status != 201:
        raise client.fail(resp, f"finishing the upload of blob {digest}", data)
    _progress(progress, id=short, status="Pushed")
