"""Legacy --link on the default bridge and link aliases on a user network,
driven by the docker CLI on berthd and on a dockerd of the test's own: the
linker's /etc/hosts line and ALIAS_* variables, traffic to the exposed
port (berth's default bridge has inter-container traffic off, as dockerd's
with --icc=false, and a link opens the exposed ports), the names in the
list, HostConfig.Links, the link's name as a reference, rename, rm -l,
and the errors of a missing or stopped target."""
import os
import re

import pytest


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")

SERVE = "while true; do echo hi | nc -l -p 80; done"


def _err(r):
    lines = [ln for ln in r.stderr.splitlines() if "Error" in ln]
    return (r.returncode, re.sub(r"[0-9a-f]{64}", "ID", lines[-1] if lines else ""))


def legacy(docker):
    seen = {}
    docker("run", "-d", "--name", "web", "--expose", "80", "-e", "FOO=bar", "alpine", "sh", "-c",
           SERVE, check=True)
    docker("run", "-d", "--name", "cl", "--link", "web:wa", "alpine", "sleep", "600",
           check=True)
    try:
        ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web").stdout.strip()
        short = docker("inspect", "-f", "{{.Config.Hostname}}", "web").stdout.strip()
        hosts = docker("exec", "cl", "cat", "/etc/hosts").stdout
        seen["hosts line"] = [ln.replace(ip, "IP").replace(short, "HOST")
                              for ln in hosts.splitlines() if "\twa " in ln]
        env = docker("exec", "cl", "env").stdout.split()
        seen["env"] = sorted(e.replace(ip, "IP") for e in env if e.startswith("WA_"))
        seen["traffic"] = docker("exec", "cl", "nc", "-w", "5", "wa", "80").stdout
        seen["names"] = sorted(docker("ps", "--format", "{{.Names}}").stdout.split())
        seen["links"] = docker("inspect", "-f", "{{json .HostConfig.Links}}", "cl", "web").stdout
        seen["by link name"] = docker("inspect", "-f", "{{.Name}}", "cl/wa").stdout
        docker("rename", "web", "web2", check=True)
        seen["renamed"] = docker("inspect", "-f", "{{json .HostConfig.Links}}", "cl").stdout
        docker("stop", "-t", "0", "web2", check=True)
        docker("create", "--name", "cl2", "--link", "web2:w2", "alpine", "true", check=True)
        seen["stopped target"] = _err(docker("start", "cl2"))
        seen["rm -l"] = docker("rm", "-l", "cl/wa").returncode
        seen["after rm -l"] = docker("inspect", "-f", "{{json .HostConfig.Links}}", "cl").stdout
        seen["missing"] = _err(docker("create", "--link", "nosuch:x", "alpine", "true"))
    finally:
        docker("rm", "-f", "web", "web2", "cl", "cl2")
    return seen


def test_legacy_links_as_dockerd(berthd, dockerd):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    ours, theirs = legacy(berthd.docker), legacy(dockerd.docker)
    assert ours == theirs
    assert ours["traffic"] == "hi\n" and ours["hosts line"] == ["IP\twa HOST web"]
    assert "WA_PORT_80_TCP=tcp://IP:80" in ours["env"] and "WA_ENV_FOO=bar" in ours["env"]


def user_network(docker):
    docker("network", "create", "lnet", check=True)
    try:
        docker("run", "-d", "--name", "web", "--network", "lnet", "alpine", "sh", "-c", SERVE,
               check=True)
        r = docker("run", "--rm", "--network", "lnet", "--link", "web:wa", "alpine",
                   "nc", "-w", "5", "wa", "80")
        return (r.returncode, r.stdout)
    finally:
        docker("rm", "-f", "web")
        docker("network", "rm", "lnet")


def test_a_link_alias_resolves_on_a_user_network(berthd, dockerd):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    assert user_network(berthd.docker) == user_network(dockerd.docker) == (0, "hi\n")
