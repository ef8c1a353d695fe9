"""The events of a container's life, as a dockerd of the test's own emits
them for the same docker commands: which, in which order, with which
attributes (exec ids, exit codes, signal numbers, the network connects of
a start and disconnects of an exit, commit's image tag and attach)."""
import os
import re
import time

import pytest


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")
FORMAT = ("{{.Type}} {{.Action}} {{range $k, $v := .Actor.Attributes}}{{if or (eq $k \"exitCode\")"
          " (eq $k \"signal\") (eq $k \"execID\") (eq $k \"imageRef\") (eq $k \"oldName\")}}"
          "{{$k}}={{$v}} {{end}}{{end}}")


def events(docker, since, until):
    out = docker("events", "--since", since, "--until", until, "--format", FORMAT).stdout
    return [re.sub(r"execID=[0-9a-f]{64}", "execID=X", ln).strip() for ln in out.splitlines()]


def wait_for(docker, since, action, count):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = [e for e in events(docker, since, f"{time.time():.3f}") if f" {action}" in e]
        if len(seen) >= count:
            return
        time.sleep(0.3)
    raise AssertionError(f"no {count} {action} events")


def life(docker):
    since = f"{time.time():.3f}"
    docker("run", "-d", "--name", "ev1", "alpine", "sleep", "600", check=True)
    docker("exec", "ev1", "true", check=True)
    docker("exec", "-d", "ev1", "sh", "-c", "exit 3", check=True)
    wait_for(docker, since, "exec_die", 2)
    for args in (("pause", "ev1"), ("unpause", "ev1"), ("rename", "ev1", "ev2"),
                 ("restart", "-t", "1", "ev2"), ("kill", "-s", "USR1", "ev2"),
                 ("stop", "-t", "1", "ev2"), ("start", "ev2"), ("commit", "ev2", "evimg:1"),
                 ("top", "ev2"), ("rm", "-f", "ev2"), ("run", "--rm", "alpine", "true"),
                 ("rmi", "evimg:1")):
        docker(*args, check=True)
    time.sleep(1)
    return events(docker, since, f"{time.time():.3f}")


def test_a_containers_events_as_dockerd(berthd, dockerd):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    ours, theirs = life(berthd.docker), life(dockerd.docker)
    assert ours == theirs
    assert "container exec_die execID=X exitCode=3" in ours
    assert ours.count("network disconnect") == 4 and "container kill signal=10" in ours
