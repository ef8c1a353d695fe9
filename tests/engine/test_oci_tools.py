"""Our OCI image layouts as other tools read and write them: Debian's
umoci unpacks what we export, and what skopeo copies we import again
with the same image id."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from berth.engine.images import archive, oci_layout
from berth.engine.images.store import Store
from shared_dir import FIXTURES

# skopeo, like podman, writes its blob-info cache to /var/lib/containers
# whatever it copies: bench/podman_isolation.py's private tmpfs there
sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))
from podman_isolation import load_prefix  # noqa: E402

needs = pytest.mark.skipif(not (shutil.which("skopeo") and shutil.which("umoci")),
                           reason="skopeo and umoci come with make deps")


@pytest.fixture
def busybox(tmp_path):
    store = Store(str(tmp_path / "images"))
    with open(FIXTURES / "images" / "busybox-1.38.tar", "rb") as f:
        (image_id,) = archive.load(store, f)
    return store, image_id


@needs
def test_umoci_unpacks_our_layout(busybox, tmp_path):
    store, _ = busybox
    layout = tmp_path / "layout"
    oci_layout.export(store, "busybox", str(layout))
    bundle = tmp_path / "bundle"
    r = subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (bundle / "rootfs" / "bin" / "busybox").is_file()
    assert (bundle / "config.json").is_file()


@needs
def test_what_skopeo_copies_imports_with_the_same_id(busybox, tmp_path):
    store, image_id = busybox
    layout = tmp_path / "layout"
    oci_layout.export(store, "busybox", str(layout))
    copied = tmp_path / "copied"
    r = subprocess.run([*load_prefix(), "skopeo", "copy", f"oci:{layout}:latest",
                        f"oci:{copied}:again"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    fresh = Store(str(tmp_path / "fresh"))
    ids = oci_layout.import_(fresh, str(copied), "local/busybox:again")
    assert ids == [image_id]
    assert fresh.inspect("local/busybox:again")["Id"] == image_id
