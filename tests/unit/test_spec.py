import copy

import pytest

from berth.errors import ConfigError
from berth.oci import spec

BASE = {
    "ociVersion": "1.0.2",
    "process": {"args": ["sh"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}},
    "root": {"path": "rootfs"},
    "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]},
}


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return str(tmp_path)


def check(bundle, patch):
    cfg = copy.deepcopy(BASE)
    patch(cfg)
    return spec.validate(cfg, bundle)


def test_valid_config_returns_rootfs_and_namespaces(bundle):
    rootfs, ns = check(bundle, lambda c: None)
    assert rootfs.endswith("/rootfs")
    assert ns == {"pid": None, "mount": None, "uts": None}


@pytest.mark.parametrize("patch,field", [
    (lambda c: c["root"].update(path="missing"), "root.path"),
    (lambda c: c.pop("root"), "root.path"),
    (lambda c: c["linux"]["namespaces"].append({"type": "foo"}), "linux.namespaces[3].type"),
    (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "listed twice"),
    (lambda c: c["linux"]["namespaces"].append({"type": "net", "path": "/nonexistent"}),
     "linux.namespaces[3]"),
    (lambda c: c["process"].update(args=[]), "process.args"),
    (lambda c: c["process"].update(cwd="relative"), "process.cwd"),
    (lambda c: c["process"].update(env=["NOEQUALS"]), "process.env[0]"),
    (lambda c: c["process"]["user"].update(uid=-1), "process.user.uid"),
    (lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
     "process.rlimits[0].type"),
    (lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 9, "hard": 1}]),
     "process.rlimits[0]"),
    (lambda c: c.update(hostname="x") or c["linux"]["namespaces"].pop(2), "hostname"),
    (lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1, "size": 1}]),
     "linux.uidMappings"),
    (lambda c: c["linux"].update(sysctl={"kernel.panic": "1"}), "kernel.panic"),
    (lambda c: c["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}), "network namespace"),
    (lambda c: c["linux"].update(maskedPaths=["relative"]), "linux.maskedPaths[0]"),
    (lambda c: c.update(mounts=[{"source": "x"}]), "mounts[0].destination"),
    (lambda c: c["linux"].update(namespaces="pid"), "linux.namespaces"),
])
def test_bad_config_names_the_field(bundle, patch, field):
    with pytest.raises(ConfigError) as e:
        check(bundle, patch)
    assert field in str(e.value)


def test_malformed_file_is_reported_with_its_name(bundle):
    with open(f"{bundle}/config.json", "w") as f:
        f.write('{"ociVersion": ')
    with pytest.raises(ConfigError, match="config.json"):
        spec.load(bundle)


def test_user_namespace_must_map_container_root(bundle):
    def patch(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 1000, "hostID": 101000, "size": 1}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 1}]
    with pytest.raises(ConfigError, match="linux.uidMappings: container uid 0 is not mapped"):
        check(bundle, patch)


@pytest.mark.parametrize("prop", ["shared", "rshared", "slave", "rslave", "private", "rprivate",
                                  "unbindable", "runbindable"])
def test_every_rootfs_propagation_runc_takes_is_taken(bundle, prop):
    # containerd's CRI plugin asks for rshared (Bidirectional) and rslave
    check(bundle, lambda c: c["linux"].__setitem__("rootfsPropagation", prop))


def test_unknown_rootfs_propagation_is_named(bundle):
    with pytest.raises(ConfigError, match='linux.rootfsPropagation: unknown propagation "rbogus"'):
        check(bundle, lambda c: c["linux"].__setitem__("rootfsPropagation", "rbogus"))
