"""GET /images/json's reference filter as dockerd applies it, compared in the
same test with a dockerd of its own: Go's path.Match of the pattern on each
familiar name (with and without its tag), and only the matching names kept
in RepoTags."""
import json
import os
import urllib.parse

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemons run as root")

PATTERNS = ["busybox", "busybox:latest", "busybox:*", "*box", "alpine:3.*", "b*", "mine/*",
            "mine/*:v1", "docker.io/library/busybox", "*", "*/*", "nothing", "localhost:5000/x"]


def _listed(d, pattern):
    q = urllib.parse.quote(json.dumps({"reference": [pattern]}))
    return sorted((i["Id"], sorted(i["RepoTags"] or [])) for i in d.json("GET", f"/images/json?filters={q}"))


def test_reference_filter_as_dockerd(berthd, dockerd):
    for d in (berthd, dockerd):
        for name in ("busybox-1.38", "alpine-3.10"):
            d.load(name)
        for repo, tag in (("mine/box", "v1"), ("mine/box", "v2"), ("localhost:5000/x", "latest")):
            d.json("POST", f"/images/busybox:latest/tag?repo={repo}&tag={tag}", expect=201)
    differ = [f"{p}: berthd {_listed(berthd, p)}, dockerd {_listed(dockerd, p)}"
              for p in PATTERNS if _listed(berthd, p) != _listed(dockerd, p)]
    assert not differ, "\n".join(differ)
