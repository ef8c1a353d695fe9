"""POST /images/load as dockerd answers it, compared in the same test with a
dockerd of its own: "Loading layer" progress (docker load's bars), errors in
the stream (docker-py's ImageLoadError), only the archive's own tags named,
archives made with `tar -C dir .`."""
import json
import os
import subprocess
import tarfile

import pytest

from shared_dir import FIXTURES

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemons run as root")
BUSYBOX = FIXTURES / "images" / "busybox-1.38.tar"
X_TAR = {"Content-Type": "application/x-tar"}


def _lines(data):
    return [json.loads(x) for x in data.splitlines() if x.strip()]


def _load(d, body, quiet):
    status, headers, data = d.api("POST", f"/images/load?quiet={quiet}", body, X_TAR)
    assert status == 200 and headers["content-type"] == "application/json", data
    return _lines(data)


def test_progress_and_loaded_lines_as_dockerd(berthd, dockerd):
    data = BUSYBOX.read_bytes()
    ours, theirs = _load(berthd, data, 0), _load(dockerd, data, 0)
    for lines in (ours, theirs):
        bars = [x for x in lines if x.get("status") == "Loading layer"]
        assert bars and bars[-1]["progressDetail"]["current"] == bars[-1]["progressDetail"]["total"]
        assert bars[-1]["progress"].startswith("[" + "=" * 50 + ">]")
    # the same layer under the same id, the same size, the same last bar and loaded line
    assert ours[-2] == theirs[-2] and ours[-1] == theirs[-1] == {"stream": "Loaded image: busybox:latest\n"}
    # quiet: only what was loaded
    assert _load(berthd, data, 1) == _load(dockerd, data, 1) == [theirs[-1]]


def test_only_the_archives_own_tags_are_reported(berthd, dockerd):
    data = BUSYBOX.read_bytes()
    for d in (berthd, dockerd):
        _load(d, data, 1)
        d.json("POST", "/images/busybox:latest/tag?repo=another&tag=one", expect=201)
        assert _load(d, data, 1) == [{"stream": "Loaded image: busybox:latest\n"}]


def test_errors_come_in_the_stream(berthd, dockerd):
    for d in (berthd, dockerd):
        before = d.json("GET", "/images/json")
        lines = _load(d, b"not a tar archive" * 200, 0)
        assert len(lines) == 1 and lines[0]["error"] == lines[0]["errorDetail"]["message"]
        assert d.json("GET", "/images/json") == before
    # docker-py raises ImageLoadError on such a line; the CLI says it and fails
    r = berthd.docker("load", input=b"not a tar archive" * 200)
    assert r.returncode != 0 and b"tar" in r.stderr


def test_archive_made_with_tar_c_dot_loads(berthd, dockerd, tmp_path):
    """`tar -C dir .`: every member under ./ and a "." entry first."""
    src = tmp_path / "x"
    src.mkdir()
    with tarfile.open(FIXTURES / "images" / "alpine-3.10.tar") as tf:
        tf.extractall(src, filter="data")
    dot = subprocess.run(["tar", "-C", str(src), "-c", "."], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(dot)) as tf:
        assert tf.getnames()[0] == "." and all(n.startswith("./") for n in tf.getnames()[1:])
    for d in (berthd, dockerd):
        assert _load(d, dot, 1) == [{"stream": "Loaded image: alpine:3.10\n"}]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # docker-py 5 uses distutils
def test_docker_py_raises_image_load_error(berthd, dockerd):
    docker = pytest.importorskip("docker")
    for d in (berthd, dockerd):
        client = docker.DockerClient(base_url="unix://" + d.sock, version="1.41", timeout=120)
        try:
            with pytest.raises(docker.errors.ImageLoadError):
                client.images.load(b"not a tar archive" * 200)
            (image,) = client.images.load(BUSYBOX.read_bytes())
            assert "busybox:latest" in image.tags
        finally:
            client.close()
