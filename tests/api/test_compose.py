"""docker-compose v1 (Debian's /usr/bin/docker-compose 1.29.2, docker-py
underneath) driving berthd: a three-service project (tests/api/compose/
three-services) brought up, inspected, exec'd into, stopped and taken down,
with the daemon's API checked afterwards for anything of the project left.
The image is loaded into the fixture's daemon first; compose must use it
and never pull. Name resolution between services is not tested here."""
import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

COMPOSE = shutil.which("docker-compose")
PROJECT_DIR = Path(__file__).resolve().parent / "compose" / "three-services"
SERVICES = ["db", "web", "worker"]
FIRST_USER_POOL = "172.30.0.0/24"   # what a fresh berthd gives a project's default network

pytestmark = [
    pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root"),
]


def routed(subnet):
    """Host routes (main table) overlapping subnet -> ["dst dev name", ...]."""
    net = ipaddress.ip_network(subnet)
    r = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "main"],
                       capture_output=True, text=True)
    return [f"{x['dst']} dev {x.get('dev')}" for x in json.loads(r.stdout or "[]")
            if x.get("dst") not in (None, "", "default")
            and ipaddress.ip_network(x["dst"], strict=False).overlaps(net)]


def free_subnet():
    for cand in ipaddress.ip_network("172.31.0.0/16").subnets(new_prefix=24):
        if not routed(str(cand)):
            return str(cand)
    pytest.skip("no free /24 in 172.31.0.0/16 on this host")


class Project:
    """docker-compose -p <name> -f <file>[ -f override] against daemon d."""

    def __init__(self, d, tmp, name=None, subnet=None):
        self.d = d
        self.name = name or "bt" + uuid.uuid4().hex[:10]
        self.files = [PROJECT_DIR / "docker-compose.yml"]
        if subnet:
            # only when the host already routes what berthd would pick (another
            # daemon's bridge): see test_two_daemons_bring_up_a_project_each
            override = Path(tmp) / f"{self.name}.override.yml"
            override.write_text('version: "2.4"\nnetworks:\n  default:\n    ipam:\n'
                                f'      config:\n        - subnet: "{subnet}"\n')
            self.files.append(override)
        self.env = dict(d.env)
        for k in list(self.env):
            if k.startswith("COMPOSE_"):
                del self.env[k]
        # (no COMPOSE_INTERACTIVE_NO_CLI: with it, compose 1.29's `run` starts the
        # container before it attaches, its pty.sockets() being a lazy map(),
        # so a short one-off's output is lost with any daemon)

    def run(self, *args, check=True, timeout=240):
        argv = [COMPOSE, "--ansi", "never", "-p", self.name, "--project-directory", str(PROJECT_DIR)]
        for f in self.files:
            argv += ["-f", str(f)]
        r = subprocess.run(argv + list(map(str, args)), env=self.env, capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check:
            assert r.returncode == 0, (f"docker-compose {' '.join(map(str, args))} -> "
                                       f"{r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}\n"
                                       f"berthd log:\n{self.d.log()}")
        return r

    def label_filter(self):
        return quote(json.dumps({"label": [f"com.docker.compose.project={self.name}"]}))

    def containers(self):
        return self.d.json("GET", f"/containers/json?all=1&filters={self.label_filter()}")

    def networks(self):
        return [n for n in self.d.json("GET", "/networks")
                if n["Name"].startswith(self.name + "_")
                or (n.get("Labels") or {}).get("com.docker.compose.project") == self.name]

    def volumes(self):
        vols = self.d.json("GET", "/volumes")["Volumes"] or []
        return [v for v in vols if v["Name"].startswith(self.name + "_")
                or (v.get("Labels") or {}).get("com.docker.compose.project") == self.name]

    def down(self):
        try:
            self.run("down", "-v", "-t", "1", check=False, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            pass


def unpack_layers(d, image="alpine"):
    """Creates and removes one container so that the image's layers are
    unpacked before compose creates several containers at once (see
    test_parallel_creates_from_a_freshly_loaded_image)."""
    c = d.json("POST", "/containers/create", {"Image": image, "Cmd": ["true"],
                                              "HostConfig": {"NetworkMode": "none"}})
    d.json("DELETE", f"/containers/{c['Id']}")


@pytest.fixture
def alpine(berthd):
    berthd.load("alpine-3.20")
    unpack_layers(berthd)
    return berthd


@pytest.fixture
def project(alpine, tmp_path):
    p = Project(alpine, tmp_path, subnet=free_subnet() if routed(FIRST_USER_POOL) else None)
    try:
        yield p
    finally:
        p.down()


def wait_for(what, fn, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def by_service(containers):
    return {c["Labels"]["com.docker.compose.service"]: c for c in containers}


def test_up_ps_logs_exec_stop_down(project):
    d = project.d
    t0 = int(time.time()) - 1
    r = project.run("up", "-d")
    assert "Pulling" not in r.stdout + r.stderr           # the local image is used
    assert f'Creating network "{project.name}_default"' in r.stderr
    assert f'Creating volume "{project.name}_ticks"' in r.stderr

    # ps: three services, each Up
    r = project.run("ps")
    rows = [l for l in r.stdout.splitlines() if l.startswith(project.name + "_")]
    assert sorted(l.split()[0] for l in rows) == [f"{project.name}_{s}_1" for s in SERVICES], r.stdout
    assert all(re.search(r"\bUp\b", l) for l in rows), r.stdout
    r = project.run("ps", "--services", "--filter", "status=running")
    assert sorted(r.stdout.split()) == SERVICES
    assert len(project.run("ps", "-q").stdout.split()) == 3

    # what compose asked berthd for, seen through the API
    cs = by_service(project.containers())
    assert sorted(cs) == SERVICES
    assert all(c["State"] == "running" for c in cs.values())
    worker = d.json("GET", f"/containers/{cs['worker']['Id']}/json")
    assert {"ROLE=worker", "GREETING=hello from compose"} <= set(worker["Config"]["Env"])
    nets = project.networks()
    assert [n["Name"] for n in nets] == [f"{project.name}_default"]
    net = d.json("GET", f"/networks/{nets[0]['Id']}")
    assert sorted(c["Name"] for c in net["Containers"].values()) == \
        [f"{project.name}_{s}_1" for s in SERVICES]
    for s, c in cs.items():
        assert list(c["NetworkSettings"]["Networks"]) == [f"{project.name}_default"], (s, c)
    vols = project.volumes()
    assert [v["Name"] for v in vols] == [f"{project.name}_ticks"]
    assert vols[0]["Labels"]["com.docker.compose.project"] == project.name

    # depends_on: web started before worker
    evs = [e for e in d.events(since=t0)
           if e.get("Type") == "container" and e.get("Action") == "start"
           and e["Actor"]["Attributes"].get("com.docker.compose.project") == project.name]
    order = [e["Actor"]["Attributes"]["com.docker.compose.service"] for e in evs]
    assert sorted(order) == SERVICES and order.index("web") < order.index("worker"), order

    # the healthcheck turns db healthy
    wait_for("db healthy", lambda: d.json("GET", f"/containers/{cs['db']['Id']}/json")
             ["State"].get("Health", {}).get("Status") == "healthy")
    r = project.run("ps")
    assert re.search(rf"{project.name}_db_1 .*Up \(healthy\)", r.stdout), r.stdout

    # logs, per service and all together
    wait_for("web ticks", lambda: "web tick 2" in project.run("logs", "--no-color", "web").stdout)
    logs = project.run("logs", "--no-color").stdout
    assert re.search(r"^worker_1 +\| hello from compose as worker$", logs, re.M), logs
    assert re.search(r"^web_1 +\| web tick 1$", logs, re.M), logs

    # exec, and the named volume shared by web (rw) and worker (ro)
    r = project.run("exec", "-T", "web", "cat", "/etc/alpine-release")
    assert r.stdout.startswith("3.20")
    assert project.run("exec", "-T", "worker", "sh", "-c", "exit 3", check=False).returncode == 3
    ticks = project.run("exec", "-T", "worker", "cat", "/ticks/ticks").stdout
    assert ticks.startswith("tick 1\n")
    r = project.run("exec", "-T", "worker", "sh", "-c", "echo x >> /ticks/ticks", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stdout + r.stderr

    # a one-off container: run --rm
    r = project.run("run", "--rm", "-T", "worker", "sh", "-c", "echo one-off $ROLE")
    assert r.stdout == "one-off worker\n"
    assert len(project.containers()) == 3

    # stop: all exited, nothing removed
    project.run("stop", "-t", "1")
    cs = project.containers()
    assert len(cs) == 3 and all(c["State"] == "exited" for c in cs), cs
    r = project.run("ps")
    rows = [l for l in r.stdout.splitlines() if l.startswith(project.name + "_")]
    assert len(rows) == 3 and all("Exit" in l for l in rows), r.stdout

    # down -v: containers, network and volume gone
    r = project.run("down", "-v")
    assert f"Removing network {project.name}_default" in r.stderr
    assert f"Removing volume {project.name}_ticks" in r.stderr
    assert project.containers() == []
    assert d.json("GET", "/containers/json?all=1") == []
    assert project.networks() == []
    assert sorted(n["Name"] for n in d.json("GET", "/networks")) == ["bridge", "host", "none"]
    assert project.volumes() == []
    assert (d.json("GET", "/volumes")["Volumes"] or []) == []


def test_up_twice_is_idempotent_and_stop_start_keeps_containers(project):
    project.run("up", "-d")
    ids = {c["Id"] for c in project.containers()}
    r = project.run("up", "-d")
    assert "is up-to-date" in r.stderr, r.stderr
    assert {c["Id"] for c in project.containers()} == ids
    # stop then start rather than `restart`: berthd's restart races the old
    # run's shim clean-up (test_dockerpy.py::test_restart_twenty_times)
    project.run("stop", "-t", "1", "web")
    assert by_service(project.containers())["web"]["State"] == "exited"
    project.run("start", "web")
    web = by_service(project.containers())["web"]
    assert web["Id"] in ids and web["State"] == "running"
    info = project.d.json("GET", f"/containers/{web['Id']}/json")
    assert info["RestartCount"] == 0 and info["State"]["Running"]
    # the volume survived the restart: the new PID 1 counts from 1 again,
    # appending to the ticks of the first one
    wait_for("a second 'tick 1'", lambda: project.run(
        "exec", "-T", "web", "cat", "/data/ticks").stdout.splitlines().count("tick 1") >= 2)
    project.run("down", "-v", "-t", "1")
    assert project.containers() == [] and project.networks() == [] and project.volumes() == []


def test_parallel_creates_from_a_freshly_loaded_image(berthd):
    """What `docker-compose up` does with services that do not depend on each
    other: POST /containers/create for each at the same time. A few rounds of
    load, 6 parallel creates, rmi, so the race is all but certain to show."""
    import threading
    errors = []
    for _ in range(4):
        berthd.load("alpine-3.20")
        results = []

        def create(i):
            results.append(berthd.api("POST", f"/containers/create?name=par{i}",
                                      {"Image": "alpine", "Cmd": ["true"],
                                       "HostConfig": {"NetworkMode": "none"}}))
        threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        errors += [(st, body[:300]) for st, _, body in results if st != 201]
        berthd.remove_containers()
        st, _, body = berthd.api("DELETE", "/images/alpine?force=1")
        assert st == 200, body
    assert errors == []


def test_two_daemons_bring_up_a_project_each(berthd, second_berthd, tmp_path):
    projects = []
    try:
        for d in (berthd, second_berthd):
            d.load("alpine-3.20")
            unpack_layers(d)
            p = Project(d, tmp_path)          # no subnet override: what a user gets
            projects.append(p)
            p.run("up", "-d")
        for p in projects:
            assert sorted(c["State"] for c in p.containers()) == ["running"] * 3
    finally:
        for p in reversed(projects):
            p.down()


def test_compose_build_builds_with_the_legacy_builder(alpine, tmp_path):
    """`build:` in a compose file goes through docker-py's images.build,
    i.e. POST /build."""
    name = "bb" + uuid.uuid4().hex[:10]
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "Dockerfile").write_text("FROM alpine\nARG WHO=nobody\n"
                                     "RUN echo \"built for $WHO\" > /built\n"
                                     "CMD [\"cat\", \"/built\"]\n")
    (proj / "docker-compose.yml").write_text(
        'version: "2.4"\nservices:\n  app:\n    build:\n      context: .\n'
        '      args:\n        WHO: compose\n    image: ' + name + ':1\n    network_mode: none\n')
    env = {k: v for k, v in alpine.env.items() if not k.startswith("COMPOSE_")}
    argv = [COMPOSE, "--ansi", "never", "-p", name, "--project-directory", str(proj),
            "-f", str(proj / "docker-compose.yml")]
    r = subprocess.run(argv + ["build"], env=env, capture_output=True, text=True, timeout=240,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    out = alpine.docker("run", "--rm", "--network", "none", f"{name}:1", check=True).stdout
    assert out == "built for compose\n"
    alpine.docker("rmi", f"{name}:1", check=True)
