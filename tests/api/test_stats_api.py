"""One-shot stats reads as dockerd answers them, compared in the same test
with a dockerd of its own: stream=false carries a previous sample
(precpu_stats) so a CPU share can be computed; one-shot=true does not wait
for one."""
import os

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemons run as root")


def _run(d):
    d.load("alpine-3.20")
    c = d.json("POST", "/containers/create", {"Image": "alpine:latest", "Cmd": ["sleep", "300"],
                                              "HostConfig": {"NetworkMode": "none"}}, expect=201)
    d.json("POST", f"/containers/{c['Id']}/start", expect=204)
    return c["Id"]


def test_precpu_stats_of_one_shot_reads(berthd, dockerd):
    seen = {}
    for name, d in (("berthd", berthd), ("dockerd", dockerd)):
        cid = _run(d)
        try:
            full = d.json("GET", f"/containers/{cid}/stats?stream=false")
            quick = d.json("GET", f"/containers/{cid}/stats?stream=false&one-shot=true")
        finally:
            d.api("DELETE", f"/containers/{cid}?force=1")
        seen[name] = (bool(full["precpu_stats"].get("system_cpu_usage")),
                      full["preread"] != "0001-01-01T00:00:00Z",
                      bool(quick["precpu_stats"].get("system_cpu_usage")),
                      quick["preread"] == "0001-01-01T00:00:00Z")
    assert seen["dockerd"] == (True, True, False, True)
    assert seen["berthd"] == seen["dockerd"]
