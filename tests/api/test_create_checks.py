"""What dockerd refuses at create, update and rename, berthd refuses with
the same status and message; the same request goes to a dockerd of the
test's own. And a 404 from create means a missing image, nothing else: the
docker CLI pulls on any 404."""
import json
import os
import re

import pytest

import peer_util


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")


def hc(**host):
    return {"Image": "alpine", "Cmd": ["true"], "HostConfig": host}


SAME_AS_DOCKERD = [
    hc(Tmpfs={"/": ""}),
    hc(Binds=["/tmp:/"]),
    hc(Mounts=[{"Type": "bind", "Source": "/tmp", "Target": "/"}]),
    hc(Mounts=[{"Type": "tmpfs", "Target": "/"}]),
    hc(Mounts=[{"Type": "bind", "Source": "/nonexistent/src", "Target": "/x"}]),
    hc(Mounts=[{"Type": "volume", "Source": "v1", "Target": "/x",
                "BindOptions": {"Propagation": "shared"}}]),
    hc(AutoRemove=True, RestartPolicy={"Name": "always"}),
    hc(RestartPolicy={"Name": "bogus"}),
    hc(RestartPolicy={"Name": "always", "MaximumRetryCount": 3}),
    hc(RestartPolicy={"Name": "on-failure", "MaximumRetryCount": -3}),
    hc(Links=["nosuch:alias"]),
    hc(IpcMode="container:nosuch"),
    hc(NanoCpus=100 * 10**9),
    hc(Memory=1024),
    hc(CpuQuota=10),
    hc(CpuPeriod=10),
    hc(Memory=10 << 20, MemoryReservation=20 << 20),
    hc(CpusetCpus="99"),
    hc(OomScoreAdj=5000),
    {"Image": "alpine", "Healthcheck": {"Test": ["CMD", "true"], "Interval": 100}},
    {"Image": "alpine", "Healthcheck": {"Test": ["CMD", "true"], "Timeout": 100}},
    {"Image": "alpine", "Healthcheck": {"Test": ["CMD", "true"], "StartPeriod": 100}},
    {"Image": "alpine", "Healthcheck": {"Test": ["CMD", "true"], "Retries": -1}},
    {"Image": "NoSuch/Repo"},
    hc(StorageOpt={"size": "1G"}),
    hc(Isolation="hyperv"),
    hc(LogConfig={"Type": "bogus"}),
    hc(LogConfig={"Type": "json-file", "Config": {"bogus": "1"}}),
    hc(LogConfig={"Type": "local", "Config": {"labels": "a"}}),
]


@pytest.mark.parametrize("body", SAME_AS_DOCKERD, ids=lambda b: json.dumps(b)[:60])
def test_create_refused_as_dockerd_refuses(berthd, dockerd, body):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    ours = peer_util.api(berthd, "POST", "/containers/create", body)
    theirs = peer_util.api(dockerd, "POST", "/containers/create", body)
    assert theirs[0] >= 400, theirs
    assert ours == theirs


def test_create_warnings_as_dockerd(berthd, dockerd):
    """What dockerd accepts with a warning (a weight this kernel cannot
    apply, no OOM killer without a limit) comes back with the same words."""
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    body = hc(BlkioWeight=300, OomKillDisable=True)
    ours = peer_util.api(berthd, "POST", "/containers/create", body)
    theirs = peer_util.api(dockerd, "POST", "/containers/create", body)
    berthd.api("DELETE", f"/containers/{ours[1]['Id']}?force=1")
    peer_util.api(dockerd, "DELETE", f"/containers/{theirs[1]['Id']}?force=1")
    assert ours[0] == theirs[0] == 201
    assert ours[1]["Warnings"] == theirs[1]["Warnings"] and len(ours[1]["Warnings"]) == 2


@pytest.mark.parametrize("query", ["platform=linux/arm64", "platform=bogus"])
def test_create_platform_as_dockerd(berthd, dockerd, query):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    body = {"Image": "alpine"}
    assert peer_util.api(berthd, "POST", "/containers/create?" + query, body) == \
        peer_util.api(dockerd, "POST", "/containers/create?" + query, body)


@pytest.mark.parametrize("body, message", [
    (hc(DeviceRequests=[{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]),
     'could not select device driver "" with capabilities: [[gpu]]'),
    ({"Image": "alpine", "User": "nosuch"},
     "unable to find user nosuch: no matching entries in passwd file"),
    (hc(NetworkMode="nosuchnet"), "network nosuchnet not found"),
    (hc(Devices=[{"PathOnHost": "/dev/nosuch"}]), "/dev/nosuch"),
])
def test_a_bad_user_network_or_device_is_no_404(berthd, body, message):
    """dockerd finds these at start; berthd at create, never as a 404,
    so `docker run` says what is wrong instead of pulling the image (and
    in dockerd's words)."""
    berthd.load("alpine-3.20")
    status, err = peer_util.api(berthd, "POST", "/containers/create", body)
    assert status == 400 and message in err["message"], (status, err)


def test_docker_run_with_a_bad_user_says_so_and_does_not_pull(berthd):
    berthd.load("alpine-3.20")
    r = berthd.docker("run", "--rm", "--user", "nosuch", "alpine", "true")
    assert r.returncode == 125 and "Unable to find image" not in r.stderr, r.stderr
    assert "unable to find user nosuch: no matching entries in passwd file" in r.stderr


def test_rename_and_update_refused_as_dockerd(berthd, dockerd):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    results = {}
    for who, api in (("berth", lambda *a: peer_util.api(berthd, *a)), ("docker", lambda *a: peer_util.api(dockerd, *a))):
        got = []
        for name, extra in (("rn1", {}), ("rn2", {"AutoRemove": True})):
            status, _ = api("POST", f"/containers/create?name={name}", hc(**extra))
            assert status == 201
        try:
            for new in ("rn1", "rn2", "bad%20name"):
                got.append(api("POST", f"/containers/rn1/rename?name={new}"))
            got.append(api("POST", "/containers/rn2/update",
                           {"RestartPolicy": {"Name": "always"}}))
            got.append(api("POST", "/containers/rn1/update", {"NanoCpus": 100 * 10**9}))
        finally:
            for name in ("rn1", "rn2"):
                api("DELETE", f"/containers/{name}?force=1")
        # the container ids in the messages differ
        results[who] = [(s, re.sub(r"[0-9a-f]{64}", "ID", b["message"])) for s, b in got]
    assert results["berth"] == results["docker"]


def test_pids_limit_minus_one_is_unlimited_and_zero_keeps_the_default(berthd):
    berthd.load("alpine-3.20")
    read = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
    r = berthd.docker("run", "--rm", "--pids-limit", "-1", "alpine", "sh", "-c", read)
    assert (r.returncode, r.stdout.strip()) == (0, "max"), r.stderr
    # the CLI sends PidsLimit 0 when the flag is not given
    r = berthd.docker("run", "--rm", "alpine", "sh", "-c", read)
    assert (r.returncode, r.stdout.strip()) == (0, "4096"), r.stderr
    berthd.docker("run", "-d", "--name", "pl", "alpine", "sleep", "600", check=True)
    try:
        berthd.docker("update", "--pids-limit", "-1", "pl", check=True)
        assert berthd.docker("exec", "pl", "sh", "-c", read).stdout.strip() == "max"
        info = berthd.json("GET", "/containers/pl/json")
        assert info["HostConfig"]["PidsLimit"] is None
        berthd.docker("update", "--memory", "64m", "pl", check=True)
        assert berthd.docker("exec", "pl", "sh", "-c", read).stdout.strip() == "max"
    finally:
        berthd.docker("rm", "-f", "pl")


def test_stop_minus_one_waits_for_the_container(berthd):
    """stop -t -1: no SIGKILL, however long the container takes."""
    berthd.load("alpine-3.20")
    berthd.docker("run", "-d", "--name", "slow", "alpine", "sh", "-c",
                  "trap 'sleep 3; exit 7' TERM; while true; do sleep 0.1; done", check=True)
    try:
        r = berthd.docker("stop", "-t", "-1", "slow")
        assert r.returncode == 0, r.stderr
        state = berthd.json("GET", "/containers/slow/json")["State"]
        assert state["ExitCode"] == 7, state
    finally:
        berthd.docker("rm", "-f", "slow")
