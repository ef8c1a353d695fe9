"""berth.engine.audit's checks on fake containers, specs, files and a fake
engine (no daemon, no root needed)."""
import os
import types

import pytest

from berth.engine import audit
from berth.engine.specgen.security import DEFAULT_CAPS


class FakeContainer:
    def __init__(self, tmp, name="c", host=None, config=None, data=None, running=True):
        self.id = "a" * 64
        self.name = "/" + name
        self.host_config = dict(host or {})
        self.config = dict(config or {})
        self.data = dict(data or {}, HostConfig=self.host_config, Config=self.config)
        self.running = running
        self.bundle = os.path.join(str(tmp), name, "bundle")


def default_spec(**over):
    spec = {"process": {"user": {"uid": 0, "gid": 0}, "noNewPrivileges": True,
                        "capabilities": {"bounding": list(DEFAULT_CAPS),
                                         "effective": list(DEFAULT_CAPS)}},
            "root": {"path": "rootfs", "readonly": False},
            "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount",
                                                           "network", "cgroup")],
                      "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"},
                      "resources": {"pids": {"limit": 2048}}}}
    for k, v in over.items():
        spec[k] = v
    return spec


def by_id(checks):
    return {c["ID"]: c for c in checks}


def test_default_container_passes_the_hardening_checks(tmp_path):
    c = FakeContainer(tmp_path, host={"PidsLimit": 2048})
    got = by_id(audit.container_checks(c, default_spec()))
    for id in ("5.4", "5.3", "5.25", "5.21", "5.15", "5.16", "5.20", "5.9", "5.31", "5.5",
               "5.28"):
        assert got[id]["Result"] == "PASS", got[id]
        assert got[id]["Fix"] == ""
    # no restart policy, no published port: those checks do not apply, so no PASS
    assert "5.14" not in got and "5.13" not in got
    assert got["5.4"]["Title"] == "Container is not privileged"
    assert got["5.10"]["Title"] == "Memory is not limited"          # the finding, not the goal
    assert got["B.3"]["Title"] == "Container runs as root on the host"
    assert got["5.12"]["Title"] == "Root filesystem is writable"
    assert got["5.12"]["Result"] == "INFO"
    assert got["5.10"]["Result"] == "WARN" and "--memory" in got["5.10"]["Fix"]
    assert got["B.3"]["Result"] == "WARN" and "--user" in got["B.3"]["Fix"]
    assert all(x["Level"] == "container" and x["Target"] == "c" for x in got.values())


def test_privileged_container_fails_with_fixes(tmp_path):
    c = FakeContainer(tmp_path, "p", host={"Privileged": True})
    spec = default_spec()
    spec["process"]["capabilities"]["bounding"] = list(DEFAULT_CAPS) + [
        "CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_SYS_MODULE"]
    del spec["linux"]["seccomp"]
    got = by_id(audit.container_checks(c, spec))
    assert got["5.4"]["Result"] == "FAIL" and "--privileged" in got["5.4"]["Fix"]
    assert got["5.3"]["Result"] == "FAIL" and "SYS_ADMIN" in got["5.3"]["Detail"]
    assert "--cap-drop ALL" in got["5.3"]["Fix"]
    assert got["5.21"]["Result"] == "FAIL" and "unconfined" in got["5.21"]["Fix"]


def test_docker_default_caps_readded_only_warn(tmp_path):
    c = FakeContainer(tmp_path, host={"CapAdd": ["NET_RAW"]})
    spec = default_spec()
    spec["process"]["capabilities"]["bounding"] = list(DEFAULT_CAPS) + ["CAP_NET_RAW"]
    got = by_id(audit.container_checks(c, spec))
    assert got["5.3"]["Result"] == "WARN" and "--cap-add NET_RAW" in got["5.3"]["Fix"]


def test_without_a_bundle_the_record_is_read(tmp_path):
    c = FakeContainer(tmp_path, host={"CapAdd": ["SYS_PTRACE"],
                                      "SecurityOpt": ["seccomp=unconfined",
                                                      "no-new-privileges=false"],
                                      "PidMode": "host", "NetworkMode": "host",
                                      "IpcMode": "host", "UTSMode": "host"})
    got = by_id(audit.container_checks(c, None))
    assert got["5.3"]["Result"] == "FAIL"
    assert got["5.21"]["Result"] == "FAIL"
    assert got["5.25"]["Result"] == "WARN"
    assert got["5.15"]["Result"] == "FAIL" and got["5.15"]["Fix"] == "recreate without --pid host"
    assert got["5.9"]["Result"] == "FAIL"
    assert got["5.16"]["Result"] == "WARN" and got["5.20"]["Result"] == "WARN"


def test_host_namespaces_from_the_spec(tmp_path):
    c = FakeContainer(tmp_path)
    spec = default_spec()
    spec["linux"]["namespaces"] = [{"type": "mount"}, {"type": "ipc"}]
    got = by_id(audit.container_checks(c, spec))
    assert got["5.15"]["Result"] == "FAIL" and got["5.9"]["Result"] == "FAIL"
    assert got["5.20"]["Result"] == "WARN" and got["5.16"]["Result"] == "PASS"


@pytest.mark.parametrize("src,ro,check,result", [
    ("/var/run/docker.sock", True, "5.31", "FAIL"),
    ("/run/berth/berth.sock", False, "5.31", "FAIL"),
    ("/", True, "5.5", "WARN"),
    ("/etc", False, "5.5", "FAIL"),
    ("/etc/ssl", True, "5.5", "WARN"),
    ("/proc", False, "5.5", "FAIL"),
    ("/sys/fs/cgroup", False, "5.5", "FAIL"),
    ("/dev", False, "5.5", "FAIL"),
    ("/srv/data", False, "5.5", "PASS"),
    ("/etcetera", False, "5.5", "PASS"),
])
def test_sensitive_binds(tmp_path, src, ro, check, result):
    c = FakeContainer(tmp_path, data={"Mounts": [{"Type": "bind", "Source": src,
                                                  "Destination": "/mnt", "RW": not ro}]})
    got = by_id(audit.container_checks(c, default_spec()))
    assert got[check]["Result"] == result, got[check]
    if result != "PASS":
        assert src in got[check]["Detail"] and got[check]["Fix"]


def test_binds_from_hostconfig_and_extra_socket(tmp_path):
    c = FakeContainer(tmp_path, host={"Binds": ["/tmp/x/berth.sock:/s", "/etc:/h:ro"]})
    got = by_id(audit.container_checks(c, default_spec(), extra_sockets=("/tmp/x/berth.sock",)))
    assert got["5.31"]["Result"] == "FAIL" and got["5.5"]["Result"] == "WARN"


def test_limits_restart_user_ports_readonly(tmp_path):
    c = FakeContainer(tmp_path, host={"Memory": 64 << 20, "ReadonlyRootfs": True,
                                      "RestartPolicy": {"Name": "always"},
                                      "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                                       "443/tcp": [{"HostIp": "127.0.0.1",
                                                                    "HostPort": "8443"}]}},
                      config={"User": "1000"})
    spec = default_spec(root={"path": "rootfs", "readonly": True})
    spec["process"]["user"]["uid"] = 1000
    got = by_id(audit.container_checks(c, spec))
    assert got["5.10"]["Result"] == "PASS" and got["5.12"]["Result"] == "PASS"
    assert got["5.14"]["Result"] == "WARN" and "on-failure:5" in got["5.14"]["Fix"]
    assert got["B.3"]["Result"] == "PASS"
    assert got["5.13"]["Result"] == "WARN" and "8080->80/tcp" in got["5.13"]["Detail"]
    assert "-p 127.0.0.1:8080:80" in got["5.13"]["Fix"]
    c.host_config["RestartPolicy"] = {"Name": "on-failure", "MaximumRetryCount": 3}
    spec["linux"]["resources"] = {}
    got = by_id(audit.container_checks(c, spec))
    assert got["5.14"]["Result"] == "PASS" and got["5.28"]["Result"] == "WARN"


def test_root_in_a_user_namespace_passes(tmp_path):
    c = FakeContainer(tmp_path)
    spec = default_spec()
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert by_id(audit.container_checks(c, spec))["B.3"]["Result"] == "PASS"


# -- images --------------------------------------------------------------------

def test_image_checks():
    scan = {"Findings": [{"Severity": "MEDIUM", "Kind": "setuid", "Path": "/bin/su",
                          "Detail": "", "Fix": ""},
                         {"Severity": "HIGH", "Kind": "secret-env", "Path": None,
                          "Detail": "environment variable DB_PASSWORD=<masked, 7 characters> is",
                          "Fix": ""}]}
    got = by_id(audit.image_checks("x:1", {"Env": ["DB_PASSWORD=hunter2"]}, scan))
    assert got["4.1"]["Result"] == "WARN"
    assert got["4.6"]["Result"] == "WARN" and "HEALTHCHECK" in got["4.6"]["Fix"]
    assert got["4.8"]["Result"] == "WARN" and "/bin/su" in got["4.8"]["Detail"]
    assert got["4.10"]["Result"] == "FAIL" and "DB_PASSWORD" in got["4.10"]["Detail"]
    assert "hunter2" not in repr(got)
    got = by_id(audit.image_checks("y", {"User": "app", "Healthcheck": {"Test": ["CMD", "true"]}},
                                   {"Findings": []}))
    assert [got[i]["Result"] for i in ("4.1", "4.6", "4.8", "4.10")] == ["PASS"] * 4


# -- daemon ----------------------------------------------------------------------

def test_options_from_argv():
    o = audit.options_from_argv(["-H", "unix:///x.sock", "--host=tcp://0.0.0.0:2375",
                                 "--tlsverify", "--tlscacert", "/ca.pem", "--group", "root",
                                 "--audit-log=/a.log", "--data-root", "/d", "-Hunix:///y"])
    assert o["host"] == ["unix:///x.sock", "tcp://0.0.0.0:2375", "unix:///y"]
    assert o["tlsverify"] is True and o["tlscacert"] == "/ca.pem" and o["group"] == "root"
    assert o["audit_log"] == "/a.log"


def test_tcp_check():
    assert audit.check_tcp(["unix:///s"], {}) is None     # no TCP listener: does not apply
    r = audit.check_tcp(["tcp://0.0.0.0:2375"], {"insecure_tcp": True})
    assert r["Result"] == "FAIL" and "--tlsverify" in r["Fix"]
    assert r["Title"] == "TCP listener has no TLS"
    assert audit.check_tcp(["tcp://0.0.0.0:2376"], {"tlsverify": True, "tlscacert": "c"})[
        "Result"] == "PASS"


def test_file_checks(tmp_path):
    sock = tmp_path / "s"
    sock.write_text("")
    os.chmod(sock, 0o660)
    assert audit.check_socket(str(sock), "root")["Result"] == ("PASS" if os.geteuid() == 0
                                                               else "FAIL")
    os.chmod(sock, 0o666)
    r = audit.check_socket(str(sock), "berth")
    assert r["Result"] == "FAIL" and "chmod 0660" in r["Fix"]
    log = tmp_path / "audit.log"
    assert audit.check_audit_log(str(log))["Result"] == "INFO"
    log.write_text("")
    os.chmod(log, 0o644)
    assert audit.check_audit_log(str(log))["Result"] == "FAIL"
    os.chmod(log, 0o600)
    assert audit.check_audit_log(str(log))["Result"] == ("PASS" if os.geteuid() == 0 else "FAIL")
    assert audit.check_authz(str(tmp_path / "none.json"))["Result"] == "WARN"
    assert audit.check_trust(str(tmp_path / "none.json"))["Result"] == "WARN"
    os.chmod(tmp_path, 0o777)
    assert audit.check_data_root(str(tmp_path))["Result"] == "FAIL"
    os.chmod(tmp_path, 0o700)


def test_userns_icc_runtime():
    cfg = types.SimpleNamespace(userns_remap=None, default_runtime="nope",
                                runtimes={"nope": "/no/such/runtime"})
    r = audit.check_userns(cfg)
    assert r["Result"] == "WARN" and "--userns-remap auto" in r["Fix"]
    cfg.userns_remap = "auto"
    assert audit.check_userns(cfg)["Result"] == "PASS"
    assert audit.check_runtime(cfg)["Result"] == "FAIL"
    eng = types.SimpleNamespace(config=cfg, network=None)
    assert audit.check_icc(eng)["Result"] == "INFO"
    eng.network = types.SimpleNamespace(cfg=types.SimpleNamespace(icc=False))
    assert audit.check_icc(eng)["Result"] == "PASS"
    cfg.icc = True
    assert audit.check_icc(eng)["Result"] == "WARN"


def test_score_and_run_on_a_fake_engine(tmp_path):
    checks = [{"Result": r} for r in ("PASS", "PASS", "WARN", "FAIL", "INFO")]
    assert audit.score(checks) == 50
    assert audit.score([{"Result": "INFO"}]) == 100

    from berth.engine.paths import Paths
    paths = Paths(str(tmp_path / "lib"), str(tmp_path / "run"), str(tmp_path / "etc"))
    paths.make()

    class Store:
        def images(self):
            return [{"Id": "sha256:" + "b" * 64, "RepoTags": ["img:1"]}]

        def config(self, image_id):
            return {"config": {"User": "", "Env": ["TOKEN=t0ps3cret"]}}

    class Containers:
        def list(self, all=False):
            return [FakeContainer(tmp_path, "run1"),
                    FakeContainer(tmp_path, "stopped", running=False)]

    eng = types.SimpleNamespace(paths=paths, store=Store(), containers=Containers(), network=None,
                                config=types.SimpleNamespace(default_runtime="sh",
                                                             runtimes={"sh": "sh"},
                                                             userns_remap=None))
    out = audit.run(eng, {"host": ["unix://" + str(tmp_path / "none.sock")]}, scan_images=False)
    targets = {c["Target"] for c in out["Checks"]}
    assert {"img:1", "run1"} <= targets and "stopped" not in targets
    assert 0 <= out["Score"] <= 100 and sum(out["Summary"].values()) == len(out["Checks"])
    assert "t0ps3cret" not in repr(out)
    levels = {c["Level"] for c in out["Checks"]}
    assert levels == {"daemon", "image", "container"}
    assert out["Benchmark"].startswith("CIS Docker Benchmark v1.2.0")
    out = audit.run(eng, {}, scan_images=False, all_containers=True)
    assert "stopped" in {c["Target"] for c in out["Checks"]}
    # --level: the checks and the score are those of the level
    daemon_only = audit.run(eng, {}, scan_images=False, levels={"daemon"})
    assert {c["Level"] for c in daemon_only["Checks"]} == {"daemon"}
    assert daemon_only["Score"] == audit.score(daemon_only["Checks"])
    assert sum(daemon_only["Summary"].values()) == len(daemon_only["Checks"])
