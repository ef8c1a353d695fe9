"""`berth-runtime spec` template and `berth-runtime features`."""
import copy
import os
import shutil
import subprocess

import pytest

from berth.errors import ConfigError
from berth.oci import jsonio, spec
from berth.oci.defaults import default_spec
from berth.runtime import features as feat
from berth.runtime import mounts
from berth.runtime.security import seccomp

RUNC = shutil.which("runc")
needs_runc = pytest.mark.skipif(RUNC is None, reason="runc not installed")


def _runc_spec(tmp_path, rootless):
    args = [RUNC, "spec"] + (["--rootless"] if rootless else [])
    subprocess.run(args, cwd=tmp_path, check=True, capture_output=True)
    return jsonio.load_file(tmp_path / "config.json")


def _ns(cfg):
    return [n["type"] for n in cfg["linux"]["namespaces"]]


def _mount(cfg, dest):
    return next(m for m in cfg["mounts"] if m["destination"] == dest)


def test_default_spec_has_runc_shape():
    cfg = default_spec()
    assert cfg["ociVersion"] == "1.0.2-dev"
    proc = cfg["process"]
    assert proc["terminal"] is True
    assert proc["user"] == {"uid": 0, "gid": 0}
    assert proc["args"] == ["sh"]
    assert proc["cwd"] == "/"
    assert any(e.startswith("PATH=/usr/local/sbin:") for e in proc["env"])
    assert "TERM=xterm" in proc["env"]
    assert proc["noNewPrivileges"] is True
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    caps = proc["capabilities"]
    assert set(caps) == {"bounding", "effective", "permitted", "ambient"}
    for kind in caps.values():
        assert kind == ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert cfg["root"] == {"path": "rootfs", "readonly": True}
    assert cfg["hostname"] == "berth"
    assert [m["destination"] for m in cfg["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert _mount(cfg, "/sys")["type"] == "sysfs"
    assert "gid=5" in _mount(cfg, "/dev/pts")["options"]
    assert _ns(cfg) == ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    assert cfg["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert "/proc/kcore" in cfg["linux"]["maskedPaths"]
    assert "/sys/devices/virtual/powercap" in cfg["linux"]["maskedPaths"]
    assert "/proc/sys" in cfg["linux"]["readonlyPaths"]
    assert "uidMappings" not in cfg["linux"]


def test_rootless_spec_maps_caller_and_drops_what_needs_privilege():
    cfg = default_spec(rootless=True)
    linux = cfg["linux"]
    assert "user" in _ns(cfg) and "network" not in _ns(cfg)
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux
    assert "gid=5" not in _mount(cfg, "/dev/pts")["options"]
    sys_mount = _mount(cfg, "/sys")
    assert sys_mount["type"] == "none" and sys_mount["source"] == "/sys"
    assert sys_mount["options"][0] == "rbind" and "ro" in sys_mount["options"]


def test_each_call_returns_an_independent_dict():
    a = default_spec()
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["linux"]["maskedPaths"].clear()
    a["mounts"][2]["options"].append("x")
    b = default_spec()
    assert "CAP_SYS_ADMIN" not in b["process"]["capabilities"]["bounding"]
    assert b["linux"]["maskedPaths"]
    assert "x" not in b["mounts"][2]["options"]


@pytest.mark.parametrize("rootless", [False, True])
def test_spec_round_trips_through_jsonio(rootless):
    cfg = default_spec(rootless)
    assert jsonio.loads(jsonio.dumps(cfg, indent=4)) == cfg
    assert jsonio.loads(jsonio.dumps(cfg)) == cfg


@pytest.mark.parametrize("rootless", [False, True])
def test_spec_passes_berth_validation(tmp_path, rootless):
    (tmp_path / "rootfs").mkdir()
    rootfs, ns = spec.validate(default_spec(rootless), str(tmp_path))
    assert rootfs == str(tmp_path / "rootfs")
    assert "mount" in ns


@needs_runc
@pytest.mark.parametrize("rootless", [False, True])
def test_spec_equals_runc_spec_but_for_documented_changes(tmp_path, rootless):
    theirs = _runc_spec(tmp_path, rootless)
    ours = copy.deepcopy(default_spec(rootless))
    # the differences defaults.py's docstring owns up to
    assert ours.pop("hostname") == "berth"
    theirs.pop("hostname")
    ours["linux"]["namespaces"].remove({"type": "cgroup"})
    ours["linux"]["maskedPaths"].remove("/sys/devices/virtual/powercap")
    # runc 1.2+ adds the cgroup namespace and powercap itself
    if {"type": "cgroup"} in theirs["linux"]["namespaces"]:
        theirs["linux"]["namespaces"].remove({"type": "cgroup"})
    if "/sys/devices/virtual/powercap" in theirs["linux"]["maskedPaths"]:
        theirs["linux"]["maskedPaths"].remove("/sys/devices/virtual/powercap")
    assert ours == theirs
    # key order too: people diff the two files
    assert list(ours) == list(theirs)
    assert list(ours["process"]) == list(theirs["process"])
    assert list(ours["linux"]) == list(theirs["linux"])


def test_features_shape():
    f = feat.features()
    assert f["ociVersionMin"] == "1.0.0"
    assert f["ociVersionMax"] == default_spec()["ociVersion"]
    assert f["hooks"] == ["prestart", "createRuntime", "createContainer",
                          "startContainer", "poststart", "poststop"]
    linux = f["linux"]
    assert linux["cgroup"] == {"v1": True, "v2": True, "systemd": False, "systemdUser": False}
    assert linux["apparmor"] == {"enabled": False}
    assert linux["selinux"] == {"enabled": False}
    assert linux["seccomp"]["enabled"] is True
    assert "SCMP_ACT_ERRNO" in linux["seccomp"]["actions"]
    assert "SCMP_ARCH_X86_64" in linux["seccomp"]["archs"]
    caps = linux["capabilities"]
    assert len(caps) == len(set(caps)) == 41
    assert caps[0] == "CAP_CHOWN" and caps[40] == "CAP_CHECKPOINT_RESTORE"
    assert f["annotations"]["org.opencontainers.berth.version"]
    assert jsonio.loads(jsonio.dumps(f, indent=4)) == f


def test_features_namespaces_are_the_ones_berth_accepts():
    assert sorted(feat.features()["linux"]["namespaces"]) == sorted(spec.NAMESPACES)


def test_features_seccomp_lists_only_what_compiles():
    sec = feat.features()["linux"]["seccomp"]
    for action in sec["actions"]:
        # as a rule's action: NOTIFY cannot be the default (it would take write)
        seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                         "listenerPath": "/run/agent.sock",
                         "syscalls": [{"names": ["getpid"], "action": action}]})
    for op in sec["operators"]:
        seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "valueTwo": 1, "op": op}]}]})
    for arch in sec["archs"]:
        # the name must be known; a big-endian arch cannot share a filter
        # with the native little-endian one, which libseccomp reports as EDOM
        try:
            seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch]})
        except ConfigError as e:
            assert "cannot be filtered on this host" in str(e), (arch, e)
    # a rule may notify an agent; as the default it is refused by name
    assert "SCMP_ACT_NOTIFY" in sec["actions"]
    with pytest.raises(ConfigError, match="cannot be the default"):
        seccomp.compile({"defaultAction": "SCMP_ACT_NOTIFY"})


def test_features_mount_options_are_handled_by_berth_not_passed_as_data():
    opts = feat.features()["mountOptions"]
    assert opts == sorted(opts)
    for opt in opts:
        assert mounts.parse_options([opt])[3] == "", opt
    # options refused as unsupported must not be advertised
    for refused in mounts.UNSUPPORTED:
        assert refused not in opts
    for must in ("ro", "rbind", "rprivate", "nosuid", "nosymfollow", "rro"):
        assert must in opts


@needs_runc
def test_features_has_runcs_keys(tmp_path):
    out = subprocess.run([RUNC, "features"], capture_output=True, check=True).stdout
    theirs = jsonio.loads(out)
    ours = feat.features()

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            if k == "annotations":
                continue
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, prefix + k + ".")
        return out

    assert keys(ours) == keys(theirs)
    assert ours["linux"]["capabilities"] == theirs["linux"]["capabilities"]
    assert set(ours["linux"]["seccomp"]["actions"]) == set(theirs["linux"]["seccomp"]["actions"])
    assert ours["linux"]["seccomp"]["operators"] == theirs["linux"]["seccomp"]["operators"]
    assert set(theirs["linux"]["seccomp"]["archs"]) <= set(ours["linux"]["seccomp"]["archs"])
    lib = theirs["annotations"].get("io.github.seccomp.libseccomp.version")
    if lib:
        assert ours["annotations"]["io.github.seccomp.libseccomp.version"] == lib
