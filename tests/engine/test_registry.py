"""Pull and push against Debian's docker-registry (distribution 2.8) started
on 127.0.0.1 per test, plus a small fake registry with token auth and blob
redirects (the real registry's token auth needs a signing cert bundle; the
fake one exercises the same client code path)."""
import base64
import hashlib
import http.client
import http.server
import os
import re
import socket
import threading
import uuid

import pytest

from berth.engine.images import archive, registry
from berth.engine.images.store import Store
from berth.errors import BerthError, NotFound
from berth.oci import jsonio
import registry_proc
from shared_dir import FIXTURES

BUSYBOX_TAR = FIXTURES / "images" / "busybox-1.38.tar"
BUSYBOX = "sha256:c6348fa86ba0fb2108c9334f5fe913ddc6d853313e655891f133a0127c30099f"

pytestmark = pytest.mark.skipif(not BUSYBOX_TAR.exists(), reason="image fixtures missing")
need_registry = pytest.mark.skipif(not registry_proc.installed(),
                                   reason="docker-registry is not installed")


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def empty(store):
    return (store.images() == [] and store._load_tags() == {}
            and os.listdir(os.path.join(store.root, "blobs", "sha256")) == []
            and os.listdir(os.path.join(store.root, "tmp")) == [])


@pytest.fixture
def busybox_store(tmp_path):
    store = Store(str(tmp_path / "src-store"))
    with open(BUSYBOX_TAR, "rb") as f:
        assert archive.load(store, f) == [BUSYBOX]
    return store


@pytest.fixture
def fresh_store(tmp_path):
    return Store(str(tmp_path / "dst-store"))


class Registry(registry_proc.Registry):
    """The registry with helpers to put blobs and manifests and find a blob's
    file in its storage."""

    def put_blob(self, repo, data):
        digest = sha(data)
        status, h, _ = self.raw("POST", f"/v2/{repo}/blobs/uploads/")
        assert status == 202
        loc = h["Location"]
        loc += ("&" if "?" in loc else "?") + f"digest={digest}"
        path = loc.split(self.host, 1)[-1]
        status, _, body = self.raw("PUT", path, data,
                                   {"Content-Type": "application/octet-stream"})
        assert status == 201, body
        return digest

    def put_manifest(self, repo, ref, data, mt):
        status, h, body = self.raw("PUT", f"/v2/{repo}/manifests/{ref}", data,
                                   {"Content-Type": mt})
        assert status == 201, body
        return h["Docker-Content-Digest"]

    def blob_file(self, digest):
        hx = digest[7:]
        return os.path.join(self.root, "docker", "registry", "v2", "blobs", "sha256",
                            hx[:2], hx, "data")


@pytest.fixture
def reg(tmp_path):
    with registry_proc.running(tmp_path, cls=Registry) as r:
        yield r


def layer_of(store, image_id):
    return store.record(image_id)["layers"][0]


@need_registry
def test_push_then_pull_gives_the_same_image(reg, busybox_store, fresh_store):
    ref = f"{reg.host}/test/busybox:1.38"
    busybox_store.tag(BUSYBOX, ref)
    events = []
    digest = registry.push(busybox_store, ref, progress=events.append)
    assert digest.startswith("sha256:")
    layer = layer_of(busybox_store, BUSYBOX)
    pushing = [e for e in events if e.get("status") == "Pushing" and e["id"] == layer[7:19]]
    assert len(pushing) > 2
    assert pushing[-1]["current"] == pushing[-1]["total"] == busybox_store.blob_size(layer)

    events = []
    image_id = registry.pull(fresh_store, ref, progress=events.append)
    assert image_id == BUSYBOX
    assert fresh_store.resolve(ref) == BUSYBOX
    assert fresh_store.inspect(BUSYBOX)["RepoDigests"] == [f"{reg.host}/test/busybox@{digest}"]
    assert fresh_store.record(BUSYBOX)["diff_ids"] == busybox_store.record(BUSYBOX)["diff_ids"]
    statuses = [(e.get("id"), e["status"]) for e in events]
    assert (layer[7:19], "Download complete") in statuses
    assert (layer[7:19], "Pull complete") in statuses
    down = [e for e in events if e.get("status") == "Downloading"]
    assert down[-1]["current"] == down[-1]["total"] == fresh_store.blob_size(layer)
    assert os.listdir(os.path.join(fresh_store.root, "tmp")) == []

    # a second push finds every blob there already
    events = []
    assert registry.push(busybox_store, ref, progress=events.append) == digest
    assert [e["status"] for e in events if e.get("id") == layer[7:19]] == ["Layer already exists"]
    # and a second pull downloads nothing
    events = []
    assert registry.pull(fresh_store, ref, progress=events.append) == BUSYBOX
    assert not [e for e in events if e["status"] == "Downloading"]
    assert events[-1]["status"] == f"Status: Image is up to date for {ref}"


@need_registry
def test_pull_by_digest_and_chunked_push(reg, busybox_store, fresh_store):
    ref = f"{reg.host}/test/chunked:v1"
    busybox_store.tag(BUSYBOX, ref)
    digest = registry.push(busybox_store, ref, chunk_size=1 << 20)
    by_digest = f"{reg.host}/test/chunked@{digest}"
    assert registry.pull(fresh_store, by_digest) == BUSYBOX
    assert fresh_store.resolve(by_digest) == BUSYBOX
    assert fresh_store._load_tags() == {}  # a digest pull tags nothing


@need_registry
def test_missing_manifest_and_repository(reg, fresh_store):
    with pytest.raises(NotFound) as e:
        registry.pull(fresh_store, f"{reg.host}/test/nothing:here")
    msg = str(e.value)
    assert f"registry {reg.host}" in msg and "repository test/nothing" in msg
    assert "manifest unknown" in msg and "404" in msg
    assert empty(fresh_store)


@need_registry
def test_tampered_blob_fails_and_adds_nothing(reg, busybox_store, fresh_store):
    ref = f"{reg.host}/test/tamper:1"
    busybox_store.tag(BUSYBOX, ref)
    registry.push(busybox_store, ref)
    layer = layer_of(busybox_store, BUSYBOX)
    path = reg.blob_file(layer)
    with open(path, "r+b") as f:
        f.seek(4096)
        b = f.read(1)
        f.seek(4096)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(BerthError) as e:
        registry.pull(fresh_store, ref)
    assert layer in str(e.value) and "does not match its digest" in str(e.value)
    assert empty(fresh_store)


@need_registry
def test_manifest_list_picks_the_host_platform(reg, busybox_store, fresh_store):
    repo = "test/multi"
    ref = f"{reg.host}/{repo}:amd"
    busybox_store.tag(BUSYBOX, ref)
    amd_digest = registry.push(busybox_store, ref)
    _, _, amd_manifest = reg.raw("GET", f"/v2/{repo}/manifests/{amd_digest}",
                                 headers={"Accept": registry.ACCEPT})
    # an arm64 twin: same layer, a config that says arm64 (so another id)
    cfg = busybox_store.config(BUSYBOX)
    cfg["architecture"] = "arm64"
    cfg_bytes = jsonio.dumps(cfg).encode()
    arm_id = reg.put_blob(repo, cfg_bytes)
    m = jsonio.loads(amd_manifest)
    m["config"] = dict(m["config"], digest=arm_id, size=len(cfg_bytes))
    arm_bytes = jsonio.dumps(m).encode()
    arm_digest = reg.put_manifest(repo, sha(arm_bytes), arm_bytes, m["mediaType"])
    index = {"schemaVersion": 2,
             "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
             "manifests": [
                 {"mediaType": m["mediaType"], "digest": arm_digest, "size": len(arm_bytes),
                  "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
                 {"mediaType": m["mediaType"], "digest": amd_digest, "size": len(amd_manifest),
                  "platform": {"architecture": "amd64", "os": "linux"}}]}
    index_bytes = jsonio.dumps(index).encode()
    index_digest = reg.put_manifest(repo, "multi", index_bytes, index["mediaType"])
    want = {"amd64": BUSYBOX, "arm64": arm_id}.get(registry._host_arch())
    if want is None:
        pytest.skip("host architecture is neither amd64 nor arm64")
    got = registry.pull(fresh_store, f"{reg.host}/{repo}:multi")
    assert got == want
    # the repo digest is the one the tag points at: the list's
    assert fresh_store.inspect(got)["RepoDigests"] == [f"{reg.host}/{repo}@{index_digest}"]


class CuttingProxy:
    """TCP proxy to the registry that cuts the first response carrying a
    given blob after `cut_after` bytes and records every request head."""

    def __init__(self, target_port, blob_digest, cut_after, every=False):
        self.every = every
        self.target = target_port
        self.blob = blob_digest.encode()
        self.cut_after = cut_after
        self.cut_done = False
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.threads = []
        self.conns = []
        self.lock = threading.Lock()
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [c, up]
            state = {"cut": False}
            for args in ((c, up, True, state), (up, c, False, state)):
                t = threading.Thread(target=self._pipe, args=args, daemon=True)
                t.start()
                self.threads.append(t)

    def _pipe(self, src, dst, upstream, state):
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    with self.lock:
                        self.requests.append(data.split(b"\r\n\r\n")[0].decode("latin-1"))
                        if ((self.every or not self.cut_done)
                                and b"GET " in data and self.blob in data):
                            self.cut_done = True
                            state["cut"] = True
                elif state["cut"]:
                    if sent + len(data) >= self.cut_after:
                        dst.sendall(data[:self.cut_after - sent])
                        break
                    sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.sock.close()
        for s in self.conns:
            s.close()
        for t in self.threads:
            t.join(5)


@need_registry
def test_dropped_blob_transfer_resumes_with_range(reg, busybox_store, fresh_store):
    busybox_store.tag(BUSYBOX, f"{reg.host}/test/resume:1")
    registry.push(busybox_store, f"{reg.host}/test/resume:1")
    layer = layer_of(busybox_store, BUSYBOX)
    size = busybox_store.blob_size(layer)
    proxy = CuttingProxy(reg.port, layer, cut_after=size // 2)
    try:
        events = []
        got = registry.pull(fresh_store, f"127.0.0.1:{proxy.port}/test/resume:1",
                            progress=events.append)
    finally:
        proxy.stop()
    assert got == BUSYBOX
    assert proxy.cut_done
    ranges = [r for r in proxy.requests if layer in r and "range: bytes=" in r.lower()]
    assert len(ranges) == 1
    start = int(re.search(r"(?i)range: bytes=(\d+)-", ranges[0]).group(1))
    assert 0 < start <= size // 2
    # the bytes before the cut were not fetched again
    currents = [e["current"] for e in events if e.get("status") == "Downloading"]
    assert currents == sorted(currents) and currents[-1] == size
    assert os.listdir(os.path.join(fresh_store.root, "tmp")) == []


# token auth, basic credentials, blob redirects: a fake registry

class FakeRegistry(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.port = self.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.blobs = {}
        self.manifests = {}
        self.uploads = {}
        self.tokens = {}
        self.token_requests = []
        self.cdn_auth = []
        self.user = ("alice", "s3cret")


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _err(self, status, code):
        body = jsonio.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
        self._send(status, body, [("Content-Type", "application/json")])

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n)

    def _authorized(self, need):
        srv = self.server
        h = self.headers.get("Authorization") or ""
        scope = srv.tokens.get(h[len("Bearer "):]) if h.startswith("Bearer ") else None
        if scope is not None and need in scope.split(":")[-1].split(","):
            return True
        self._body()
        realm = f"http://127.0.0.1:{srv.port}/token"
        self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', [
            ("WWW-Authenticate", f'Bearer realm="{realm}",service="fake",scope="x"')])
        return False

    def _route(self):
        srv = self.server
        path, _, query = self.path.partition("?")
        if path == "/token":
            srv.token_requests.append(query)
            expect = "Basic " + base64.b64encode(":".join(srv.user).encode()).decode()
            if self.headers.get("Authorization") != expect:
                return self._send(401, b"{}")
            scope = dict(p.split("=", 1) for p in query.split("&"))["scope"].replace("%3A", ":") \
                .replace("%2C", ",").replace("%2F", "/")
            tok = uuid.uuid4().hex
            srv.tokens[tok] = scope
            return self._send(200, jsonio.dumps({"token": tok}).encode())
        if path.startswith("/cdn/"):
            srv.cdn_auth.append(self.headers.get("Authorization"))
            data = srv.blobs.get(path[5:])
            return self._send(200, data) if data is not None else self._err(404, "BLOB_UNKNOWN")
        need = "pull" if self.command in ("GET", "HEAD") else "push"
        if not self._authorized(need):
            return
        if path == "/v2/":
            return self._send(200, b"{}")
        m = re.match(r"/v2/(.+)/(manifests|blobs)/(.+)\Z", path)
        if not m:
            return self._err(404, "NAME_UNKNOWN")
        repo, kind, rest = m.groups()
        if kind == "manifests":
            if self.command == "PUT":
                data = self._body()
                d = sha(data)
                srv.manifests[(repo, rest)] = srv.manifests[(repo, d)] = (
                    data, self.headers["Content-Type"])
                return self._send(201, headers=[("Docker-Content-Digest", d)])
            got = srv.manifests.get((repo, rest))
            if got is None:
                return self._err(404, "MANIFEST_UNKNOWN")
            return self._send(200, got[0], [("Content-Type", got[1])])
        if rest.startswith("uploads/"):
            uid = rest[len("uploads/"):]
            if self.command == "POST":
                uid = uuid.uuid4().hex
                srv.uploads[uid] = bytearray()
                return self._send(202, headers=[("Location", f"/v2/{repo}/blobs/uploads/{uid}")])
            buf = srv.uploads[uid]
            buf += self._body()
            if self.command == "PATCH":
                return self._send(202, headers=[("Location", f"/v2/{repo}/blobs/uploads/{uid}"),
                                                ("Range", f"0-{len(buf) - 1}")])
            digest = dict(p.split("=", 1) for p in query.split("&"))["digest"].replace("%3A", ":")
            if sha(bytes(buf)) != digest:
                return self._err(400, "DIGEST_INVALID")
            srv.blobs[digest] = bytes(buf)
            return self._send(201, headers=[("Docker-Content-Digest", digest)])
        if rest not in srv.blobs:
            return self._err(404, "BLOB_UNKNOWN")
        if self.command == "HEAD":
            return self._send(200, headers=[("Docker-Content-Digest", rest)])
        return self._send(307, headers=[("Location", f"http://localhost:{srv.port}/cdn/{rest}")])

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _route


@pytest.fixture
def fake():
    srv = FakeRegistry()
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_token_auth_push_and_pull_with_redirected_blobs(fake, busybox_store, fresh_store):
    ref = f"{fake.host}/team/app:1"
    busybox_store.tag(BUSYBOX, ref)
    digest = registry.push(busybox_store, ref, auth=("alice", "s3cret"), chunk_size=1 << 20)
    assert any("scope=repository%3Ateam%2Fapp%3Apull%2Cpush" in q for q in fake.token_requests)
    assert all("service=fake" in q for q in fake.token_requests)
    assert registry.pull(fresh_store, ref, auth={"username": "alice", "password": "s3cret"}) \
        == BUSYBOX
    assert fresh_store.inspect(BUSYBOX)["RepoDigests"] == [f"{fake.host}/team/app@{digest}"]
    # blobs came through the redirect, which was on another host name: no credentials sent
    assert len(fake.cdn_auth) == 2 and fake.cdn_auth == [None, None]


def test_wrong_or_missing_credentials(fake, busybox_store, fresh_store):
    ref = f"{fake.host}/team/app:1"
    with pytest.raises(BerthError) as e:
        registry.pull(fresh_store, ref, auth=("alice", "wrong"))
    msg = str(e.value)
    assert "401" in msg and f"registry {fake.host}" in msg and "team/app" in msg
    assert "check user name and password" in msg
    with pytest.raises(BerthError) as e:
        registry.pull(fresh_store, ref)
    assert "401" in str(e.value) and "log in" in str(e.value)
    busybox_store.tag(BUSYBOX, ref)
    with pytest.raises(BerthError):
        registry.push(busybox_store, ref, auth=("bob", "nope"))
    assert empty(fresh_store) and fake.blobs == {}


def test_plain_http_only_to_loopback(busybox_store, fresh_store):
    with pytest.raises(BerthError) as e:
        registry._Client(registry.names.parse("127.0.0.1:1/x:1"), None, "pull", True) \
            ._check_url("http://example.com/v2/")
    assert "plain http" in str(e.value) and "example.com" in str(e.value)


@need_registry
def test_interrupted_pull_is_continued_by_the_next_one(reg, busybox_store, fresh_store):
    ref = f"{reg.host}/test/again:1"
    busybox_store.tag(BUSYBOX, ref)
    registry.push(busybox_store, ref)
    layer = layer_of(busybox_store, BUSYBOX)
    size = busybox_store.blob_size(layer)
    tmp = os.path.join(fresh_store.root, "tmp")
    # every transfer of the layer breaks: the pull gives up
    proxy = CuttingProxy(reg.port, layer, cut_after=100_000, every=True)
    try:
        with pytest.raises(BerthError) as e:
            registry.pull(fresh_store, f"127.0.0.1:{proxy.port}/test/again:1")
    finally:
        proxy.stop()
    assert "transfer broke" in str(e.value) and layer in str(e.value)
    assert fresh_store.images() == [] and fresh_store._load_tags() == {}
    left = os.listdir(tmp)
    assert len(left) == 1 and left[0].endswith(layer[7:])
    have = os.path.getsize(os.path.join(tmp, left[0]))
    assert 0 < have < size
    # as if a process that died left it
    os.rename(os.path.join(tmp, left[0]), os.path.join(tmp, f"pull.999999999.{layer[7:]}"))
    proxy = CuttingProxy(reg.port, "sha256:none", cut_after=0)
    try:
        assert registry.pull(fresh_store, f"127.0.0.1:{proxy.port}/test/again:1") == BUSYBOX
    finally:
        proxy.stop()
    ranges = [r for r in proxy.requests if layer in r]
    assert len(ranges) == 1 and f"range: bytes={have}-" in ranges[0].lower()
    assert os.listdir(tmp) == []
