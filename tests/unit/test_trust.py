"""Image signatures and the trust policy, on small images made here."""
import base64
import hashlib
import os
import stat

import pytest

pytest.importorskip("cryptography")

from berth.engine.images import trust  # noqa: E402
from berth.engine.images.store import Store  # noqa: E402
from berth.errors import BerthError, ConfigError, Conflict, NotFound  # noqa: E402
from berth.oci import jsonio  # noqa: E402

IMG_A = "sha256:" + "a" * 64
DIFF = "sha256:" + "d" * 64


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image(store, seed, *tags):
    layer = f"layer {seed}\n".encode()
    lid = store.put_bytes(layer)
    cfg = {"architecture": "amd64", "os": "linux", "config": {"Labels": {"seed": seed}},
           "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}
    cid = store.put_bytes(jsonio.dumps(cfg).encode())
    store.add_image(cid, [lid], {"schemaVersion": 2})
    for t in tags:
        store.tag(cid, t)
    return cid


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "images"))


@pytest.fixture
def keys(tmp_path):
    d = tmp_path / "keys"
    d.mkdir()
    alice = trust.generate_key(str(d / "alice"))
    bob = trust.generate_key(str(d / "bob"))
    return {"alice": (str(d / "alice"), alice), "bob": (str(d / "bob"), bob)}


def write_policy(tmp_path, doc, name="policy.json"):
    path = tmp_path / name
    path.write_text(jsonio.dumps(doc))
    return str(path)


def signed_by(*pubs):
    return {"signedBy": list(pubs)}


def edit_signature(path, fn):
    doc = jsonio.load_file(path)
    fn(doc)
    jsonio.write_atomic(path, doc)


# canonical payload

def test_payload_is_canonical_and_stable():
    body = trust.payload(IMG_A, [DIFF], "docker.io/library/alpine:latest", "alice",
                         "2026-01-02T03:04:05Z")
    assert body == (
        '{"critical":{"identity":{"reference":"docker.io/library/alpine:latest"},'
        f'"image":{{"diffIds":["{DIFF}"],"id":"{IMG_A}"}},'
        '"type":"berth image signature"},'
        '"optional":{"created":"2026-01-02T03:04:05Z","signer":"alice"}}').encode()
    assert body == trust.payload(IMG_A, (DIFF,), "docker.io/library/alpine:latest", "alice",
                                 "2026-01-02T03:04:05Z")


def test_payload_escapes_to_ascii():
    body = trust.payload(IMG_A, [], "docker.io/library/x:1", "j\u00f6rg", "t")
    assert b'"signer":"j\\u00f6rg"' in body


# keys

def test_generate_key_modes_and_no_overwrite(tmp_path, keys):
    priv, pub = keys["alice"]
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    assert pub == priv + ".pub"
    assert open(pub).read().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(Conflict, match="exists already"):
        trust.generate_key(priv)
    assert trust.key_id(pub) != trust.key_id(keys["bob"][1])
    assert trust.key_id(pub).startswith("sha256:") and len(trust.key_id(pub)) == 71


def test_public_key_that_is_not_ed25519_is_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    k = ec.generate_private_key(ec.SECP256R1()).public_key()
    p = tmp_path / "ec.pub"
    p.write_bytes(k.public_bytes(serialization.Encoding.PEM,
                                 serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ConfigError, match="not an Ed25519 key"):
        trust.load_public_key(str(p))


# sign / verify

def test_sign_verify_round_trip(store, keys):
    img = make_image(store, "a", "alpine:latest")
    path = trust.sign(store, "alpine", keys["alice"][0], "alice")
    assert path == os.path.join(store.root, "signatures", img[7:], "0.json")
    doc = jsonio.load_file(path)
    assert doc["keyId"] == trust.key_id(keys["alice"][1])
    signed = jsonio.loads(base64.b64decode(doc["payload"]))
    assert signed["critical"]["image"] == {"id": img, "diffIds": store.record(img)["diff_ids"]}
    assert signed["critical"]["identity"] == {"reference": "docker.io/library/alpine:latest"}
    assert trust.verify(store, "alpine:latest", [keys["alice"][1]]) == ["alice"]
    assert trust.verify(store, "docker.io/library/alpine", [keys["alice"][1]]) == ["alice"]
    # by id: the content is what the signature pins
    assert trust.verify(store, img, [keys["alice"][1]]) == ["alice"]
    # a second signature is kept beside the first
    assert trust.sign(store, "alpine", keys["bob"][0], "bob").endswith("/1.json")
    assert trust.verify(store, "alpine", [keys["alice"][1], keys["bob"][1]]) == ["alice", "bob"]


def test_verify_reads_a_trust_directory(store, keys, tmp_path):
    make_image(store, "a", "alpine:latest")
    trust.sign(store, "alpine", keys["alice"][0], "alice")
    assert trust.verify(store, "alpine", str(tmp_path / "keys")) == ["alice"]


def test_sign_needs_a_tagged_name(store, keys):
    img = make_image(store, "a", "alpine:latest")
    with pytest.raises(BerthError, match="give name:tag"):
        trust.sign(store, img, keys["alice"][0], "alice")
    with pytest.raises(NotFound):
        trust.sign(store, "busybox", keys["alice"][0], "alice")


def test_unknown_key_fails(store, keys):
    make_image(store, "a", "alpine:latest")
    trust.sign(store, "alpine", keys["bob"][0], "bob")
    assert trust.verify(store, "alpine", [keys["alice"][1]]) == []
    _, _, reasons = trust._evaluate(store, "alpine",
                                    trust._trusted_keys([keys["alice"][1]]))
    assert reasons == [f"signature 0.json: key {trust.key_id(keys['bob'][1])} is not trusted"]


def test_retagged_image_does_not_verify(store, keys):
    make_image(store, "a", "alpine:latest")
    trust.sign(store, "alpine", keys["alice"][0], "alice")
    store.tag("alpine", "evil/app:latest")
    store.tag("alpine", "alpine:3.20")
    for other in ("evil/app", "alpine:3.20"):
        assert trust.verify(store, other, [keys["alice"][1]]) == []
    _, _, reasons = trust._evaluate(store, "evil/app", trust._trusted_keys([keys["alice"][1]]))
    assert reasons == ["signature 0.json: signed for docker.io/library/alpine:latest, "
                       "not docker.io/evil/app:latest"]


def test_signature_moved_to_other_image_does_not_verify(store, keys):
    a = make_image(store, "a", "alpine:latest")
    trust.sign(store, "alpine", keys["alice"][0], "alice")
    # the attacker re-points the tag at other content and brings the signature along
    b = make_image(store, "b", "alpine:latest")
    d = os.path.join(store.root, "signatures", b[7:])
    os.makedirs(d)
    os.rename(os.path.join(store.root, "signatures", a[7:], "0.json"), os.path.join(d, "0.json"))
    with pytest.raises(trust.Untrusted, match=f"signed for image {a}, not {b}"):
        trust.check(store, "alpine", write_policy_obj(keys["alice"][1]))


def write_policy_obj(pub):
    return trust.Policy("/test/policy.json", trust._trusted_keys([pub]), {}, {})


@pytest.mark.parametrize("tamper, reason", [
    (lambda d: d.update(payload=base64.b64encode(
        base64.b64decode(d["payload"]).replace(b"alpine", b"alpina")).decode()),
     "signature does not match its payload"),
    (lambda d: d.update(signature=base64.b64encode(
        bytes([base64.b64decode(d["signature"])[0] ^ 1]) +
        base64.b64decode(d["signature"])[1:]).decode()),
     "signature does not match its payload"),
    (lambda d: d.update(signature="!!not base64"), "not valid base64"),
    (lambda d: d.pop("keyId"), "keyId, payload and signature must be strings"),
])
def test_tampering_fails(store, keys, tamper, reason):
    make_image(store, "a", "alpine:latest")
    path = trust.sign(store, "alpine", keys["alice"][0], "alice")
    edit_signature(path, tamper)
    assert trust.verify(store, "alpine", [keys["alice"][1]]) == []
    with pytest.raises(trust.Untrusted, match=reason):
        trust.check(store, "alpine", write_policy_obj(keys["alice"][1]))


def test_key_id_swapped_to_another_trusted_key_fails(store, keys):
    make_image(store, "a", "alpine:latest")
    path = trust.sign(store, "alpine", keys["alice"][0], "alice")
    edit_signature(path, lambda d: d.update(keyId=trust.key_id(keys["bob"][1])))
    assert trust.verify(store, "alpine", [keys["alice"][1], keys["bob"][1]]) == []


def test_payload_signed_but_for_other_layers_fails(store, keys):
    img = make_image(store, "a", "alpine:latest")
    key = trust.load_private_key(keys["alice"][0])
    body = trust.payload(img, [DIFF], "docker.io/library/alpine:latest", "alice", "t")
    d = os.path.join(store.root, "signatures", img[7:])
    os.makedirs(d)
    jsonio.write_atomic(os.path.join(d, "0.json"), {
        "keyId": trust.key_id(keys["alice"][1]),
        "payload": base64.b64encode(body).decode(),
        "signature": base64.b64encode(key.sign(body)).decode()})
    with pytest.raises(trust.Untrusted, match="diffIds"):
        trust.check(store, "alpine", write_policy_obj(keys["alice"][1]))


# policy

def test_revoked_key_fails(store, keys, tmp_path):
    make_image(store, "a", "alpine:latest")
    trust.sign(store, "alpine", keys["alice"][0], "alice")
    both = write_policy(tmp_path, {"default": signed_by(keys["alice"][1], keys["bob"][1])})
    trust.check(store, "alpine", both)
    only_bob = write_policy(tmp_path, {"default": signed_by(keys["bob"][1])}, "p2.json")
    with pytest.raises(trust.Untrusted, match="is not trusted"):
        trust.check(store, "alpine", only_bob)


def test_policy_precedence_repository_over_registry_over_default(store, keys, tmp_path):
    make_image(store, "a", "alpine:latest", "busybox:latest", "quay.io/x/y:1")
    trust.sign(store, "alpine", keys["alice"][0], "alice")
    path = write_policy(tmp_path, {
        "default": "insecureAcceptAnything",
        "registries": {"docker.io": "reject"},
        "repositories": {"alpine": signed_by("keys/alice.pub")},  # relative to the policy
    })
    trust.check(store, "alpine", path)
    trust.check(store, "quay.io/x/y:1", path)
    with pytest.raises(trust.Untrusted, match=f"busybox:latest is rejected by policy {path} "
                                              "for docker.io$"):
        trust.check(store, "busybox", path)
    p = trust.load_policy(path)
    assert p.requirement(None) == ("insecureAcceptAnything", "default")


def test_default_reject_and_unsigned_message(store, keys, tmp_path):
    make_image(store, "a", "alpine:latest")
    rej = write_policy(tmp_path, {"default": "reject"})
    with pytest.raises(trust.Untrusted, match="rejected by policy"):
        trust.check(store, "alpine", rej)
    need = write_policy(tmp_path, {"default": "insecureAcceptAnything",
                                   "repositories": {"docker.io/library/alpine":
                                                    signed_by(keys["alice"][1])}}, "p2.json")
    with pytest.raises(trust.Untrusted) as e:
        trust.check(store, "alpine", need)
    assert str(e.value).startswith(
        f"image docker.io/library/alpine:latest is not signed by a trusted key (policy {need} "
        "requires signedBy for docker.io/library/alpine): image sha256:")
    assert str(e.value).endswith("has no signatures")


def test_running_by_id_is_held_to_its_names_scopes(store, keys, tmp_path):
    img = make_image(store, "a", "alpine:latest")
    path = write_policy(tmp_path, {"default": "insecureAcceptAnything",
                                   "repositories": {"alpine": "reject"}})
    with pytest.raises(trust.Untrusted, match="rejected"):
        trust.check(store, img, path)
    with pytest.raises(trust.Untrusted, match="rejected"):
        trust.check(store, img[7:19], path)
    store.tag(img, "mirror/alpine:1")
    trust.check(store, img, path)  # it could run as mirror/alpine:1 anyway
    store.untag("alpine")
    store.untag("mirror/alpine:1")
    trust.check(store, img, path)  # untagged: the default applies
    strict = write_policy(tmp_path, {"default": signed_by(keys["alice"][1])}, "p2.json")
    with pytest.raises(trust.Untrusted, match=f"image {img} is not signed .* for default\\): "
                                              f"image {img} has no signatures"):
        trust.check(store, img, strict)


def test_by_id_lists_every_name_when_none_is_accepted(store, tmp_path):
    img = make_image(store, "a", "alpine:latest", "busybox:latest")
    path = write_policy(tmp_path, {"default": "reject"})
    with pytest.raises(trust.Untrusted, match=f"image {img} is not accepted under any of its "
                                              "names: image docker.io/library/alpine:latest is "
                                              "rejected .* [|] image docker.io/library/busybox"):
        trust.check(store, img, path)


def test_accept_anything_still_needs_the_image(store, tmp_path):
    path = write_policy(tmp_path, {"default": "insecureAcceptAnything"})
    with pytest.raises(NotFound):
        trust.check(store, "alpine", path)


@pytest.mark.parametrize("doc, msg", [
    ({}, '"default" is required'),
    ({"default": "accept"}, "unknown requirement 'accept'"),
    ({"default": {"signedBy": []}}, "non-empty list"),
    ({"default": {"signedBy": ["k.pub"], "extra": 1}}, "expected"),
    # transports makes it a policy.json, whose default is a list of requirements
    ({"default": "reject", "transports": {}}, "default: expected a non-empty list"),
    ({"default": "reject", "repositories": {"alpine:3": "reject"}}, "names no tag"),
    ({"default": "reject", "registries": {"docker.io/library": "reject"}}, "host name"),
    ({"default": {"signedBy": ["missing.pub"]}}, "cannot read public key"),
    ([], "expected a JSON object"),
])
def test_bad_policy_is_a_config_error(tmp_path, doc, msg):
    with pytest.raises(ConfigError, match=msg):
        trust.load_policy(write_policy(tmp_path, doc))


def test_hex_looking_name_is_a_name_only_when_tagged(store, keys, tmp_path):
    img = make_image(store, "a", "alpine:latest")
    with pytest.raises(BerthError, match="give name:tag"):
        trust.sign(store, img[7:19], keys["alice"][0], "alice")
    store.tag(img, "abcdef012345:latest")
    path = trust.sign(store, "abcdef012345", keys["alice"][0], "alice")
    signed = jsonio.loads(base64.b64decode(jsonio.load_file(path)["payload"]))
    assert signed["critical"]["identity"]["reference"] == "docker.io/library/abcdef012345:latest"
    assert trust.verify(store, "abcdef012345", [keys["alice"][1]]) == ["alice"]
