"""sigstore signatures under a containers policy.json, enforced at pull and
at create, against Debian's docker-registry on loopback.

The signatures here are made by openssl (a signer that is not berth's
code) over the simple-signing payload, and attached the way cosign and
containers/image attach them: tag sha256-<hex>.sig, one layer per
signature, the base64 signature in the layer's annotation. (Debian 12's
skopeo and podman cannot make or check sigstore signatures: both are
built with "Debian-local change: sigstore disabled". See
tests/api/test_sigstore_interop.py for what they can do.)"""
import base64
import hashlib
import json
import shutil
import subprocess

import pytest

pytest.importorskip("cryptography")

from berth.engine.images import archive, registry, sigstore, trust  # noqa: E402
from berth.engine.images.store import Store  # noqa: E402
from berth.errors import ConfigError  # noqa: E402
import registry_proc  # noqa: E402
from shared_dir import FIXTURES  # noqa: E402

BUSYBOX_TAR = FIXTURES / "images" / "busybox-1.38.tar"
BUSYBOX = "sha256:c6348fa86ba0fb2108c9334f5fe913ddc6d853313e655891f133a0127c30099f"

pytestmark = [
    pytest.mark.skipif(not BUSYBOX_TAR.exists(), reason="image fixtures missing"),
    pytest.mark.skipif(not registry_proc.installed(), reason="docker-registry is not installed"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]

KEY_KINDS = {
    "ecdsa-p256": ["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
    "ecdsa-p384": ["ecparam", "-name", "secp384r1", "-genkey", "-noout"],
    "rsa-2048": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "ed25519": ["genpkey", "-algorithm", "ed25519"],
}


def openssl(*args, data=None):
    return subprocess.run(["openssl", *map(str, args)], input=data, capture_output=True,
                          check=True, timeout=60).stdout


class Key:
    def __init__(self, tmp_path, kind, name=None):
        name = name or kind
        self.kind = kind
        self.private = tmp_path / f"{name}.pem"
        self.public = tmp_path / f"{name}.pub"
        openssl(*KEY_KINDS[kind], "-out", self.private)
        openssl("pkey", "-in", self.private, "-pubout", "-out", self.public)

    def sign(self, payload, tmp_path):
        data = tmp_path / "payload"
        data.write_bytes(payload)
        if self.kind == "ed25519":
            return openssl("pkeyutl", "-sign", "-rawin", "-inkey", self.private, "-in", data)
        return openssl("dgst", "-sha256", "-sign", self.private, data)


def payload_for(reference, digest):
    return json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": "cosign container image signature"},
                       "optional": None}).encode()


def put_blob(reg, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, h, _ = reg.raw("POST", f"/v2/{repo}/blobs/uploads/")
    loc = h["Location"] + ("&" if "?" in h["Location"] else "?") + f"digest={digest}"
    status, _, body = reg.raw("PUT", loc.split(reg.host, 1)[-1], data,
                              {"Content-Type": "application/octet-stream"})
    assert status == 201, body
    return digest


def attach(reg, repo, manifest_digest, signed):
    """[(payload, signature)] as the attachment of manifest_digest."""
    layers = [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
               "digest": put_blob(reg, repo, p), "size": len(p),
               "annotations": {"dev.cosignproject.cosign/signature":
                               base64.b64encode(s).decode()}} for p, s in signed]
    cfg = json.dumps({"architecture": "", "os": "", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]}}
                     ).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": put_blob(reg, repo, cfg), "size": len(cfg)},
                "layers": layers}
    tag = "sha256-" + manifest_digest[7:] + ".sig"
    status, _, body = reg.raw("PUT", f"/v2/{repo}/manifests/{tag}", json.dumps(manifest).encode(),
                              {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 201, body


def write_policy(tmp_path, docker_scopes, default=None):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"default": default or [{"type": "reject"}],
                                "transports": {"docker": docker_scopes}}))
    return str(path)


def signed_by(key, **identity):
    req = {"type": "sigstoreSigned", "keyPath": str(key.public)}
    if identity:
        req["signedIdentity"] = identity
    return [req]


@pytest.fixture
def reg(tmp_path):
    with registry_proc.running(tmp_path) as r:
        yield r


@pytest.fixture
def pushed(reg, tmp_path):
    """busybox at <reg>/s/busybox:1 (and :2, the same manifest); the manifest digest."""
    src = Store(str(tmp_path / "src"))
    with open(BUSYBOX_TAR, "rb") as f:
        archive.load(src, f)
    for tag in ("1", "2"):
        src.tag(BUSYBOX, f"{reg.host}/s/busybox:{tag}")
        digest = registry.push(src, f"{reg.host}/s/busybox:{tag}")
    return digest


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "dst"))


@pytest.mark.parametrize("kind", sorted(KEY_KINDS))
def test_signature_by_each_key_type_is_accepted_at_pull_and_at_create(
        reg, pushed, store, tmp_path, kind):
    key = Key(tmp_path, kind)
    ref = f"{reg.host}/s/busybox:1"
    payload = payload_for(ref, pushed)
    attach(reg, "s/busybox", pushed, [(payload, key.sign(payload, tmp_path))])
    policy = write_policy(tmp_path, {f"{reg.host}/s": signed_by(key)})
    assert registry.pull(store, ref, policy=policy) == BUSYBOX
    assert [s.payload for s in sigstore.stored(store, BUSYBOX)] == [payload]
    trust.check(store, ref, policy)
    trust.check(store, BUSYBOX, policy)   # by id: accepted under its name


def refused_pull(store, ref, policy, match):
    with pytest.raises(trust.Untrusted, match=match):
        registry.pull(store, ref, policy=policy)
    assert store.images() == []   # nothing was fetched


def test_swapped_key_altered_signature_and_payload_are_refused(reg, pushed, store, tmp_path):
    key, other = Key(tmp_path, "ecdsa-p256", "mine"), Key(tmp_path, "ecdsa-p256", "other")
    ref = f"{reg.host}/s/busybox:1"
    payload = payload_for(ref, pushed)
    good = key.sign(payload, tmp_path)
    attach(reg, "s/busybox", pushed, [(payload, good)])
    refused_pull(store, ref, write_policy(tmp_path, {"": signed_by(other)}),
                 r"not signed by a trusted key .*signature 0 does not verify under other.pub")
    policy = write_policy(tmp_path, {"": signed_by(key)})
    bad = bytearray(good)
    bad[-3] ^= 1
    attach(reg, "s/busybox", pushed, [(payload, bytes(bad))])
    refused_pull(store, ref, policy, r"signature 0 does not verify under mine.pub")
    # a payload for other content, under the signature of the real one
    forged = payload_for(ref, "sha256:" + "0" * 64)
    attach(reg, "s/busybox", pushed, [(forged, good)])
    refused_pull(store, ref, policy, r"signature 0 does not verify")
    # validly signed, but for another manifest
    attach(reg, "s/busybox", pushed, [(forged, key.sign(forged, tmp_path))])
    refused_pull(store, ref, policy, r"signature 0 is for manifest sha256:0+, not " + pushed)
    attach(reg, "s/busybox", pushed, [(payload, good)])
    assert registry.pull(store, ref, policy=policy) == BUSYBOX


def test_retagged_image_is_refused_at_pull_and_at_create(reg, pushed, store, tmp_path):
    key = Key(tmp_path, "ecdsa-p256")
    payload = payload_for(f"{reg.host}/s/busybox:1", pushed)
    attach(reg, "s/busybox", pushed, [(payload, key.sign(payload, tmp_path))])
    policy = write_policy(tmp_path, {"": signed_by(key)})
    # :2 is the same manifest, so the same attachment: the identity tells them apart
    refused_pull(store, f"{reg.host}/s/busybox:2", policy,
                 rf"signature 0 names {reg.host}/s/busybox:1, not {reg.host}/s/busybox:2 "
                 r"\(signedIdentity matchRepoDigestOrExact\)")
    assert registry.pull(store, f"{reg.host}/s/busybox:1", policy=policy) == BUSYBOX
    store.tag(BUSYBOX, "example.com/other/busybox:1")
    with pytest.raises(trust.Untrusted, match=r"names .*/s/busybox:1, not "
                                              r"example.com/other/busybox:1"):
        trust.check(store, "example.com/other/busybox:1", policy)
    # the policy can say whose signature a copy carries
    remap = write_policy(tmp_path, {"": signed_by(key, type="remapIdentity",
                                                  prefix="example.com/other",
                                                  signedPrefix=f"{reg.host}/s")})
    trust.check(store, "example.com/other/busybox:1", remap)
    by_digest = f"{reg.host}/s/busybox@{pushed}"
    assert registry.pull(Store(str(tmp_path / "d2")), by_digest, policy=policy) == BUSYBOX


def test_scopes_reject_accept_and_attachments_switched_off(reg, pushed, store, tmp_path):
    key = Key(tmp_path, "ecdsa-p256")
    ref = f"{reg.host}/s/busybox:1"
    refused_pull(store, ref, write_policy(tmp_path, {"": signed_by(key)}),
                 r"the image has no sigstore signatures")
    policy = write_policy(tmp_path, {f"{reg.host}/s/busybox:2": [{"type": "reject"}],
                                     f"{reg.host}/s": [{"type": "insecureAcceptAnything"}]})
    refused_pull(store, f"{reg.host}/s/busybox:2", policy,
                 rf"rejected by policy .* for transports.docker\['{reg.host}/s/busybox:2'\]")
    assert registry.pull(store, ref, policy=policy) == BUSYBOX
    payload = payload_for(ref, pushed)
    attach(reg, "s/busybox", pushed, [(payload, key.sign(payload, tmp_path))])
    policy = write_policy(tmp_path, {"": signed_by(key)})
    (tmp_path / "registries.d").mkdir()
    (tmp_path / "registries.d" / "off.yaml").write_text(
        f"docker:\n  {reg.host}:\n    use-sigstore-attachments: false\n")
    refused_pull(Store(str(tmp_path / "d2")), ref, policy,
                 r"registries.d: docker\[.*\] does not set use-sigstore-attachments: true")
    (tmp_path / "registries.d" / "off.yaml").write_text(
        "default-docker:\n  use-sigstore-attachments: true\n")
    assert registry.pull(Store(str(tmp_path / "d3")), ref, policy=policy) == BUSYBOX


@pytest.mark.parametrize("req,message", [
    ({"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"},
     r"default\[0\]: GPG simple signing \(signedBy\) is not implemented by berth"),
    ({"type": "sigstoreSigned", "fulcio": {"caPath": "/ca.pem", "oidcIssuer": "x",
                                           "subjectEmail": "a@b"}},
     r"sigstoreSigned with fulcio: keyless \(Fulcio certificate\) verification is not "
     r"implemented by berth"),
    ({"type": "sigstoreSigned", "keyPath": "k.pub", "rekorPublicKeyPath": "/r.pub"},
     r"rekorPublicKeyPath: Rekor transparency-log verification is not implemented"),
    ({"type": "signedBaseLayer", "baseLayerIdentity": {}}, r"signedBaseLayer is not implemented"),
    ({"type": "sigstoreSigned"}, r"needs exactly one of keyPath"),
    ({"type": "whatever"}, r"unknown requirement type 'whatever'"),
])
def test_requirements_berth_does_not_implement_refuse_the_policy_by_name(
        tmp_path, reg, pushed, store, req, message):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"default": [req]}))
    with pytest.raises(ConfigError, match=message):
        trust.load_policy(str(path))
    with pytest.raises(ConfigError, match=message):
        registry.pull(store, f"{reg.host}/s/busybox:1", policy=str(path))
    assert store.images() == []


def test_hostile_attachments_are_refused_with_the_reason(reg, pushed, store, tmp_path):
    key = Key(tmp_path, "ecdsa-p256")
    ref = f"{reg.host}/s/busybox:1"
    policy = write_policy(tmp_path, {"": signed_by(key)})
    payload = payload_for(ref, pushed)
    good = key.sign(payload, tmp_path)
    tag = "sha256-" + pushed[7:] + ".sig"
    mt = "application/vnd.oci.image.manifest.v1+json"
    other = put_blob(reg, "s/busybox", b"{}")
    # the descriptor names one blob, the size of another
    manifest = {"schemaVersion": 2, "mediaType": mt,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": other, "size": 2},
                "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                            "digest": other, "size": len(payload),
                            "annotations": {"dev.cosignproject.cosign/signature":
                                            base64.b64encode(good).decode()}}]}
    assert reg.raw("PUT", f"/v2/s/busybox/manifests/{tag}", json.dumps(manifest).encode(),
                   {"Content-Type": mt})[0] == 201
    refused_pull(store, ref, policy, r"layers\[0\]: blob sha256:\w+ does not match its descriptor")
    # a signed payload with a field containers/image does not know in critical
    doc = json.loads(payload)
    doc["critical"]["extra"] = 1
    odd = json.dumps(doc).encode()
    attach(reg, "s/busybox", pushed, [(odd, key.sign(odd, tmp_path))])
    refused_pull(store, ref, policy, r"critical section must hold exactly identity, image and type")
    # oversized or undecodable signatures are not signatures
    attach(reg, "s/busybox", pushed, [(b"x" * (65 << 10), good)])
    refused_pull(store, ref, policy, r"the image has no sigstore signatures")
