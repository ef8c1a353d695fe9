"""berth's sigstore signing and policy.json against containers/image, the
real thing behind skopeo and podman, all on loopback.

What Debian 12's tools can do, found out here: skopeo 1.9.3 and podman
4.3.1 read policy.json (sigstoreSigned included) and registries.d, find
sigstore attachments, and copy them to another repository, writing the
attachment themselves; but both are built with "Debian-local change:
sigstore disabled", so neither can sign (--sign-by-sigstore-private-key)
nor check a sigstore signature. So the tests check that skopeo finds
berth's signature where it looks for one, that berthd accepts a signature
containers/image copied, and that skopeo and berth pick the same scope of
one policy.json. Should a later skopeo check signatures, the first test
asks it to accept berth's."""
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

import containers_tools

REPO = Path(__file__).resolve().parents[2]
BERTH = str(REPO / "bin" / "berth")
SKOPEO_DISABLED = "Debian-local change: sigstore disabled"

pytestmark = [
    pytest.mark.skipif(not containers_tools.installed(), reason="skopeo is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="skopeo runs in a private mount namespace"),
]


@pytest.fixture
def berth(berthd, tmp_path):
    if not os.access(BERTH, os.X_OK):
        pytest.skip(f"{BERTH} is missing: run make build")
    env = dict(berthd.env, COSIGN_PASSWORD="correct horse")
    env.pop("BERTH_HOST", None)

    def run(*args, password=None):
        e = dict(env, COSIGN_PASSWORD=password) if password is not None else env
        return subprocess.run([BERTH, *map(str, args)], env=e, capture_output=True, text=True,
                              timeout=180, cwd=tmp_path)

    def ok(*args, **kw):
        r = run(*args, **kw)
        assert r.returncode == 0, f"berth {args}: {r.stderr}\n{berthd.log()}"
        return r.stdout
    run.ok = ok
    return run


def one_line_error(r):
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def sigstore_policy(pub, **scopes):
    return {"default": [{"type": "reject"}],
            "transports": {"docker": {s: [dict({"type": "sigstoreSigned", "keyPath": str(pub)},
                                               **({"signedIdentity": i} if i else {}))]
                                      for s, i in scopes.items()}}}


def test_berth_signs_where_skopeo_looks_and_accepts_what_skopeo_copied(
        berth, berthd, registry, fixture_image, tmp_path):
    host = registry.host
    berth.ok("load", "-i", fixture_image("busybox-1.38"))
    berth.ok("tag", "busybox:latest", f"{host}/s/busybox:1")
    berth.ok("push", f"{host}/s/busybox:1")

    out = berth.ok("image", "keygen", "--output-key-prefix", tmp_path / "cosign")
    assert "Private key written to" in out
    key, pub = tmp_path / "cosign.key", tmp_path / "cosign.pub"
    assert key.read_text().startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "key file" in one_line_error(berth("image", "keygen", "--output-key-prefix",
                                              tmp_path / "cosign"))

    sk = containers_tools.Skopeo(tmp_path / "skopeo")
    sk.use_sigstore_attachments(host)
    sk.set_policy(sigstore_policy(pub, **{host: None}))
    r = sk.run("copy", "--src-tls-verify=false", f"docker://{host}/s/busybox:1",
               f"dir:{tmp_path / 'before'}")
    assert r.returncode != 0 and "no signature exists" in r.stderr, r.stderr

    assert "wrong password" in one_line_error(
        berth("image", "sign", "--key", key, f"{host}/s/busybox:1", password="wrong"))
    berth.ok("tag", "busybox:latest", f"{host}/s/busybox:unpushed")
    assert "manifest unpushed: 404" in one_line_error(
        berth("image", "sign", "--key", key, f"{host}/s/busybox:unpushed"))
    out = berth.ok("image", "sign", "--key", key, f"{host}/s/busybox:1")
    assert out.startswith(f"Signed {host}/s/busybox:1 (sha256:") and ".sig" in out

    # skopeo now finds berth's signature in the attachment (and, where it is
    # built with sigstore, accepts it)
    r = sk.run("copy", "--src-tls-verify=false", f"docker://{host}/s/busybox:1",
               f"dir:{tmp_path / 'after'}")
    assert r.returncode == 0 or SKOPEO_DISABLED in r.stderr, r.stderr
    assert "no signature exists" not in r.stderr

    out = berth.ok("image", "verify", "--key", pub, f"{host}/s/busybox:1")
    assert f"signed as {host}/s/busybox:1" in out
    other = tmp_path / "other"
    berth.ok("image", "keygen", "--output-key-prefix", other)
    assert "no valid signature by the key" in one_line_error(
        berth("image", "verify", "--key", f"{other}.pub", f"{host}/s/busybox:1"))

    # containers/image copies image and signature, writing the attachment itself
    sk.set_policy(containers_tools.ACCEPT_ALL)
    sk.ok("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
          f"docker://{host}/s/busybox:1", f"docker://{host}/c/copy:1")
    policy = berthd.config_dir / "policy.json"
    policy.write_text(json.dumps(sigstore_policy(pub, **{
        f"{host}/s": None,
        f"{host}/c": {"type": "exactReference", "dockerReference": f"{host}/s/busybox:1"}})))
    r = berthd.docker("pull", f"{host}/c/copy:1")
    assert r.returncode == 0, r.stderr + berthd.log()
    r = berthd.docker("create", "--name", "signed", f"{host}/c/copy:1", "true")
    assert r.returncode == 0, r.stderr
    berthd.docker("rm", "signed")
    # the same image under a name the policy does not cover, or re-tagged
    assert berthd.docker("tag", f"{host}/c/copy:1", "example.com/x:1").returncode == 0
    r = berthd.docker("create", "example.com/x:1", "true")
    assert r.returncode != 0 and "rejected by policy" in r.stderr, r.stderr
    policy.write_text(json.dumps(sigstore_policy(pub, **{host: None})))
    r = berthd.docker("create", f"{host}/c/copy:1", "true")
    assert r.returncode != 0 and f"names {host}/s/busybox:1, not {host}/c/copy:1" in r.stderr
    assert berthd.docker("rmi", f"{host}/c/copy:1", "example.com/x:1").returncode == 0
    r = berthd.docker("pull", f"{host}/c/copy:1")
    assert r.returncode != 0 and "not signed by a trusted key" in r.stderr, r.stderr
    # a requirement berth does not implement is refused by name, not skipped
    policy.write_text(json.dumps({"default": [{"type": "signedBy", "keyType": "GPGKeys",
                                               "keyPath": "/none.gpg"}]}))
    r = berthd.docker("pull", f"{host}/s/busybox:1")
    assert r.returncode != 0 and "signedBy) is not implemented by berth" in r.stderr, r.stderr


def test_skopeo_and_berth_pick_the_same_scope(registry, tmp_path):
    from berth.engine.images import archive, registry as reg_client
    from berth.engine.images.store import Store
    from berth.engine.images.trust import Untrusted
    from shared_dir import FIXTURES
    host = registry.host
    src = Store(str(tmp_path / "src"))
    with open(FIXTURES / "images" / "busybox-1.38.tar", "rb") as f:
        (image_id,) = archive.load(src, f)
    refs = [f"{host}/{r}" for r in ("a/x:1", "a/b/y:1", "a/b/y:2", "c/z:1", "c/z:2", "d:1")]
    for ref in refs:
        src.tag(image_id, ref)
        reg_client.push(src, ref)
    accept, reject = [{"type": "insecureAcceptAnything"}], [{"type": "reject"}]
    doc = {"default": accept, "transports": {"docker": {
        host: reject, f"{host}/a": accept, f"{host}/a/b": reject, f"{host}/a/b/y:2": accept,
        f"{host}/c/z": accept, f"{host}/c/z:2": reject, "": accept}}}
    sk = containers_tools.Skopeo(tmp_path / "skopeo", doc)
    policy = tmp_path / "berth-policy.json"
    policy.write_text(json.dumps(doc))
    theirs, ours = [], []
    for i, ref in enumerate(refs):
        r = sk.run("copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{tmp_path}/o{i}")
        assert r.returncode == 0 or "rejected by policy" in r.stderr, r.stderr
        theirs.append(r.returncode == 0)
        try:
            reg_client.pull(Store(str(tmp_path / f"s{i}")), ref, policy=str(policy))
            ours.append(True)
        except Untrusted:
            ours.append(False)
    assert ours == theirs == [True, False, True, True, False, False]
