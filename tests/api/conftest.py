"""A berthd per test on a private temp dir, driven by the real docker CLI
or raw HTTP over its Unix socket.

    def test_x(berthd):
        berthd.docker("load", "-i", path)            # CompletedProcess (text)
        status, headers, body = berthd.api("GET", "/images/json")
        berthd.json("GET", "/images/json")           # parsed, asserts 2xx

Teardown removes every container, stops the daemon by its PID (SIGTERM,
SIGKILL after 10 s), unmounts whatever is left under the temp dir, deepest
first, and removes the dir. BERTHD points the fixture at another launcher."""
import pytest

import registry_proc
from daemons import IMAGES, private_berthd, private_dockerd


@pytest.fixture
def berthd():
    with private_berthd() as d:
        yield d


@pytest.fixture
def second_berthd(berthd):
    """Another private berthd beside the `berthd` fixture's."""
    with private_berthd() as d:
        yield d


@pytest.fixture(scope="module")
def alpine_berthd():
    """One private berthd for a module, alpine loaded."""
    with private_berthd() as d:
        d.load("alpine-3.20")
        yield d


@pytest.fixture
def fixture_image():
    def path(name):
        p = IMAGES / f"{name}.tar"
        if not p.exists():
            pytest.skip(f"image fixture {p} is missing")
        return p
    return path


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry on 127.0.0.1 (plain http is allowed on
    loopback only), storage under tmp_path, killed in teardown."""
    if not registry_proc.installed():
        pytest.skip("docker-registry is not installed")
    with registry_proc.running(tmp_path) as r:
        yield r


@pytest.fixture(scope="module")
def dockerd():
    """A private dockerd shared by a module's tests, to compare berthd with."""
    with private_dockerd() as d:
        yield d
