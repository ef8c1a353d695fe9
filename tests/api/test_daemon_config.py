"""berthd's configuration: daemon.json with Docker's key names, flags
overriding it, one-line errors naming the key (and nothing created), a
--help that describes every option, and a log with timestamps and levels
that has the API's failed requests in it."""
import json
import re
import subprocess
from pathlib import Path

import pytest

from berth import daemon_config

REPO = Path(__file__).resolve().parents[2]
BERTHD = str(REPO / "bin" / "berthd")


def test_daemon_json_with_dockers_names_and_flags_over_it(berthd):
    berthd.stop()
    (berthd.config_dir / "daemon.json").write_text(json.dumps({
        "data-root": "/nonexistent/overridden-by-the-flag",
        "log-level": "debug",
        "default-runtime": "runc",
        "runtimes": {"runc": {"path": "/usr/sbin/runc"}},
        "log-opts": {"max-size": "1m", "max-file": "2"},
        "mtu": 1400,
        "icc": False,
    }))
    berthd.restart()
    info = berthd.json("GET", "/info")
    assert info["DockerRootDir"] == str(berthd.data_root)      # the flag won
    assert info["DefaultRuntime"] == "runc"                      # the file's
    assert info["Runtimes"]["runc"]["path"] == "/usr/sbin/runc"
    status, _, _ = berthd.api("POST", "/containers/create", {"Image": "no-such-image:1"})
    assert status == 404
    status, _, _ = berthd.api("POST", "/containers/nosuch/start")
    log = berthd.log()
    stamp = r'time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z" level=(debug|info|warning|error)'
    assert re.search(stamp + r' msg="berthd .* listening on ', log), log
    # failed requests are in the daemon's log, not only in the audit log
    assert re.search(stamp + r' msg="POST /containers/nosuch/start: 404 ', log), log


@pytest.mark.parametrize("doc,says", [
    ({"mtu": "abc"}, 'key "mtu": expected an integer'),
    ({"log-level": "loud"}, 'key "log-level": \'loud\' is not a level'),
    ({"icc": "yes"}, 'key "icc": expected true or false'),
    ({"bip": "300.1.1.1/8"}, 'key "bip"'),
    ({"hosts": ["ftp://x"]}, 'key "hosts"'),
    ({"runtimes": {"runc": "/usr/sbin/runc"}}, 'key "runtimes": runtime "runc"'),
    ({"authorization-plugins": ["authz-broker"]}, 'key "authorization-plugins": berth has no plugins'),
    ({"registry-mirrorz": []}, 'unknown key "registry-mirrorz"'),
    ({"live-restore": False}, 'key "live-restore"'),
    ({"default-runtime": "nosuch"}, 'key "default-runtime" \'nosuch\': unknown runtime'),
])
def test_a_bad_value_names_the_key_and_creates_nothing(tmp_path, doc, says):
    conf = tmp_path / "daemon.json"
    conf.write_text(json.dumps(doc))
    r = subprocess.run([BERTHD, "--config-file", str(conf), "--data-root", str(tmp_path / "lib"),
                        "--exec-root", str(tmp_path / "run"), "--config-dir", str(tmp_path / "etc")],
                       capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("berthd: "), r.stderr
    assert says in lines[0] and str(conf) in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.json"]


def test_a_flag_value_is_checked_too(tmp_path):
    r = subprocess.run([BERTHD, "--mtu", "9", "--data-root", str(tmp_path / "lib"),
                        "--exec-root", str(tmp_path / "run"), "--config-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "--mtu: 9 is not an MTU" in r.stderr, r.stderr
    assert not (tmp_path / "lib").exists()


def test_help_describes_every_option():
    text = subprocess.run([BERTHD, "--help"], capture_output=True, text=True).stdout
    for flags, _key, _kind, _default, help_text in daemon_config.OPTIONS:
        long = max(flags, key=len)
        assert re.search(rf"^\s+(-\w \S+, )?{re.escape(long)}\b", text, re.M), long
        assert help_text.split()[0] in text, long
