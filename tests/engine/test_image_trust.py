"""Trust policy against real image archives loaded into a store. No root."""
import pytest

pytest.importorskip("cryptography")

from berth.engine.images import archive, trust  # noqa: E402
from berth.engine.images.store import Store  # noqa: E402
from berth.oci import jsonio  # noqa: E402
from shared_dir import FIXTURES  # noqa: E402

IMAGES = FIXTURES / "images"
BUSYBOX = "sha256:c6348fa86ba0fb2108c9334f5fe913ddc6d853313e655891f133a0127c30099f"

pytestmark = pytest.mark.skipif(not (IMAGES / "busybox-1.38.tar").exists(),
                                reason="image fixtures missing")


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "images"))
    for name in ("busybox-1.38", "alpine-3.20"):
        with open(IMAGES / f"{name}.tar", "rb") as f:
            archive.load(s, f)
    return s


@pytest.fixture
def keys(tmp_path):
    (tmp_path / "keys").mkdir()
    return {n: trust.generate_key(str(tmp_path / "keys" / n)) for n in ("release", "other")}


def policy(tmp_path, doc):
    path = tmp_path / "policy.json"
    path.write_text(jsonio.dumps(doc))
    return str(path)


def test_signed_busybox_passes_a_policy_that_requires_it(store, keys, tmp_path):
    assert store.resolve("busybox") == BUSYBOX
    trust.sign(store, "busybox:latest", str(tmp_path / "keys" / "release"), "release team")
    assert trust.verify(store, "busybox", [keys["release"]]) == ["release team"]
    path = policy(tmp_path, {"default": "reject",
                             "repositories": {"docker.io/library/busybox":
                                              {"signedBy": ["keys/release.pub"]}}})
    trust.check(store, "busybox", path)
    trust.check(store, "docker.io/library/busybox:latest", path)
    trust.check(store, BUSYBOX, path)


def test_retagged_busybox_is_refused(store, keys, tmp_path):
    trust.sign(store, "busybox", str(tmp_path / "keys" / "release"), "release")
    store.tag(BUSYBOX, "registry.example.com/app:1")
    path = policy(tmp_path, {"default": {"signedBy": ["keys/release.pub"]}})
    trust.check(store, "busybox", path)
    with pytest.raises(trust.Untrusted) as e:
        trust.check(store, "registry.example.com/app:1", path)
    assert str(e.value) == (
        "image registry.example.com/app:1 is not signed by a trusted key "
        f"(policy {path} requires signedBy for default): signature 0.json: signed for "
        "docker.io/library/busybox:latest, not registry.example.com/app:1")
    # by id no name is claimed, and the content is the signed busybox
    trust.check(store, BUSYBOX, path)
    store.untag("busybox")
    with pytest.raises(trust.Untrusted, match="signed for docker.io/library/busybox:latest, "
                                              "not registry.example.com/app:1"):
        trust.check(store, BUSYBOX, path)


def test_key_not_in_policy_is_refused(store, keys, tmp_path):
    trust.sign(store, "busybox", str(tmp_path / "keys" / "other"), "someone")
    path = policy(tmp_path, {"default": "insecureAcceptAnything",
                             "registries": {"docker.io": {"signedBy": ["keys/release.pub"]}}})
    assert trust.verify(store, "busybox", [keys["release"]]) == []
    with pytest.raises(trust.Untrusted,
                       match=f"requires signedBy for docker.io\\): signature 0.json: key "
                             f"{trust.key_id(keys['other'])} is not trusted"):
        trust.check(store, "busybox", path)


def test_default_reject_refuses_unsigned_alpine(store, keys, tmp_path):
    trust.sign(store, "busybox", str(tmp_path / "keys" / "release"), "release")
    path = policy(tmp_path, {"default": "reject",
                             "repositories": {"busybox": {"signedBy": ["keys/release.pub"]}}})
    trust.check(store, "busybox", path)
    with pytest.raises(trust.Untrusted,
                       match=f"image docker.io/library/alpine:latest is rejected by policy {path} "
                             "for default"):
        trust.check(store, "alpine", path)


def test_removing_an_image_removes_its_signatures(tmp_path):
    store = Store(str(tmp_path / "s"))
    with open(FIXTURES / "images" / "busybox-1.38.tar", "rb") as f:
        (image_id,) = archive.load(store, f)
    key = str(tmp_path / "k")
    trust.generate_key(key)
    trust.sign(store, "busybox:latest", key, "me")
    assert trust.signatures(store, image_id)
    store.remove("busybox:latest")
    assert not (tmp_path / "s" / "signatures" / image_id.split(":")[1]).exists()
