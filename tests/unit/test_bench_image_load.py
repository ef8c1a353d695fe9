"""bench/image_load.py's pure parts: the generated archive and the table.
Nothing here starts docker."""
import gzip
import hashlib
import importlib.util
import io
import json
import tarfile
from pathlib import Path

import pytest

from berth.engine.images import archive
from berth.engine.images.store import Store

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "image_load.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_image_load", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def small(bench, tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "small.tar"
    info = bench.make_image(path, layers=3, size=3 << 20, seed=7, tag="bench/small:v1")
    return path, info


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_generated_archive_is_consistent(small):
    path, info = small
    with tarfile.open(path) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        assert len(manifest) == 1
        entry = manifest[0]
        assert entry["RepoTags"] == ["bench/small:v1"]
        cfg_bytes = tf.extractfile(entry["Config"]).read()
        assert sha(cfg_bytes) == info["id"]
        assert entry["Config"] == info["id"][7:] + ".json"
        cfg = json.loads(cfg_bytes)
        layers = [tf.extractfile(name).read() for name in entry["Layers"]]
        repos = json.load(tf.extractfile("repositories"))
    assert cfg["rootfs"]["diff_ids"] == [sha(x) for x in layers] == info["diff_ids"]
    assert len(set(info["diff_ids"])) == 3
    top_v1 = entry["Layers"][-1].split("/")[0]
    assert repos == {"bench/small": {"v1": top_v1}}
    assert info["bytes"] == path.stat().st_size
    # about the size asked for: 3 MB of content plus tar headers
    assert 3 << 20 <= info["bytes"] < 4 << 20
    files = sum(1 for data in layers for m in tarfile.open(fileobj=io.BytesIO(data)) if m.isreg())
    assert info["files"] == files


def test_same_seed_same_bytes_other_seed_other_image(bench, small, tmp_path):
    path, info = small
    again = bench.make_image(tmp_path / "again.tar", layers=3, size=3 << 20, seed=7,
                             tag="bench/small:v1")
    assert (tmp_path / "again.tar").read_bytes() == path.read_bytes()
    assert again == info
    other = bench.make_image(tmp_path / "other.tar", layers=3, size=3 << 20, seed=8,
                             tag="bench/small:v1")
    assert other["id"] != info["id"]


def test_layers_mix_compressible_and_incompressible(bench):
    data = bench.layer_tar(seed=1, index=1, size=2 << 20)
    ratio = len(gzip.compress(data, 1)) / len(data)
    # 60% random bytes cannot shrink, the 40% text must
    assert 0.58 < ratio < 0.8
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert "opt/layer0/share/.wh.doc0000.txt" in names
    assert any(n.endswith(".bin") for n in names) and any(n.endswith(".txt") for n in names)
    first = tarfile.open(fileobj=io.BytesIO(bench.layer_tar(1, 0, 1 << 20))).getnames()
    assert not any(".wh." in n for n in first)


def test_berth_loads_the_generated_archive(bench, small, tmp_path):
    path, info = small
    store = Store(tmp_path / "store")
    with open(path, "rb") as f:
        assert archive.load(store, f) == [info["id"]]
    assert store.resolve("bench/small:v1") == info["id"]
    assert store.record(info["id"])["diff_ids"] == info["diff_ids"]
    assert bench.archive_id(path) == info["id"]


def test_berth_loader_script_runs_isolated(bench, small, tmp_path):
    """The script the bench times, run as the bench runs it (python -IS)."""
    path, info = small
    b = bench.Berth(tmp_path)
    seconds = b.load(path, info["id"])
    assert seconds > 0
    assert not (tmp_path / "store-1").exists()
    with pytest.raises(RuntimeError, match="expected sha256:0000"):
        b.load(path, "sha256:" + "0" * 64)


def test_table_with_both_engines_and_berth_only(bench):
    both = {"docker": bench.summary([0.2, 0.3]), "berth": bench.summary([0.05, 0.07])}
    results = {"alpine-3.20": both,
               "generated-200mb": {"berth": bench.summary([1.0])}}
    out = bench.table(results, ["alpine-3.20", "generated-200mb"]).splitlines()
    assert out[0].split() == ["scenario", "docker", "ms", "berth", "ms", "berth/docker"]
    alpine = out[2].split()
    assert alpine[0] == "alpine-3.20"
    assert alpine[1] == "250.0" and alpine[4] == "60.0"
    assert alpine[-1] == "0.24"
    gen = out[3].split()
    assert gen[:2] == ["generated-200mb", "skipped"]
    assert gen[2] == "1000.0" and gen[-1] == "-"
    assert bench.ratios(results) == {"alpine-3.20": pytest.approx(0.24)}


def test_summary(bench):
    s = bench.summary([0.010, 0.020, 0.030])
    assert s["mean_ms"] == pytest.approx(20.0)
    assert s["median_ms"] == pytest.approx(20.0)
    assert s["stddev_ms"] == pytest.approx(10.0)
    assert (s["min_ms"], s["max_ms"], s["runs"]) == (pytest.approx(10.0), pytest.approx(30.0), 3)
    assert bench.summary([0.5])["stddev_ms"] == 0.0


def test_dockerd_log_tail_prefers_errors(bench, tmp_path):
    d = bench.Dockerd(tmp_path)
    assert d.log_tail() == "(no log)"
    d.log.write_text('level=info msg="starting"\n'
                     'level=error msg="failed to mount overlay: invalid argument"\n'
                     'level=info msg="stopping"\n')
    assert d.log_tail() == 'level=error msg="failed to mount overlay: invalid argument"'
