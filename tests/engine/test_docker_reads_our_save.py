"""The real Docker engine (Debian's docker.io) loads what berth saves:
alpine loaded into berth, saved again, and `docker load`ed into a dockerd
of the test's own (temp dirs, no bridge, no iptables, no IP forwarding)."""
import shutil
import sys
from pathlib import Path

import pytest

from berth.engine.images import archive
from berth.engine.images.store import Store
from shared_dir import FIXTURES

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from image_load import Dockerd  # noqa: E402  (the bench's isolated dockerd)

pytestmark = pytest.mark.skipif(shutil.which("dockerd") is None,
                                reason="dockerd comes with make deps (docker.io)")


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    d = Dockerd(tmp_path_factory.mktemp("dockerd"))
    try:
        d.start()
    except RuntimeError as e:
        d.stop()
        pytest.fail(f"dockerd did not start: {e}")
    yield d
    d.stop()


def test_docker_load_accepts_our_save(dockerd, tmp_path):
    store = Store(str(tmp_path / "images"))
    with open(FIXTURES / "images" / "alpine-3.20.tar", "rb") as f:
        (image_id,) = archive.load(store, f)
    saved = tmp_path / "saved.tar"
    with open(saved, "wb") as f:
        archive.save(store, ["alpine:latest"], f)
    r = dockerd.docker("load", "-i", str(saved))
    assert r.returncode == 0, r.stderr
    r = dockerd.docker("image", "inspect", "-f", "{{.Id}} {{.RepoTags}}", "alpine:latest")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == image_id
    dockerd.docker("rmi", "-f", "alpine:latest")
