"""A trust policy in the daemon's config dir: unsigned images do not run;
signing (berth's /berth/images/.../sign) makes them run; a re-tagged copy
under another name does not inherit the signature."""
import json
import shutil

import pytest

from berth.engine.images import trust

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")


def test_policy_requires_a_signature_before_run(berthd, tmp_path):
    berthd.load("alpine-3.20")
    key = tmp_path / "me.key"
    pub = trust.generate_key(str(key))
    keys = berthd.config_dir / "keys"
    keys.mkdir()
    shutil.copy(pub, keys / "me.pub")
    (berthd.config_dir / "policy.json").write_text(json.dumps(
        {"default": "reject",
         "repositories": {"docker.io/library/alpine": {"signedBy": ["keys/me.pub"]}}}))
    r = berthd.docker("run", "--rm", "alpine", "true")
    assert r.returncode != 0 and "not signed by a trusted key" in r.stderr, r.stderr
    status, _, body = berthd.api("POST", f"/berth/images/alpine:latest/sign?key={key}&signer=me")
    assert status == 201, body
    assert berthd.docker("run", "--rm", "alpine", "true").returncode == 0
    out = berthd.json("POST", f"/berth/images/alpine:latest/verify?keys={keys}")
    assert out["Signers"] == ["me"]
    assert berthd.docker("tag", "alpine", "other/alpine:1").returncode == 0
    r = berthd.docker("run", "--rm", "other/alpine:1", "true")
    assert r.returncode != 0 and "rejected by policy" in r.stderr, r.stderr
    # a broken policy refuses everything with its reason, not silently
    (berthd.config_dir / "policy.json").write_text("{")
    r = berthd.docker("run", "--rm", "alpine", "true")
    assert r.returncode != 0 and "policy" in r.stderr
