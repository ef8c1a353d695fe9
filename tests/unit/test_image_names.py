import pytest

from berth.engine.images import names
from berth.errors import BerthError

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("ref, full, familiar", [
    ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("alpine:3.20", "docker.io/library/alpine:3.20", "alpine:3.20"),
    ("library/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("docker.io/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("index.docker.io/library/alpine:1", "docker.io/library/alpine:1", "alpine:1"),
    ("user/app:1", "docker.io/user/app:1", "user/app:1"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
    ("quay.io/a/b/c:v1.0_rc-1", "quay.io/a/b/c:v1.0_rc-1", "quay.io/a/b/c:v1.0_rc-1"),
    ("Example.com/app", "Example.com/app:latest", "Example.com/app:latest"),
    ("a__b/c.d-e", "docker.io/a__b/c.d-e:latest", "a__b/c.d-e:latest"),
    (f"alpine@{D}", f"docker.io/library/alpine@{D}", f"alpine@{D}"),
    (f"alpine:3@{D}", f"docker.io/library/alpine:3@{D}", f"alpine:3@{D}"),
])
def test_normalisation(ref, full, familiar):
    r = names.parse(ref)
    assert str(r) == full
    assert r.familiar() == familiar
    assert names.parse(full) == r


def test_fields():
    r = names.parse("localhost:5000/team/app:v2")
    assert (r.registry, r.repository, r.tag, r.digest) == ("localhost:5000", "team/app", "v2", None)
    d = names.parse(f"busybox@{D}")
    assert d.tag is None and d.digest == D


def test_tag_may_be_128_chars_not_129():
    assert names.parse("a:" + "x" * 128).tag == "x" * 128
    with pytest.raises(BerthError, match="tag"):
        names.parse("a:" + "x" * 129)


@pytest.mark.parametrize("ref, part", [
    ("Alpine", "lowercase"),
    ("user/App", "'App'"),
    ("alpine:.x", "tag '.x'"),
    ("alpine:-x", "tag '-x'"),
    ("alpine:a/b", "registry 'alpine:a'"),
    ("alpine:", "tag ''"),
    ("alpine@sha256:abc", "digest 'sha256:abc'"),
    ("alpine@md5:" + "a" * 32, "digest"),
    ("a//b", "component ''"),
    ("a/b_", "'b_'"),
    ("-a", "'-a'"),
    ("", "empty"),
    (":latest", "no repository"),
    ("ab" * 32, "64-byte"),
    ("bad_host.com:x/app", "registry 'bad_host.com:x'"),
])
def test_invalid_references_name_the_bad_part(ref, part):
    with pytest.raises(BerthError) as e:
        names.parse(ref)
    assert "invalid reference format" in str(e.value)
    assert part in str(e.value)


def test_name_length_bounded():
    with pytest.raises(BerthError, match="longer than 255"):
        names.parse("a/" + "b" * 260)
