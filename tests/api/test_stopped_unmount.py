"""As Docker does: a container that stopped has no mounted filesystem; cp,
export, diff and a new start mount it again (tests the overlay driver)."""
import io
import json
import tarfile

from procutil import wait_until


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def unmounted_soon(path, timeout=10):
    """berthd unmounts once the shim has finished the runtime's delete,
    a moment after the client saw the exit."""
    return wait_until(lambda: not mounted(path), timeout)


def test_stopped_container_is_unmounted_and_mounted_again_on_demand(berthd):
    berthd.load("alpine-3.20")
    ok(berthd.docker("run", "--name", "stopped1", "--network", "none", "alpine", "sh", "-c",
                     "echo kept >> /f"))
    info = json.loads(ok(berthd.docker("inspect", "stopped1")))[0]
    merged = info["GraphDriver"]["Data"]["MergedDir"]
    assert unmounted_soon(merged), "a stopped container's rootfs is still mounted"
    assert "A /f" in ok(berthd.docker("diff", "stopped1")).splitlines()
    out = berthd.docker("cp", "stopped1:/f", "-", input=b"", check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as t:
        assert t.extractfile("f").read() == b"kept\n"
    ok(berthd.docker("start", "-a", "stopped1"))
    assert unmounted_soon(merged)
    out = berthd.docker("export", "stopped1", input=b"", check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as t:
        assert t.extractfile("f").read() == b"kept\nkept\n"
    ok(berthd.docker("rm", "stopped1"))
    assert not mounted(merged)
