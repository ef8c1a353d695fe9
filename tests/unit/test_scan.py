"""berth.engine.images.scan on fake layer trees in tmp: the merged view of
overlay layers (whiteouts, opaque dirs, later layers overriding), file
findings and config findings. Whiteouts (0:0 char devices) need mknod:
those tests skip without it."""
import os
import stat

import pytest

from berth.engine.images import scan


def mk(root, rel, mode=0o644, data=b"x"):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def mkdir(root, rel, mode=0o755):
    path = os.path.join(root, rel)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    return path


def whiteout(root, rel):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    except PermissionError:
        pytest.skip("mknod of a whiteout needs CAP_MKNOD")


def opaque(path):
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            os.setxattr(path, name, b"y")
            return
        except OSError:
            continue
    pytest.skip("no overlay.opaque xattr on this filesystem")


def layers(tmp_path, n):
    out = []
    for i in range(n):
        d = tmp_path / f"l{i}"
        d.mkdir()
        out.append((f"sha256:{i}", str(d)))
    return out


def paths(ls, overlay=True):
    return {rel: layer for rel, _, _, layer in scan.merged_files(ls, overlay)}


def kinds(findings):
    return sorted((f["Kind"], f.get("Path")) for f in findings)


# -- merged view -------------------------------------------------------------

def test_upper_layer_overrides_lower(tmp_path):
    ls = layers(tmp_path, 2)
    mk(ls[0][1], "bin/tool", 0o4755)          # setuid below
    mk(ls[1][1], "bin/tool", 0o755)           # fixed above
    mk(ls[0][1], "etc/keep")
    got = paths(ls)
    assert got["bin/tool"] == "sha256:1"
    assert got["etc/keep"] == "sha256:0"
    findings, n = scan.scan_tree(ls)
    assert not [f for f in findings if f["Kind"] == "setuid"]


def test_lower_setuid_is_found_with_its_layer(tmp_path):
    ls = layers(tmp_path, 2)
    mk(ls[0][1], "usr/bin/su", 0o4755)
    mk(ls[1][1], "app/run", 0o755)
    findings, n = scan.scan_tree(ls)
    su = [f for f in findings if f["Kind"] == "setuid"]
    assert len(su) == 1 and su[0]["Path"] == "/usr/bin/su" and su[0]["Layer"] == "sha256:0"
    assert su[0]["Severity"] == ("MEDIUM" if os.geteuid() == 0 else "LOW")
    assert "chmod u-s /usr/bin/su" in su[0]["Fix"]


def test_whiteout_hides_file_and_dir(tmp_path):
    ls = layers(tmp_path, 2)
    mk(ls[0][1], "usr/bin/su", 0o4755)
    mk(ls[0][1], "secrets/a/id_rsa", data=b"-----BEGIN RSA PRIVATE KEY-----\n")
    whiteout(ls[1][1], "usr/bin/su")
    whiteout(ls[1][1], "secrets")
    got = paths(ls)
    assert "usr/bin/su" not in got and "secrets" not in got and "secrets/a/id_rsa" not in got
    assert "usr/bin" in got
    findings, _ = scan.scan_tree(ls)
    assert findings == []


def test_whiteout_then_recreated_above(tmp_path):
    ls = layers(tmp_path, 3)
    mk(ls[0][1], "etc/conf", 0o666)
    whiteout(ls[1][1], "etc/conf")
    mk(ls[2][1], "etc/conf", 0o644)
    got = paths(ls)
    assert got["etc/conf"] == "sha256:2"
    assert scan.scan_tree(ls)[0] == []


def test_opaque_dir_hides_lower_contents(tmp_path):
    ls = layers(tmp_path, 2)
    mk(ls[0][1], "opt/app/old-suid", 0o4755)
    d = mkdir(ls[1][1], "opt/app")
    opaque(d)
    mk(ls[1][1], "opt/app/new", 0o755)
    got = paths(ls)
    assert "opt/app/old-suid" not in got
    assert got["opt/app/new"] == "sha256:1" and got["opt/app"] == "sha256:1"


def test_file_above_hides_lower_directory(tmp_path):
    ls = layers(tmp_path, 2)
    mk(ls[0][1], "data/x/y", 0o4755)
    mk(ls[1][1], "data", 0o644)
    got = paths(ls)
    assert got["data"] == "sha256:1" and "data/x/y" not in got and "data/x" not in got


def test_vfs_reads_only_the_top_layer(tmp_path):
    ls = layers(tmp_path, 2)
    mk(ls[0][1], "gone", 0o4755)     # vfs: the top layer is the whole tree
    mk(ls[1][1], "kept", 0o644)
    assert set(paths(ls, overlay=False)) == {"kept"}


def test_symlinks_are_not_followed(tmp_path):
    ls = layers(tmp_path, 1)
    outside = mk(str(tmp_path), "outside/host-suid", 0o4755)
    os.makedirs(os.path.join(ls[0][1], "bin"))
    os.symlink(outside, os.path.join(ls[0][1], "bin", "link"))
    os.symlink(os.path.dirname(outside), os.path.join(ls[0][1], "dirlink"))
    findings, n = scan.scan_tree(ls)
    assert findings == []
    assert "dirlink/host-suid" not in paths(ls)


# -- file findings -------------------------------------------------------------

def test_file_findings(tmp_path):
    ls = layers(tmp_path, 1)
    root = ls[0][1]
    mk(root, "usr/bin/wall", 0o2755)
    mk(root, "usr/bin/evil", 0o4757)                 # setuid and writable by anyone
    mk(root, "srv/notes", 0o666)
    mk(root, "etc/profile", 0o666)
    mkdir(root, "tmp", 0o1777)                       # sticky: fine
    mkdir(root, "shared", 0o777)
    mk(root, "etc/ssh/ssh_host_ed25519_key", 0o600,
       b"-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n")
    mk(root, "etc/ssl/certs/ca.pem", 0o644, b"-----BEGIN CERTIFICATE-----\n")
    findings, n = scan.scan_tree(ls)
    got = {(f["Kind"], f["Path"]): f["Severity"] for f in findings}
    assert got[("setgid", "/usr/bin/wall")] == "LOW"
    assert got[("setuid", "/usr/bin/evil")] == "HIGH"
    assert got[("world-writable", "/srv/notes")] == "MEDIUM"
    assert got[("world-writable", "/etc/profile")] == "HIGH"
    assert got[("world-writable-dir", "/shared")] == "MEDIUM"
    assert ("world-writable-dir", "/tmp") not in got
    assert got[("private-key", "/etc/ssh/ssh_host_ed25519_key")] == "HIGH"
    assert ("private-key", "/etc/ssl/certs/ca.pem") not in got
    assert n >= 10


def test_private_keys_can_be_skipped_and_large_files_are_not_read(tmp_path):
    ls = layers(tmp_path, 1)
    mk(ls[0][1], "root/.ssh/id_rsa", 0o600, b"-----BEGIN RSA PRIVATE KEY-----\n")
    mk(ls[0][1], "app/big.pem", 0o600,
       b"-----BEGIN PRIVATE KEY-----\n" + b"A" * (scan.KEY_FILE_MAX + 10))
    assert kinds(scan.scan_tree(ls, read_keys=False)[0]) == []
    assert kinds(scan.scan_tree(ls)[0]) == [("private-key", "/root/.ssh/id_rsa")]


# -- config findings ------------------------------------------------------------

@pytest.mark.parametrize("user,root", [("", True), (None, True), ("0", True), ("root", True),
                                       ("0:0", True), ("root:wheel", True), ("1000", False),
                                       ("app", False), ("nobody:nogroup", False)])
def test_root_user(user, root):
    assert scan.is_root_user(user) is root
    found = [f for f in scan.scan_config({"User": user}) if f["Kind"] == "root-user"]
    assert bool(found) is root


def test_secret_env_is_masked():
    cfg = {"User": "app", "Env": ["PATH=/usr/bin", "DB_PASSWORD=hunter2", "API_TOKEN=abc.def",
                                  "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI", "EMPTY_SECRET=",
                                  "GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D",
                                  "PWD=/", "KEYBOARD=us", "PASSENGER_MODE=1", "MY_KEY=v"],
           "Healthcheck": {"Test": ["CMD", "true"]}}
    found = scan.scan_config(cfg)
    secrets = [f for f in found if f["Kind"] == "secret-env"]
    names = sorted(f["Detail"].split("=")[0].split()[-1] for f in secrets)
    assert names == ["API_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "MY_KEY"]
    assert all(f["Severity"] == "HIGH" for f in secrets)
    text = repr(found)
    for value in ("hunter2", "abc.def", "wJalrXUtnFEMI"):
        assert value not in text
    assert "<masked, 7 characters>" in text
    assert [f["Kind"] for f in found if f["Kind"] != "secret-env"] == []


def test_privileged_ports_and_healthcheck():
    found = scan.scan_config({"User": "1", "ExposedPorts": {"80/tcp": {}, "8080/tcp": {},
                                                            "53/udp": {}}})
    assert kinds(found) == [("no-healthcheck", None), ("privileged-port", None),
                            ("privileged-port", None)]
    assert scan.scan_config({"User": "1", "Healthcheck": {"Test": ["NONE"]}})[0]["Kind"] \
        == "no-healthcheck"


def test_summary_sort_and_worst():
    fs = [scan.finding("LOW", "setgid", "d", "f", "/b"), scan.finding("HIGH", "secret-env", "d", "f"),
          scan.finding("MEDIUM", "setuid", "d", "f", "/a")]
    assert [f["Severity"] for f in scan.sort_findings(fs)] == ["HIGH", "MEDIUM", "LOW"]
    assert scan.summarize(fs, 10, 2) == {"HIGH": 1, "MEDIUM": 1, "LOW": 1, "INFO": 0,
                                         "Files": 10, "Layers": 2}
    assert scan.worst(fs) == "HIGH" and scan.worst([]) is None
