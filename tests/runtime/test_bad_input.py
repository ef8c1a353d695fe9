"""Bundles the runtime must refuse: non-zero exit, an error on stderr, and
nothing left behind (no state under --root, no cgroup, no mount, no
process). berth must also say which field is wrong, in one line."""
import os

import pytest

import bundle as bundles

BASE_NS = bundles.base_spec()["linux"]["namespaces"]
SECCOMP_ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def raw(text):
    return {"raw": text}


# (case id, changes or {"raw": text}, field berth must name)
CASES = [
    ("malformed-json", raw("{not json"), "config.json"),
    ("empty-file", raw(""), "config.json"),
    ("not-an-object", raw("[]"), "config.json"),
    ("missing-rootfs", {"root.path": "no-such-rootfs"}, "root.path"),
    ("unknown-namespace", {"linux.namespaces": BASE_NS + [{"type": "foo"}]},
     "linux.namespaces"),
    ("bad-seccomp-action", {"linux.seccomp": {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": SECCOMP_ARCHES,
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["rmdir"], "action": "SCMP_ACT_FOO"}]}},
     "linux.seccomp"),
    ("bad-seccomp-default", {"linux.seccomp": {"defaultAction": "SCMP_ACT_NOPE"}},
     "linux.seccomp"),
    ("empty-args", {"process.args": []}, "process.args"),
    ("args-not-a-list", {"process.args": "true"}, "process.args"),
    ("relative-cwd", {"process.cwd": "relative"}, "process.cwd"),
    ("unknown-rlimit", {"process.rlimits": [
        {"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]}, "process.rlimits"),
    ("hostname-without-uts", {"hostname": "x", "linux.namespaces": [
        ns for ns in BASE_NS if ns["type"] != "uts"]}, "hostname"),
    ("sysctl-not-namespaced", {"linux.sysctl": {"kernel.nosuch": "1"}},
     "linux.sysctl"),
    # no CAP_SYS_RESOURCE on this host: a hard limit above ours cannot be set
    ("rlimit-above-hard", {"process.rlimits": [
        {"type": "RLIMIT_NOFILE", "soft": 10 ** 7, "hard": 10 ** 7}]},
     "process.rlimits"),
]


def make_bad_bundle(make, case):
    if "raw" in case:
        b = make(args=["true"])
        (b / "config.json").write_text(case["raw"])
        return b
    return make(args=["sleep", "60"], changes=case)


def assert_nothing_left(host, runtime, cid, b):
    assert not (runtime.root / cid).exists(), \
        f"state left: {sorted(os.listdir(runtime.root / cid))}"
    res = runtime.run(["list", "-q"], check=False)
    assert cid not in res.stdout.split()
    assert runtime.run(["state", cid], check=False).returncode != 0
    assert host.cgroup_dirs(cid) == []
    assert host.mounts_mentioning([str(b)]) == []
    assert host.processes_rooted_in(b / "rootfs") == []


@pytest.mark.parametrize("verb", ["create", "run"])
@pytest.mark.parametrize("name,case,field", CASES, ids=[c[0] for c in CASES])
def test_refused(host, runtime, busybox_bundle, verb, name, case, field):
    b = make_bad_bundle(busybox_bundle, case)
    cid = runtime.new_id("bad")
    res = runtime.run([verb, "--bundle", b, cid], check=False)
    assert res.returncode != 0, res
    assert res.stderr.strip(), res
    assert res.stdout == "", res
    if runtime.name == "berth":
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res
        assert field in lines[0], res
    assert_nothing_left(host, runtime, cid, b)


def test_missing_config(host, runtime, busybox_bundle):
    b = busybox_bundle(args=["true"])
    (b / "config.json").unlink()
    cid = runtime.new_id("noconf")
    res = runtime.run(["create", "--bundle", b, cid], check=False)
    assert res.returncode != 0 and res.stderr.strip()
    if runtime.name == "berth":
        assert "config.json" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert_nothing_left(host, runtime, cid, b)


def test_missing_bundle(runtime, tmp_path):
    cid = runtime.new_id("nobundle")
    res = runtime.run(["create", "--bundle", tmp_path / "nowhere", cid],
                      check=False)
    assert res.returncode != 0 and res.stderr.strip()
    assert not (runtime.root / cid).exists()


@pytest.mark.parametrize("shape", ["", "../{}", "{}/sub", ".", ".."])
def test_bad_container_id(host, runtime, busybox_bundle, shape):
    good = runtime.new_id("badid")
    cid = shape.format(good)
    b = busybox_bundle(args=["sleep", "60"])
    res = runtime.run(["create", "--bundle", b, cid], check=False)
    assert res.returncode != 0 and res.stderr.strip(), res
    assert not (runtime.root.parent / good).exists()
    assert not (runtime.root / good).exists()
    assert host.cgroup_dirs(good) == []
    assert host.mounts_mentioning([str(b)]) == []
    assert host.processes_rooted_in(b / "rootfs") == []


@pytest.mark.parametrize("verb", [["start"], ["kill"], ["delete"], ["pause"],
                                  ["resume"], ["ps"], ["exec", None, "true"]])
def test_verbs_on_unknown_container(runtime, verb):
    cid = runtime.new_id("ghost")
    args = [cid if a is None else a for a in verb]
    if None not in verb:
        args.append(cid)
    res = runtime.run(args, check=False)
    assert res.returncode != 0, res
    assert res.stderr.strip(), res
    if runtime.name == "berth":
        assert cid in res.stderr and len(res.stderr.strip().splitlines()) == 1, res


def test_unknown_verb(runtime):
    res = runtime.run(["frobnicate"], check=False)
    assert res.returncode != 0 and res.stderr.strip()


def test_bad_signal(runtime, busybox_bundle):
    cid = runtime.new_id("badsig")
    runtime.run(["run", "-d", "--bundle", busybox_bundle(args=["sleep", "60"]), cid])
    res = runtime.run(["kill", cid, "SIGNOPE"], check=False)
    assert res.returncode != 0 and res.stderr.strip()
    assert runtime.state(cid)["status"] == "running"


def test_proc_onto_a_symlink_is_refused(host, runtime, busybox_bundle):
    b = busybox_bundle(args=["sleep", "60"])
    (b / "rootfs" / "proc").rmdir()
    (b / "rootfs" / "proc").symlink_to("/elsewhere")
    cid = runtime.new_id("procsym")
    res = runtime.run(["run", "-d", "--bundle", b, cid], check=False)
    assert res.returncode == 1, res
    assert "must be mounted on ordinary directory" in res.stderr, res
    if runtime.name == "berth":
        assert len(res.stderr.strip().splitlines()) == 1 and "mounts[" in res.stderr, res
    assert_nothing_left(host, runtime, cid, b)


@pytest.mark.parametrize("args", [["--pid-file", "/non-existent/dir/pid", "true"],
                                  ["no-such-binary"]])
def test_exec_failures_exit_255(runtime, busybox_bundle, args):
    # runc's status for its own failure, apart from the process's
    cid = runtime.new_id("exec255")
    runtime.run(["run", "-d", "--bundle", busybox_bundle(args=["sleep", "60"]), cid])
    res = runtime.run(["exec", *args[:-1], cid, args[-1]], check=False)
    assert res.returncode == 255, res
    if runtime.name == "berth":
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res
    assert runtime.state(cid)["status"] == "running"
