"""The whole path a `docker run alpine` takes, without the daemon: the real
alpine image loaded into a store, its layers unpacked once into snapshots,
a config generated from the image config and run options, the container
run by berth-runtime."""
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from berth.engine.images import archive
from berth.engine.images.store import Store
from berth.engine.specgen import RunOptions, generate
from berth.engine.storage import layers as L
from berth.engine.storage.snapshots import mounted_at, pick_driver
from berth.errors import BerthError
from berth.oci import jsonio
from shared_dir import FIXTURES

RUNTIME = str(Path(__file__).resolve().parents[2] / "bin" / "berth-runtime")


@pytest.fixture
def world(tmp_path, session_token):
    store = Store(str(tmp_path / "images"))
    with open(FIXTURES / "images" / "alpine-3.20.tar", "rb") as f:
        (image_id,) = archive.load(store, f)
    driver = pick_driver(str(tmp_path / "storage"))
    state = tmp_path / "state"
    parent = f"berth-test-{session_token}-e2e"
    made = []

    def run(cmd, **opts):
        cid = f"berth-test-{session_token}-e2e-{secrets.token_hex(3)}"
        made.append(cid)
        rootfs = L.container_rootfs(store, driver, image_id, cid)
        spec = generate(store.config(image_id)["config"],
                        RunOptions(container_id=cid, cmd=cmd, cgroup_parent="/" + parent, **opts),
                        rootfs)
        bundle = tmp_path / cid
        bundle.mkdir()
        (bundle / "config.json").write_text(jsonio.dumps(spec))
        p = subprocess.run([RUNTIME, "--root", str(state), "run", "--bundle", str(bundle), cid],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        return p, rootfs

    yield store, driver, image_id, run
    for cid in made:
        subprocess.run([RUNTIME, "--root", str(state), "delete", "-f", cid], capture_output=True)
        driver.unmount(cid)
        driver.remove_container(cid)
    for top in ("/sys/fs/cgroup",):
        for d in sorted(Path(top).glob(f"*/{parent}"), key=lambda p: -len(str(p))):
            os.rmdir(d)


def test_alpine_runs_from_the_store(world):
    store, driver, image_id, run = world
    p, rootfs = run(["sh", "-c", "cat /etc/alpine-release; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines[0].startswith("3.20")
    assert "Seccomp:" in lines and lines[lines.index("Seccomp:") + 1] == "2"


def test_containers_share_layers_and_keep_writes_to_themselves(world):
    store, driver, image_id, run = world
    p1, root1 = run(["sh", "-c", "echo mine > /etc/motd"])
    p2, root2 = run(["cat", "/etc/motd"])
    assert p1.returncode == 0 and p2.returncode == 0, (p1.stderr, p2.stderr)
    assert "mine" not in p2.stdout
    if driver.name == "overlay":
        # nothing copied: both mounts stack the same layer directory
        chain = L.chain_ids(store.config(image_id)["rootfs"]["diff_ids"])[-1]
        layer = driver.layer_path(chain)
        assert layer in mounted_at(root1) and layer in mounted_at(root2)


def test_a_blob_altered_on_disk_is_refused(world, tmp_path):
    store, driver, image_id, run = world
    blob = store.record(image_id)["layers"][0]
    path = store.blob_path(blob)
    data = bytearray(open(path, "rb").read())
    data[-100] ^= 0xFF  # inside the tar's padding: still a valid archive
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(BerthError, match="content on disk is"):
        L.ensure_layers(store, driver, image_id)
    assert not driver.has_layer(L.chain_ids(store.config(image_id)["rootfs"]["diff_ids"])[0])


def test_chain_ids_follow_the_oci_rule():
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    import hashlib
    assert L.chain_ids([a]) == [a]
    assert L.chain_ids([a, b])[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
