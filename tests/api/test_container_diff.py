"""docker diff as dockerd shows it, compared in the same test with a dockerd
of its own: what the engine made for the container (/etc/hosts and the like,
mount points) is not the container's change; what the process did is."""
import os

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemons run as root")


def test_diff_shows_only_what_the_container_did(berthd, dockerd):
    seen = []
    for d in (berthd, dockerd):
        d.load("alpine-3.20")
        c = d.json("POST", "/containers/create", {
            "Image": "alpine:latest", "Cmd": ["sh", "-c", "touch /root/x /tmp/y; rm /usr/bin/wget"],
            "HostConfig": {"NetworkMode": "none"}}, expect=201)
        d.json("POST", f"/containers/{c['Id']}/start", expect=204)
        assert d.json("POST", f"/containers/{c['Id']}/wait")["StatusCode"] == 0
        seen.append(sorted(d.json("GET", f"/containers/{c['Id']}/changes"), key=lambda e: e["Path"]))
        d.json("DELETE", f"/containers/{c['Id']}", expect=204)
    assert seen[0] == seen[1]   # (dockerd does not always list them in order)
    assert {"Path": "/usr/bin/wget", "Kind": 2} in seen[0] and {"Path": "/root/x", "Kind": 1} in seen[0]
