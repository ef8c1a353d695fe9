"""Registry client pieces that need no network: challenge parsing, platform
choice, URLs, error messages and the resuming blob reader (driven by a fake
client at the transport seam)."""
import hashlib
import io
import http.client

import pytest

from berth.engine.images import names, registry_blobs, registry_client as registry
from berth.engine.images.store import Store
from berth.errors import BerthError, NotFound

MT = "application/vnd.oci.image.manifest.v1+json"


# WWW-Authenticate

def test_bearer_challenge_with_quoted_commas_and_escapes():
    scheme, p = registry.parse_www_authenticate(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:a/b:pull,push"')
    assert scheme == "bearer"
    assert p == {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                 "scope": "repository:a/b:pull,push"}
    _, p = registry.parse_www_authenticate(r'Bearer realm="x\"y", error=insufficient_scope')
    assert p == {"realm": 'x"y', "error": "insufficient_scope"}


def test_basic_challenge_and_case():
    assert registry.parse_www_authenticate('BASIC Realm="reg"') == ("basic", {"realm": "reg"})
    assert registry.parse_www_authenticate("Basic") == ("basic", {})
    with pytest.raises(BerthError):
        registry.parse_www_authenticate("  ")


# platforms

def _entry(arch, os_name="linux", variant=None, digest="a"):
    p = {"architecture": arch, "os": os_name}
    if variant:
        p["variant"] = variant
    return {"mediaType": MT, "digest": digest, "size": 1, "platform": p}


def test_platform_selection():
    index = {"manifests": [_entry("arm64", variant="v8", digest="arm"),
                           _entry("amd64", os_name="windows", digest="win"),
                           _entry("amd64", digest="amd"),
                           _entry("arm", variant="v6", digest="v6"),
                           _entry("arm", variant="v7", digest="v7")]}
    assert registry.select_platform(index, arch="amd64")["digest"] == "amd"
    assert registry.select_platform(index, arch="arm64")["digest"] == "arm"
    assert registry.select_platform(index, arch="arm", variant="v7")["digest"] == "v7"
    host = registry._host_arch()
    if host == "amd64":
        assert registry.select_platform(index)["digest"] == "amd"
    with pytest.raises(NotFound) as e:
        registry.select_platform(index, arch="s390x")
    assert "linux/s390x" in str(e.value) and "linux/amd64" in str(e.value)


def test_platform_selection_skips_attestations_and_nonsense():
    att = {"mediaType": "application/vnd.in-toto+json", "digest": "att",
           "platform": {"architecture": "amd64", "os": "linux"}}
    assert registry.select_platform({"manifests": [att, _entry("amd64", digest="ok")]},
                                    arch="amd64")["digest"] == "ok"
    with pytest.raises(BerthError):
        registry.select_platform({"manifests": "x"}, arch="amd64")


# urls

def test_scheme_is_http_only_on_loopback():
    assert registry.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert registry.base_url("127.9.8.7:5000") == "http://127.9.8.7:5000"
    assert registry.base_url("localhost:5000") == "http://localhost:5000"
    assert registry.base_url("[::1]:5000") == "http://[::1]:5000"
    assert registry.base_url("localhost:5000", insecure_loopback_ok=False) == "https://localhost:5000"
    assert registry.base_url("registry.example.com:5000") == "https://registry.example.com:5000"
    assert registry.base_url("10.0.0.1:5000") == "https://10.0.0.1:5000"
    assert registry.base_url("docker.io") == "https://registry-1.docker.io"


def test_paths_and_queries():
    assert registry.split_host("h:5000") == ("h", 5000)
    assert registry.split_host("h") == ("h", None)
    assert registry.split_host("[::1]:5") == ("::1", 5)
    r = names.parse("busybox")
    assert registry.manifest_path(r.repository, r.tag) == "/v2/library/busybox/manifests/latest"
    d = "sha256:" + "a" * 64
    assert registry.blob_path("x/y", d) == f"/v2/x/y/blobs/{d}"
    assert registry.upload_path("x/y") == "/v2/x/y/blobs/uploads/"
    assert registry.with_query("http://h/u/1?_state=abc", digest=d) == \
        f"http://h/u/1?_state=abc&digest=sha256%3A{'a' * 64}"
    assert registry.with_query("/u/1", digest="x") == "/u/1?digest=x"


def test_plain_http_redirect_to_the_internet_is_refused():
    c = registry._Client(names.parse("127.0.0.1:5000/a:1"), None, "pull", True)
    c._check_url("http://localhost:9/x")
    with pytest.raises(BerthError) as e:
        c._check_url("http://cdn.example.com/blob")
    assert "plain http" in str(e.value) and "registry 127.0.0.1:5000" in str(e.value)
    with pytest.raises(BerthError):
        c._check_url("file:///etc/passwd")


# error messages

class FakeResp:
    def __init__(self, status, body=b"", headers=None, reason="", fail_at=None):
        self.status = status
        self.reason = reason
        self.headers = headers or {}
        self.body = io.BytesIO(body)
        self.fail_at = fail_at
        self.closed = False

    def getheader(self, name, default=None):
        return self.headers.get(name, default)

    def read(self, n=None):
        if self.fail_at is not None and self.body.tell() >= self.fail_at:
            raise http.client.IncompleteRead(b"")
        if self.fail_at is not None and n is not None:
            n = min(n, self.fail_at - self.body.tell())
        return self.body.read(n)

    def close(self):
        self.closed = True


def test_error_names_registry_repository_and_code():
    c = registry._Client(names.parse("reg.example.com/team/app:1"), None, "pull", True)
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
    e = c.fail(FakeResp(404, body, reason="Not Found"), "manifest 1")
    assert isinstance(e, NotFound)
    assert str(e) == ("registry reg.example.com, repository team/app: manifest 1: "
                      "404 Not Found (manifest unknown)")
    e = c.fail(FakeResp(500, b"oops", reason="Internal Server Error"), "blob x")
    assert type(e) is BerthError and "500 Internal Server Error" in str(e)


def test_basic_credentials_forms():
    assert registry._basic(("u", "p")) == "Basic dTpw"
    assert registry._basic({"username": "u", "password": "p"}) == "Basic dTpw"
    assert registry._basic({"auth": "dTpw"}) == "Basic dTpw"
    assert registry._basic(None) is None


# resuming reader

class FakeClient:
    what = "registry r, repository x"

    def __init__(self, data, cut=(), honour_range=True):
        self.data = data
        self.cuts = list(cut)
        self.honour_range = honour_range
        self.offsets = []

    def open_blob(self, digest, offset):
        self.offsets.append(offset)
        fail_at = self.cuts.pop(0) - offset if self.cuts else None
        if offset and self.honour_range:
            return FakeResp(206, self.data[offset:], fail_at=fail_at, headers={
                "Content-Range": f"bytes {offset}-{len(self.data) - 1}/{len(self.data)}"})
        fail_at = fail_at + offset if fail_at is not None else None
        return FakeResp(200, self.data, fail_at=fail_at)


def _sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.mark.parametrize("honour_range", [True, False])
def test_reader_resumes_after_breaks(tmp_path, honour_range):
    data = bytes(range(256)) * 1000
    client = FakeClient(data, cut=[70000, 150000], honour_range=honour_range)
    seen = []
    rd = registry_blobs._BlobReader(client, _sha(data), len(data), seen.append)
    store = Store(str(tmp_path / "s"))
    assert store.put_blob(rd, _sha(data), max_bytes=len(data)) == _sha(data)
    assert client.offsets == [0, 70000, 150000]
    assert seen == sorted(seen) and seen[-1] == len(data)


def test_reader_gives_up_after_repeated_breaks(tmp_path):
    data = b"x" * 1000
    client = FakeClient(data, cut=[10 * (i + 1) for i in range(20)])
    rd = registry_blobs._BlobReader(client, _sha(data), len(data), lambda n: None)
    store = Store(str(tmp_path / "s"))
    with pytest.raises(BerthError) as e:
        store.put_blob(rd, _sha(data))
    assert "transfer broke" in str(e.value) and _sha(data) in str(e.value)
    assert len(client.offsets) == 6
    assert list((tmp_path / "s" / "tmp").iterdir()) == []
    assert list((tmp_path / "s" / "blobs" / "sha256").iterdir()) == []


def test_reader_refuses_a_wrong_range():
    data = b"y" * 100
    client = FakeClient(data, cut=[50])

    def bad(digest, offset):
        client.offsets.append(offset)
        if offset:
            return FakeResp(206, data[10:], headers={"Content-Range": "bytes 10-99/100"})
        return FakeResp(200, data, fail_at=50)
    client.open_blob = bad
    rd = registry_blobs._BlobReader(client, _sha(data), len(data), lambda n: None)
    got = b""
    with pytest.raises(BerthError) as e:
        while True:
            chunk = rd.read(1 << 16)
            if not chunk:
                break
            got += chunk
    assert "asked for bytes from 50" in str(e.value)
