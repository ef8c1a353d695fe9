"""A full data root and damaged records. ENOSPC (a 48 MiB tmpfs as the
data root, filled by the test) during image load, container create and
log writing gives a clear error, keeps what was there intact, and berthd
serves again once space is freed. A truncated or garbled record is
skipped at start with a warning that names it; berthd starts."""
import json
import os
import subprocess
import time

import pytest

from daemons import IMAGES, private_berthd


def _tmpfs_data_root(d):
    d.data_root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0710", "tmpfs",
                    str(d.data_root)], check=True)


@pytest.fixture
def small_root():
    # the teardown unmounts everything under the temp dir, the tmpfs too
    with private_berthd(before_start=_tmpfs_data_root) as d:
        yield d


def fill(path):
    """Fills the file system under path; returns the filler's path."""
    f = path / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={f}", "bs=1M", "count=100"],
                   capture_output=True)
    return f


def load(d, name):
    with open(IMAGES / f"{name}.tar", "rb") as f:
        return d.api("POST", "/images/load?quiet=1", f, {"Content-Type": "application/x-tar"})


def message(body):
    return json.loads(body)["message"]


def test_full_data_root(small_root):
    d = small_root
    d.load("alpine-3.20")
    cid = d.json("POST", "/containers/create", {
        "Image": "alpine", "Cmd": ["sh", "-c", "i=0; while :; do echo line $i; "
                                   "i=$((i+1)); sleep 0.01; done"]})["Id"]
    d.json("POST", f"/containers/{cid}/start", expect=204)
    before = sorted(os.listdir(d.data_root / "containers"))
    filler = fill(d.data_root)

    status, _, body = load(d, "busybox-1.38")
    # as dockerd, a load that fails once streaming has begun says so in the stream
    said = message(body) if status >= 400 else \
        json.loads(body.splitlines()[-1])["errorDetail"]["message"]
    assert "No space left on device" in said, body
    status, _, body = d.api("POST", "/containers/create", {"Image": "alpine", "Cmd": ["true"]})
    assert status >= 400 and "No space left on device" in message(body), body
    assert sorted(os.listdir(d.data_root / "containers")) == before
    time.sleep(1)   # the container keeps writing logs into a full disk
    st = d.json("GET", f"/containers/{cid}/json")["State"]
    assert st["Running"], st
    assert d.api("GET", "/_ping")[0] == 200

    os.unlink(filler)
    status, _, body = load(d, "busybox-1.38")
    assert status == 200, body
    tags = {t for i in d.json("GET", "/images/json") for t in i["RepoTags"] or []}
    assert {"alpine:latest", "busybox:latest"} <= tags
    other = d.json("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"]})
    d.json("POST", f"/containers/{other['Id']}/start", expect=204)
    # logs written before and after the full disk are readable
    deadline = time.monotonic() + 20
    while True:
        status, _, logs = d.api("GET", f"/containers/{cid}/logs?stdout=1&tail=3")
        assert status == 200
        if logs.count(b"line") >= 3:
            break
        assert time.monotonic() < deadline, logs
        time.sleep(0.2)
    assert "Traceback" not in d.log()


def test_damaged_records_are_skipped_with_a_warning():
    with private_berthd() as d:
        d.load("alpine-3.20")
        d.load("busybox-1.38")
        ids = [d.json("POST", "/containers/create", {"Image": "alpine", "Cmd": ["true"]})["Id"]
               for _ in range(3)]
        d.stop()
        d._log.close()
        garbled = d.data_root / "containers" / ids[0] / "container.json"
        garbled.write_text('{"Id": "trunc')
        (d.data_root / "containers" / ids[1] / "container.json").write_text('[1, 2]')
        (d.data_root / "images" / "tags.json").write_text("{not json")
        busybox = d.data_root / "images" / "images"
        record = sorted(busybox.iterdir())[0]
        record.write_bytes(record.read_bytes()[:20])
        d.start()
        log = d.log()
        assert str(garbled) in log and "skipped" in log
        assert str(record) in log and "tags.json" in log
        listed = [c["Id"] for c in d.json("GET", "/containers/json?all=1")]
        assert listed == [ids[2]]
        assert d.api("POST", f"/containers/{ids[2]}/start")[0] == 204
        assert len(d.json("GET", "/images/json")) == 1     # the other record is intact
        # the damaged container's files are left for the operator
        assert garbled.exists()
        assert "Traceback" not in log
