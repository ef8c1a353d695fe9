"""zstd layers made by other tools (Debian's zstd, skopeo copy
--dest-compress-format zstd) load, pull, unpack and save like gzip ones,
and their hostile forms (bombs, truncated or corrupt frames) are refused
the way gzip's are. No root needed except for the registry round trip's
private mount namespace (skopeo)."""
import hashlib
import io
import json
import os
import subprocess
import tarfile

import pytest

zstandard = pytest.importorskip("zstandard")

from berth.engine.images import archive, oci_layout, registry  # noqa: E402
from berth.engine.images.store import Store  # noqa: E402
from berth.engine.storage.unpack import extract  # noqa: E402
from berth.errors import BerthError  # noqa: E402
import containers_tools  # noqa: E402
import registry_proc  # noqa: E402
from shared_dir import FIXTURES  # noqa: E402

BUSYBOX_TAR = FIXTURES / "images" / "busybox-1.38.tar"
BUSYBOX = "sha256:c6348fa86ba0fb2108c9334f5fe913ddc6d853313e655891f133a0127c30099f"
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MB = 1 << 20

pytestmark = pytest.mark.skipif(not BUSYBOX_TAR.exists(), reason="image fixtures missing")
need_skopeo = pytest.mark.skipif(not containers_tools.installed() or os.geteuid() != 0,
                                 reason="needs skopeo and root (private mount namespace)")


def zstd_tool(data, *args):
    return subprocess.run(["zstd", "-q", "-c", *args], input=data, capture_output=True,
                          check=True, timeout=120).stdout


def recompressed_archive(src, *zstd_args):
    """The docker-archive src with every layer member compressed by the zstd tool."""
    out = io.BytesIO()
    with tarfile.open(src) as tin, tarfile.open(fileobj=out, mode="w") as tout:
        layers = set(json.load(tin.extractfile("manifest.json"))[0]["Layers"])
        for m in tin:
            data = tin.extractfile(m).read() if m.isreg() else None
            if m.name in layers and data is not None:
                data = zstd_tool(data, *zstd_args)
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if data is not None else None)
    out.seek(0)
    return out


def docker_archive_with_layer(blob, diff_id):
    """A one-layer docker-archive whose layer member is blob as given."""
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    cname = hashlib.sha256(cfg).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cname, "RepoTags": ["hostile:1"],
                            "Layers": ["layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in (("manifest.json", manifest), (cname, cfg), ("layer.tar", blob)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    out.seek(0)
    return out


def zstd_zeros(total, chunk=16 * MB):
    """Concatenated frames are one zstd stream: compress one chunk of zeros
    and repeat it, instead of compressing a gigabyte."""
    one = zstandard.ZstdCompressor(level=19).compress(bytes(chunk))
    return one * (total // chunk)


def bomb_layer():
    head = tarfile.TarInfo("zeros")
    head.size = 1 << 30
    return zstandard.ZstdCompressor().compress(head.tobuf(tarfile.PAX_FORMAT)) \
        + zstd_zeros(1 << 30)


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "store"))


@pytest.fixture(scope="module")
def busybox_diff_ids(tmp_path_factory):
    ref = Store(str(tmp_path_factory.mktemp("ref") / "store"))
    with open(BUSYBOX_TAR, "rb") as f:
        archive.load(ref, f)
    return ref.config(BUSYBOX)["rootfs"]["diff_ids"]


def same_layers(store, image_id, diff_ids):
    """skopeo rewrites the config as OCI's (a new image id); the layers stay."""
    assert store.config(image_id)["rootfs"]["diff_ids"] == diff_ids
    with store.open_blob(store.record(image_id)["layers"][0]) as f:
        assert f.read(4) == b"\x28\xb5\x2f\xfd"


def saved_layers(store, ref):
    """{member name: sha256} of the layer files `save` writes."""
    buf = io.BytesIO()
    archive.save(store, [ref], buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        layers = json.load(tf.extractfile("manifest.json"))[0]["Layers"]
        return ["sha256:" + hashlib.sha256(tf.extractfile(n).read()).hexdigest()
                for n in layers]


@pytest.mark.parametrize("zstd_args", [[], ["-19", "--no-check"], ["-T2", "--long=27"]])
def test_docker_archive_with_zstd_layers_loads_unpacks_and_saves(store, tmp_path, zstd_args):
    assert archive.load(store, recompressed_archive(BUSYBOX_TAR, *zstd_args)) == [BUSYBOX]
    rec = store.record(BUSYBOX)
    same_layers(store, BUSYBOX, rec["diff_ids"])
    dest = tmp_path / "rootfs"
    dest.mkdir()
    with store.open_blob(rec["layers"][0]) as f:
        extract(f, str(dest), max_bytes=64 * MB)
    assert (dest / "bin" / "busybox").is_file()
    # save writes the layers uncompressed, as docker save does: they hash to the diff ids
    assert saved_layers(store, "busybox:latest") == rec["diff_ids"]


@need_skopeo
def test_oci_layout_compressed_by_skopeo_imports_and_exports_as_zstd(store, tmp_path,
                                                                     busybox_diff_ids):
    sk = containers_tools.Skopeo(tmp_path / "skopeo")
    layout = tmp_path / "zstd-layout"
    sk.ok("copy", "--dest-compress-format", "zstd", f"docker-archive:{BUSYBOX_TAR}",
          f"oci:{layout}:latest")
    (image_id,) = oci_layout.import_(store, str(layout), "local/busybox:zstd")
    same_layers(store, image_id, busybox_diff_ids)
    out = tmp_path / "exported"
    oci_layout.export(store, "local/busybox:zstd", str(out))
    index = json.loads((out / "index.json").read_text())
    manifest = json.loads((out / "blobs" / "sha256" / index["manifests"][0]["digest"][7:])
                          .read_text())
    assert [d["mediaType"] for d in manifest["layers"]] == [MT_ZSTD]
    # skopeo checks every digest on the way back in
    ref_name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    sk.ok("copy", f"oci:{out}:{ref_name}", f"oci:{tmp_path / 'again'}:x")


@need_skopeo
@pytest.mark.skipif(not registry_proc.installed(), reason="docker-registry is not installed")
def test_pull_of_what_skopeo_pushed_as_zstd_and_push_back(store, tmp_path, busybox_diff_ids):
    sk = containers_tools.Skopeo(tmp_path / "skopeo")
    with registry_proc.running(tmp_path) as reg:
        sk.ok("copy", "--dest-tls-verify=false", "--dest-compress-format", "zstd",
              f"docker-archive:{BUSYBOX_TAR}", f"docker://{reg.host}/z/busybox:1")
        image_id = registry.pull(store, f"{reg.host}/z/busybox:1")
        same_layers(store, image_id, busybox_diff_ids)
        # berth pushes the zstd blob as it is, under an OCI manifest skopeo accepts
        store.tag(image_id, f"{reg.host}/z/again:1")
        registry.push(store, f"{reg.host}/z/again:1")
        raw = json.loads(sk.ok("inspect", "--tls-verify=false", "--raw",
                               f"docker://{reg.host}/z/again:1"))
        assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert [d["mediaType"] for d in raw["layers"]] == [MT_ZSTD]
        sk.ok("copy", "--src-tls-verify=false", f"docker://{reg.host}/z/again:1",
              f"oci:{tmp_path / 'pulled'}:x")


def test_zstd_bomb_stops_at_the_unpack_cap(tmp_path):
    raw = bomb_layer()
    assert len(raw) < 2 * MB
    with pytest.raises(BerthError, match=r"'zeros'.*declares 1073741824 bytes.*limit"):
        extract(io.BytesIO(raw), str(tmp_path), max_bytes=100 * MB)


def test_zstd_bomb_in_a_pax_header_stops_at_the_stream_cap(tmp_path):
    head = tarfile.TarInfo("pax")
    head.type, head.size = tarfile.XHDTYPE, 1 << 30
    raw = zstandard.ZstdCompressor().compress(head.tobuf(tarfile.USTAR_FORMAT)) \
        + zstd_zeros(1 << 30)
    with pytest.raises(BerthError, match=r"limit.*decompressed stream too large"):
        extract(io.BytesIO(raw), str(tmp_path), max_bytes=100 * MB)


def test_zstd_bomb_in_an_archive_stops_at_the_load_cap(store):
    f = docker_archive_with_layer(bomb_layer(), "sha256:" + "0" * 64)
    with pytest.raises(BerthError, match=r"^layer layer.tar: uncompressed layer is larger "
                                         r"than 104857600 bytes$"):
        archive.load(store, f, max_bytes=100 * MB)
    assert store.images() == []


def _layer_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = os.urandom(200_000)
        ti = tarfile.TarInfo("f")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("cut", [1, 4, 5000])
def test_truncated_zstd_is_refused_at_load_and_unpack(store, tmp_path, cut):
    plain = _layer_tar()
    blob = zstd_tool(plain)[:-cut]
    diff_id = "sha256:" + hashlib.sha256(plain).hexdigest()
    with pytest.raises(BerthError, match=r"^layer layer.tar: zstd stream is truncated$"):
        archive.load(store, docker_archive_with_layer(blob, diff_id))
    assert store.images() == []
    with pytest.raises(BerthError, match=r"zstd stream is truncated"):
        extract(io.BytesIO(blob), str(tmp_path))


def test_corrupt_zstd_is_refused_at_load(store):
    plain = _layer_tar()
    blob = bytearray(zstd_tool(plain))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(BerthError, match=r"^layer layer.tar: (corrupt zstd data: .+|"
                                         r"content hashes to .*)"):
        archive.load(store, docker_archive_with_layer(
            bytes(blob), "sha256:" + hashlib.sha256(plain).hexdigest()))
    assert store.images() == []
