"""Fields of a create that must work as on dockerd, or be refused by name,
never ignored: driven with the real docker CLI against berthd."""
import os
import subprocess
import time

import pytest

import peer_util


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")


def wait_health(d, name, want, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = d.json("GET", f"/containers/{name}/json")["State"].get("Health") or {}
        if h.get("Status") == want:
            return h
        time.sleep(0.3)
    raise AssertionError(f"{name} never became {want}: {h}")


def test_the_images_healthcheck_runs_and_the_request_can_tune_it(berthd, tmp_path):
    berthd.load("alpine-3.20")
    (tmp_path / "Dockerfile").write_text(
        "FROM alpine\nHEALTHCHECK --interval=300ms --retries=1 CMD test -e /tmp/ok\n")
    berthd.docker("build", "-q", "-t", "hc:1", str(tmp_path), check=True)
    berthd.docker("run", "-d", "--name", "hc1", "hc:1", "sh", "-c",
                  "touch /tmp/ok; sleep 600", check=True)
    # only the timeout given: the test and interval still come from the image
    berthd.docker("run", "-d", "--name", "hc2", "--health-timeout", "50ms", "hc:1",
                  "sleep", "600", check=True)
    try:
        wait_health(berthd, "hc1", "healthy")
        h = wait_health(berthd, "hc2", "unhealthy")
        cfg = berthd.json("GET", "/containers/hc2/json")["Config"]["Healthcheck"]
        assert cfg["Test"] == ["CMD-SHELL", "test -e /tmp/ok"] and cfg["Timeout"] == 50_000_000
        assert h["Log"][-1]["ExitCode"] == 1, h
    finally:
        berthd.docker("rm", "-f", "hc1", "hc2")


def test_health_timeout_is_reported_as_go_prints_it(berthd):
    berthd.load("alpine-3.20")
    berthd.docker("run", "-d", "--name", "hct", "--health-cmd", "sleep 5",
                  "--health-interval", "300ms", "--health-timeout", "50ms",
                  "--health-retries", "1", "alpine", "sleep", "600", check=True)
    try:
        h = wait_health(berthd, "hct", "unhealthy")
        assert h["Log"][-1]["Output"] == "Health check exceeded timeout (50ms)", h
        assert h["Log"][-1]["ExitCode"] == -1
    finally:
        berthd.docker("rm", "-f", "hct")


def fields(docker, work):
    """The same docker commands on either daemon -> what the user saw."""
    seen = {}
    run = ("run", "--rm")
    for user in ("daemon", "daemon:wheel", "1234", "nobody"):
        seen[f"id {user}"] = docker(*run, "--user", user, "alpine", "id").stdout
    seen["nis domain"] = docker(*run, "--domainname", "example.org", "alpine", "cat",
                                "/proc/sys/kernel/domainname").stdout
    seen["host net"] = docker(*run, "--network", "host", "alpine", "sh", "-c",
                              "hostname; cat /etc/hosts /etc/resolv.conf").stdout
    seen["systempaths"] = docker(*run, "--security-opt", "systempaths=unconfined", "alpine",
                                 "sh", "-c", "awk '$5 ~ /^\\/proc\\/./' /proc/self/mountinfo").stdout
    seen["cgroup knobs"] = docker(*run, "--memory-swappiness", "10", "--device-cgroup-rule",
                                  "c 42:* rmw", "alpine", "sh", "-c",
                                  "cat /sys/fs/cgroup/memory/memory.swappiness; "
                                  "grep '^c 42:' /sys/fs/cgroup/devices/devices.list").stdout
    for driver in ("none", "local", ""):
        name = f"log-{driver or 'default'}"
        opt = ("--log-driver", driver) if driver else ()
        r = docker("run", "--name", name, *opt, "alpine", "sh", "-c", "echo out; echo err >&2")
        logs = docker("logs", name)
        seen[f"logs {name}"] = (r.stdout, logs.returncode, logs.stdout, logs.stderr.strip(),
                                docker("inspect", "-f", "{{json .HostConfig.LogConfig}}",
                                       name).stdout)
        docker("rm", "-f", name)
    # -v makes a missing host directory (--mount refuses it: test_create_checks)
    r = docker(*run, "-v", f"{work}/made/by/v:/x", "alpine", "ls", "-d", "/x")
    seen["-v missing source"] = (r.returncode, r.stdout, (work / "made/by/v").is_dir())
    r = docker(*run, "-v", f"{work}:/a:rshared", "alpine", "true")
    seen["rshared"] = (r.returncode, [ln for ln in r.stderr.splitlines() if "Error" in ln])
    nested = work / "nested"
    (nested / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(nested / "sub")], check=True)
    try:
        (nested / "sub" / "f").write_text("x")
        for rec in ("enabled", "disabled"):
            seen[f"recursive {rec}"] = docker(
                *run, "--mount", f"type=bind,src={nested},dst=/n,bind-recursive={rec}",
                "alpine", "ls", "/n/sub").stdout
    finally:
        subprocess.run(["umount", str(nested / "sub")], check=True)
    return seen


def test_fields_as_dockerd(berthd, dockerd, tmp_path):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    (tmp_path / "b").mkdir()
    (tmp_path / "d").mkdir()
    ours, theirs = fields(berthd.docker, tmp_path / "b"), fields(dockerd.docker, tmp_path / "d")
    assert ours.pop("rshared")[1][0].replace(str(tmp_path / "b"), "P") == \
        theirs.pop("rshared")[1][0].replace(str(tmp_path / "d"), "P")
    assert ours == theirs
    assert ours["id daemon"] == "uid=2(daemon) gid=2(daemon) groups=1(bin),2(daemon),4(adm)\n"
    assert ours["nis domain"] == "example.org\n" and ours["recursive disabled"] == ""
    assert ours["systempaths"] == "" and ours["recursive enabled"] == "f\n"
    assert ours["logs log-none"][1:4] == (1, "", "Error response from daemon: configured logging "
                                                 "driver does not support reading")
    assert ours["logs log-local"][2:4] == ("out\n", "err")
    assert ours["cgroup knobs"] == "10\nc 42:* rwm\n"


def volumes_from(docker, bind):
    seen = {}
    docker("volume", "create", "named1", check=True)
    docker("run", "-d", "--name", "src1", "-v", "/anon", "-v", "named1:/named",
           "-v", f"{bind}:/bnd:ro", "--tmpfs", "/tmpf", "alpine", "sh", "-c",
           "echo a > /anon/a; echo n > /named/n; sleep 600", check=True)
    try:
        r = docker("run", "--rm", "--volumes-from", "src1", "alpine", "sh", "-c",
                   "cat /anon/a /named/n; touch /bnd/x; mountpoint -q /tmpf || echo no-tmpfs")
        seen["inherited"] = (r.stdout, r.stderr)
        r = docker("run", "--rm", "--volumes-from", "src1:ro", "alpine", "touch", "/anon/b")
        seen["ro"] = (r.returncode, r.stderr)
        docker("create", "--name", "vf", "--volumes-from", "src1", "-v", f"{bind}:/named",
               "alpine", "true", check=True)
        # (dockerd lists them in Go's map order: compared as a set)
        seen["mounts"] = sorted(docker("inspect", "-f", "{{range .Mounts}}{{.Destination}} "
                                       "{{.Type}} {{.RW}} {{.Mode}};{{end}}", "vf")
                                .stdout.strip().split(";"))
        docker("rm", "-v", "vf", check=True)
        seen["kept"] = len(docker("volume", "ls", "-q").stdout.split())
        docker("rm", "-f", "-v", "src1", check=True)
        seen["after rm -v"] = docker("volume", "ls", "-q").stdout.split()
        docker("run", "--rm", "-v", "/data", "alpine", "true", check=True)
        seen["after run --rm"] = docker("volume", "ls", "-q").stdout.split()
        seen["missing"] = docker("create", "--volumes-from", "nosuch", "alpine").stderr
    finally:
        docker("rm", "-f", "src1", "vf")
        docker("volume", "rm", "named1")
    return seen


def test_volumes_from_and_rm_v_as_dockerd(berthd, dockerd, tmp_path):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    ours, theirs = volumes_from(berthd.docker, tmp_path), volumes_from(dockerd.docker, tmp_path)
    assert ours == theirs
    assert ours["inherited"][0] == "a\nn\nno-tmpfs\n" and ours["after rm -v"] == ["named1"]
    assert "/named bind true " in ours["mounts"]


def test_masked_and_readonly_paths_from_the_request(berthd, dockerd):
    """docker-py and the API can set them; the CLI only empties them."""
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    body = {"Image": "alpine", "Cmd": ["sh", "-c", "wc -c < /proc/cpuinfo; touch /srv/x"],
            "HostConfig": {"MaskedPaths": ["/proc/cpuinfo"], "ReadonlyPaths": ["/srv"]}}
    out = []
    for create, docker in ((lambda: berthd.json("POST", "/containers/create", body)["Id"],
                            berthd.docker),
                           (lambda: peer_util.api(dockerd, "POST", "/containers/create", body)[1]["Id"],
                            dockerd.docker)):
        cid = create()
        try:
            r = docker("start", "-a", cid)
            out.append((r.stdout, r.stderr.strip()))
        finally:
            docker("rm", "-f", cid)
    assert out[0] == out[1] == ("0\n", "touch: /srv/x: Read-only file system"), out
