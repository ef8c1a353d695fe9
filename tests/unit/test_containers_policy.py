"""policy.json's scopes and signedIdentity, registries.d, and cosign's key
envelope, without a registry. openssl is the outside check on keys."""
import json
import shutil
import subprocess

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("nacl")

from berth.client import cosign_keys  # noqa: E402
from berth.engine.images import names, policy, sigstore, trust  # noqa: E402
from berth.errors import ConfigError  # noqa: E402


def test_scopes_go_from_the_reference_to_the_transport_default():
    assert policy.scopes_of(names.parse("reg.example.com/a/b/c:1")) == [
        "reg.example.com/a/b/c:1", "reg.example.com/a/b/c", "reg.example.com/a/b",
        "reg.example.com/a", "reg.example.com", "*.example.com", "*.com", ""]
    assert policy.scopes_of(names.parse("busybox"))[:3] == [
        "docker.io/library/busybox:latest", "docker.io/library/busybox", "docker.io/library"]
    # a host with a port has no wildcard scopes
    assert policy.scopes_of(names.parse("127.0.0.1:5000/x@sha256:" + "a" * 64)) == [
        "127.0.0.1:5000/x@sha256:" + "a" * 64, "127.0.0.1:5000/x", "127.0.0.1:5000", ""]


def load(tmp_path, doc):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    return trust.load_policy(str(path))


ACCEPT = [{"type": "insecureAcceptAnything"}]


def test_the_most_specific_scope_wins(tmp_path):
    pol = load(tmp_path, {"default": [{"type": "reject"}], "transports": {"docker": {
        "docker.io/library/busybox:1": ACCEPT, "docker.io": [{"type": "reject"}],
        "*.example.com": ACCEPT}}})
    assert pol.requirements(names.parse("busybox:1"))[1] == \
        "transports.docker['docker.io/library/busybox:1']"
    assert pol.requirements(names.parse("busybox:2"))[1] == "transports.docker['docker.io']"
    assert pol.requirements(names.parse("a.b.example.com/x"))[1] == \
        "transports.docker['*.example.com']"
    assert pol.requirements(names.parse("quay.io/x"))[1] == "default"


@pytest.mark.parametrize("scope,message", [
    ("library/busybox", "scopes are written in full, as 'docker.io/library/busybox'"),
    ("*.example.com:5000", "wildcard scope is \\*.domain"),
    ("Bad_Host", "is not a host name"),
])
def test_bad_scopes_are_named(tmp_path, scope, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, {"default": ACCEPT, "transports": {"docker": {scope: ACCEPT}}})


IMAGE = names.parse("reg.example.com/team/app:1")


@pytest.mark.parametrize("ident,signed,ok", [
    ({"type": "matchRepoDigestOrExact"}, "reg.example.com/team/app:1", True),
    ({"type": "matchRepoDigestOrExact"}, "reg.example.com/team/app:2", False),
    ({"type": "matchExact"}, "reg.example.com/team/app:1", True),
    ({"type": "matchRepository"}, "reg.example.com/team/app:2", True),
    ({"type": "matchRepository"}, "reg.example.com/team/other:1", False),
    ({"type": "exactReference", "dockerReference": "mirror.example.com/app:9"},
     "mirror.example.com/app:9", True),
    ({"type": "exactRepository", "dockerRepository": "mirror.example.com/app"},
     "mirror.example.com/app:3", True),
    ({"type": "remapIdentity", "prefix": "reg.example.com/team",
      "signedPrefix": "upstream.example.com/team"}, "upstream.example.com/team/app:1", True),
    ({"type": "remapIdentity", "prefix": "reg.example.com/te",
      "signedPrefix": "upstream.example.com/team"}, "upstream.example.com/teamm/app:1", False),
    ({"type": "matchExact"}, "not a reference!", False),
])
def test_signed_identity(ident, signed, ok):
    assert policy.identity_matches(ident, IMAGE, signed) is ok


def test_repo_digest_matches_any_tag_of_the_repository():
    by_digest = names.parse("reg.example.com/team/app@sha256:" + "b" * 64)
    assert policy.identity_matches({"type": "matchRepoDigestOrExact"}, by_digest,
                                   "reg.example.com/team/app:7")
    assert not policy.identity_matches({"type": "matchExact"}, by_digest,
                                       "reg.example.com/team/app:7")


def test_registries_d_most_specific_entry_wins(tmp_path):
    d = tmp_path / "registries.d"
    assert policy.attachments_enabled(str(d), IMAGE) == (True, "")   # no dir: read them
    d.mkdir()
    (d / "a.yaml").write_text("default-docker:\n  use-sigstore-attachments: true\n")
    (d / "b.yaml").write_text("docker:\n  reg.example.com/team:\n"
                              "    use-sigstore-attachments: false\n")
    assert policy.attachments_enabled(str(d), names.parse("quay.io/x"))[0] is True
    enabled, why = policy.attachments_enabled(str(d), IMAGE)
    assert not enabled and "docker['reg.example.com/team'] does not set" in why
    (d / "c.yaml").write_text("docker:\n  reg.example.com/team: {}\n")
    with pytest.raises(ConfigError, match="is set in another file too"):
        policy.attachments_enabled(str(d), IMAGE)
    (d / "c.yaml").write_text("docker: [\n")
    with pytest.raises(ConfigError, match="c.yaml: not valid YAML"):
        policy.attachments_enabled(str(d), IMAGE)


def test_key_envelope_round_trip_and_wrong_password(tmp_path):
    private, public = cosign_keys.generate("pw")
    assert private.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    (tmp_path / "k.key").write_bytes(private)
    key = cosign_keys.load_private(str(tmp_path / "k.key"), "pw")
    sig = cosign_keys.sign(key, b"payload")
    pub = sigstore.load_public_key(public, "k.pub")
    assert sigstore.signature_matches(pub, sig, b"payload")
    assert not sigstore.signature_matches(pub, sig, b"payloaD")
    with pytest.raises(ConfigError, match="wrong password"):
        cosign_keys.load_private(str(tmp_path / "k.key"), "nope")
    (tmp_path / "plain.key").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="not a cosign private key"):
        cosign_keys.load_private(str(tmp_path / "plain.key"), "pw")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_openssl_checks_what_the_cli_signs(tmp_path):
    private, public = cosign_keys.generate("pw")
    (tmp_path / "k.key").write_bytes(private)
    (tmp_path / "k.pub").write_bytes(public)
    (tmp_path / "payload").write_bytes(b'{"critical": {}}')
    sig = cosign_keys.sign(cosign_keys.load_private(str(tmp_path / "k.key"), "pw"),
                           (tmp_path / "payload").read_bytes())
    (tmp_path / "sig").write_bytes(sig)
    r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", tmp_path / "k.pub",
                        "-signature", tmp_path / "sig", tmp_path / "payload"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "Verified OK" in r.stdout, r.stderr


def test_weak_or_foreign_public_keys_are_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    for key, message in ((rsa.generate_private_key(65537, 1024), "under 2048 bits"),
                         (ec.generate_private_key(ec.SECP256K1()), "curve secp256k1")):
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        with pytest.raises(ConfigError, match=message):
            sigstore.load_public_key(pem, "k.pub")
