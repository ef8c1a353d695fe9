"""docker login against berthd (POST /auth): the daemon checks the
credentials with the registry; the CLI keeps them and sends them with
push and pull. The registry is Debian's docker-registry on loopback with
htpasswd basic auth."""
import pytest

import registry_proc

pytestmark = pytest.mark.skipif(not registry_proc.installed(),
                                reason="docker-registry is not installed")


@pytest.fixture
def locked_registry(tmp_path):
    d = tmp_path / "locked"
    d.mkdir()
    with registry_proc.running(d, login=("ann", "s3cret")) as r:
        yield r


def test_login_push_pull_logout(berthd, locked_registry):
    host = locked_registry.host
    bad = berthd.docker("login", host, "-u", "ann", "-p", "wrong")
    assert bad.returncode != 0 and "401 Unauthorized" in bad.stderr, bad.stderr
    nobody = berthd.docker("login", host, "-u", "bob", "-p", "s3cret")
    assert nobody.returncode != 0
    good = berthd.docker("login", host, "-u", "ann", "-p", "s3cret")
    assert good.returncode == 0 and "Login Succeeded" in good.stdout, good.stderr
    berthd.load("busybox-1.38")
    ref = f"{host}/bb:1"
    assert berthd.docker("tag", "busybox", ref).returncode == 0
    pushed = berthd.docker("push", ref)
    assert pushed.returncode == 0, pushed.stderr
    assert berthd.docker("rmi", ref).returncode == 0
    assert berthd.docker("pull", ref).returncode == 0
    assert berthd.docker("rmi", ref).returncode == 0
    assert berthd.docker("logout", host).returncode == 0
    anon = berthd.docker("pull", ref)
    assert anon.returncode != 0 and "wants credentials" in anon.stderr, anon.stderr


def test_login_to_a_registry_off_loopback_is_refused_here(berthd):
    # the suites' daemons run with --loopback-registries-only: no request
    # may leave the machine, not even a DNS look-up
    r = berthd.docker("login", "registry.example.com", "-u", "ann", "-p", "x")
    assert r.returncode != 0 and "loopback" in r.stderr
