"""Rootless mode's plain rules: where the subordinate ids come from, where
a rootless daemon keeps things, what it refuses and what it changes in a
spec (the e2e test is tests/api/test_rootless.py)."""
import os

import pytest

from berth.engine.containers import rootless as rules
from berth.errors import ConfigError
from berth.sys import procfs, rootless


def test_subordinate_range_by_name_or_uid(tmp_path):
    f = tmp_path / "subuid"
    f.write_text("bad line\nother:100000:65536\n1234:200000:0\n1234:300000:65536\nann:1:x\n")
    assert rootless.subordinate(str(f), "nobody-here", 1234) == (300000, 65536)
    assert rootless.subordinate(str(f), "other", 1) == (100000, 65536)
    assert rootless.subordinate(str(f), "ann", 9) is None
    assert rootless.subordinate(str(tmp_path / "missing"), "other", 1) is None


def test_default_dirs_follow_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/cfg")
    data, run, conf = rootless.default_dirs(1000, "/home/ann")
    assert (data, run, conf) == ("/home/ann/.local/share/berth", f"{tmp_path}/berth",
                                 "/cfg/berth")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent-run-dir")
    assert rootless.default_dirs(1000, "/home/ann")[1] == "/tmp/berth-run-1000/berth"


@pytest.mark.parametrize("key,value,flag", [("Memory", 64 << 20, "--memory"),
                                            ("NanoCpus", 10 ** 9, "--cpus"),
                                            ("PidsLimit", 100, "--pids-limit")])
def test_limits_are_refused_by_flag(key, value, flag):
    with pytest.raises(ConfigError) as e:
        rules.check({key: value})
    assert flag in str(e.value) and "rootless" in str(e.value)


def test_unset_limits_and_plain_networks_pass():
    rules.check({"Memory": 0, "PidsLimit": -1, "NetworkMode": "default"})
    rules.check({"NetworkMode": "container:web"})
    with pytest.raises(ConfigError, match="bridge networks need a root berthd"):
        rules.check({"NetworkMode": "mynet"})


def test_adjust_drops_cgroup_parts_and_narrows_ping_range():
    spec = {"process": {"oomScoreAdj": 0},
            "linux": {"cgroupsPath": "/berth/x", "resources": {"pids": {"limit": 2048}},
                      "sysctl": {"net.ipv4.ping_group_range": "0 2147483647"}}}
    rules.adjust(spec)
    assert "cgroupsPath" not in spec["linux"] and "resources" not in spec["linux"]
    assert "oomScoreAdj" not in spec["process"]
    lo, hi = spec["linux"]["sysctl"]["net.ipv4.ping_group_range"].split()
    # the highest gid this process's namespace maps (65536 under a rootless berthd)
    assert lo == "0" and int(hi) == rules._mapped_gids() - 1


def test_keeper_is_trusted_only_with_its_start_time(tmp_path):
    me = os.getpid()
    start = procfs.start_time(me)
    f = tmp_path / rootless.KEEPER
    assert rootless.live_keeper(str(tmp_path)) is None            # no file
    f.write_text(f"{me} {start}\n")
    assert rootless.live_keeper(str(tmp_path)) == me
    f.write_text(f"{me} {int(start) + 1}\n")                       # a reused pid
    assert rootless.live_keeper(str(tmp_path)) is None
    f.write_text("garbage")
    assert rootless.live_keeper(str(tmp_path)) is None
