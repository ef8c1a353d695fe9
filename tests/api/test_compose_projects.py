"""Real docker-compose v1 projects (tests/api/compose/healthy-links and
seeded-volume) brought up on berthd and on a dockerd of the test's own,
with the same compose and docker commands; what the user sees must be the
same: a health check that gates depends_on, a link alias, bind mounts, a
build, docker cp into a service's volume (running, stopped, and created
but never started), a read-only root with a tmpfs, and down -v leaving
nothing of the project."""
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from test_compose import FIRST_USER_POOL, free_subnet, routed

COMPOSE = shutil.which("docker-compose")
HERE = Path(__file__).resolve().parent / "compose"
pytestmark = [
    pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root"),
]


class Project:
    def __init__(self, daemon, project, tmp, subnet=None):
        self.d, self.dir = daemon, HERE / project
        self.name = "bp" + uuid.uuid4().hex[:8]
        self.files = [self.dir / "docker-compose.yml"]
        if subnet:
            # another daemon's bridge is on the pool berthd starts from
            override = Path(tmp) / f"{self.name}.yml"
            override.write_text('version: "2.4"\nnetworks:\n  default:\n    ipam:\n'
                                f'      config:\n        - subnet: "{subnet}"\n')
            self.files.append(override)
        self.env = {k: v for k, v in daemon.env.items() if not k.startswith("COMPOSE_")}

    def run(self, *args, check=True):
        argv = [COMPOSE, "--ansi", "never", "-p", self.name, "--project-directory", str(self.dir)]
        for f in self.files:
            argv += ["-f", str(f)]
        r = subprocess.run(argv + list(args), env=self.env, capture_output=True, text=True,
                           timeout=300, stdin=subprocess.DEVNULL)
        assert not check or r.returncode == 0, f"compose {args}: {r.stdout}\n{r.stderr}"
        return r

    def cid(self, service):
        return self.run("ps", "-q", service).stdout.strip()

    def leftovers(self):
        """What the daemon still has of the project."""
        out = []
        for kind in ("ps", "volume", "network"):
            args = [kind, "-aq"] if kind == "ps" else [kind, "ls", "-q"]
            out += [x for x in self.d.docker(*args, "--filter",
                                             f"label=com.docker.compose.project={self.name}")
                    .stdout.split()]
        return out


def _subnet():
    return free_subnet() if routed(FIRST_USER_POOL) else None


def healthy_links(daemon, tmp, subnet):
    p = Project(daemon, "healthy-links", tmp, subnet)
    seen = {}
    try:
        since = f"{time.time():.3f}"
        p.run("up", "-d", "--build")
        db, web = p.cid("db"), p.cid("web")
        # depends_on waited for the image's HEALTHCHECK
        evs = daemon.docker("events", "--since", since, "--until", f"{time.time():.3f}",
                            "--format", "{{.Action}} {{.Actor.ID}}").stdout.splitlines()
        seen["healthy before web"] = evs.index(f"health_status: healthy {db}") < \
            evs.index(f"start {web}")
        for _ in range(100):
            r = daemon.docker("exec", web, "cat", "/tmp/seen")
            if r.stdout.count("\n") >= 2:
                break
            time.sleep(0.2)
        seen["web saw"] = r.stdout
        (tmp / "extra.txt").write_text("copied-in\n")
        seen["cp running"] = daemon.docker("cp", tmp / "extra.txt", f"{db}:/var/lib/db/").returncode
        p.run("stop", "-t", "1", "db")
        (tmp / "late.txt").write_text("copied-while-stopped\n")
        seen["cp stopped"] = daemon.docker("cp", tmp / "late.txt", f"{db}:/var/lib/db/").returncode
        seen["cp out stopped"] = daemon.docker("cp", f"{db}:/var/lib/db/greeting", "-").returncode
        p.run("start", "db")
        seen["volume"] = p.run("exec", "-T", "db", "sh", "-c",
                               "cat /var/lib/db/extra.txt /var/lib/db/late.txt").stdout
        seen["ro bind"] = p.run("exec", "-T", "web", "touch", "/srv/site/x", check=False).returncode
    finally:
        p.run("down", "-v", "--rmi", "local", "-t", "1", check=False)
    seen["left"] = p.leftovers()
    return seen


def seeded_volume(daemon, tmp, subnet):
    p = Project(daemon, "seeded-volume", tmp, subnet)
    seen = {}
    try:
        p.run("up", "--no-start")
        app = p.run("ps", "-aq", "app").stdout.strip()
        (tmp / "app.conf").write_text("setting=from-cp\n")
        seen["cp created"] = daemon.docker("cp", tmp / "app.conf", f"{app}:/etc/app/").returncode
        seen["cp out created"] = daemon.docker("cp", f"{app}:/etc/app/app.conf",
                                               str(tmp / "back.conf")).returncode
        seen["back"] = (tmp / "back.conf").read_text()
        p.run("start", "app")
        for _ in range(100):
            logs = p.run("logs", "--no-color", "app").stdout
            if "pid-ok" in logs:
                break
            time.sleep(0.2)
        seen["logs"] = [ln.split("|", 1)[-1].strip() for ln in logs.splitlines() if "|" in ln]
    finally:
        p.run("down", "-v", "-t", "1", check=False)
    seen["left"] = p.leftovers()
    return seen


@pytest.mark.parametrize("scenario", [healthy_links, seeded_volume], ids=lambda f: f.__name__)
def test_compose_project_as_on_dockerd(berthd, dockerd, tmp_path, scenario):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    (tmp_path / "b").mkdir()
    (tmp_path / "d").mkdir()
    ours = scenario(berthd, tmp_path / "b", _subnet())
    theirs = scenario(dockerd, tmp_path / "d", None)
    assert ours == theirs
    assert ours["left"] == []
    if scenario is healthy_links:
        assert ours["healthy before web"] and ours["web saw"] == "hello-from-db\nsite-content\n"
        assert ours["volume"] == "copied-in\ncopied-while-stopped\n" and ours["ro bind"] == 1
    else:
        assert ours["logs"] == ["setting=from-cp", "pid-ok", "/x: Read-only file system"]
