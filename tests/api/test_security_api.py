"""GET /berth/audit and POST /berth/images/{name}/scan against a real
berthd, plus the `berth audit` / `berth image scan` command functions
(berth.client.commands.security) talking to it."""
import io
import json
import tarfile
import uuid

import pytest



@pytest.fixture
def daemon(berthd):
    return berthd


def cli(daemon, fn, argv):
    """Runs a berth command function in-process -> (exit code, stdout, stderr)."""
    from berth.cli.berth import GLOBAL
    from berth.client.args import parse
    from berth.client.commands import Context, Exit
    gopts, _ = parse(["-H", "unix://" + daemon.sock], GLOBAL, interspersed=False)
    ctx = Context(gopts, fn.__name__)
    ctx.out, ctx.err = io.StringIO(), io.StringIO()
    try:
        code = fn(ctx, argv) or 0
    except Exit as e:
        code = e.code
    return code, ctx.out.getvalue(), ctx.err.getvalue()


def checks_of(report, target=None, level=None):
    return {c["ID"]: c for c in report["Checks"]
            if (target is None or c["Target"] == target) and (level is None or c["Level"] == level)}


def test_audit_daemon_privileged_and_default_containers(daemon):
    from berth.client.commands import security
    daemon.load("alpine-3.20")
    daemon.docker("run", "-d", "--network", "none", "--privileged", "--name", "priv", "alpine", "sleep", "100", check=True)
    daemon.docker("run", "-d", "--network", "none", "--name", "plain", "alpine", "sleep", "100", check=True)
    report = daemon.json("GET", "/berth/audit")
    assert isinstance(report["Score"], int) and 0 <= report["Score"] <= 100
    assert sum(report["Summary"].values()) == len(report["Checks"])
    for c in report["Checks"]:
        assert set(c) == {"ID", "Title", "Level", "Target", "Result", "Detail", "Fix"}
        assert c["Result"] in ("PASS", "WARN", "FAIL", "INFO")
        assert c["Result"] == "PASS" or c["Result"] == "INFO" or c["Fix"], c

    d = checks_of(report, level="daemon")
    sock = d["3.15"]
    assert sock["Target"] == daemon.sock and sock["Result"] == "PASS", sock  # 0660 root:root
    assert "2.6" not in d                                   # no TCP listener: does not apply
    assert d["2.11"]["Result"] == "WARN" and "authz" in d["2.11"]["Fix"]      # no policy
    assert d["B.4"]["Result"] == "PASS"                                       # 0600, written
    assert d["2.8"]["Result"] == "WARN" and "--userns-remap auto" in d["2.8"]["Fix"]
    assert d["B.5"]["Result"] == "PASS" and d["2.1"]["Result"] in ("PASS", "INFO")
    assert {"4.5", "B.1"} <= set(d)

    p = checks_of(report, "priv")
    assert p["5.4"]["Result"] == "FAIL" and "privileged" in p["5.4"]["Detail"]
    assert "--privileged" in p["5.4"]["Fix"]
    assert p["5.21"]["Result"] == "FAIL" and p["5.3"]["Result"] == "FAIL"
    assert "SYS_ADMIN" in p["5.3"]["Detail"]

    ok = checks_of(report, "plain")
    for id in ("5.4", "5.25", "5.21", "5.3", "5.15", "5.9", "5.31", "5.5", "5.28"):
        assert ok[id]["Result"] == "PASS", ok[id]

    img = checks_of(report, "alpine:latest", "image")
    assert img["4.1"]["Result"] == "WARN" and img["4.8"]["Result"] == "PASS"

    # the CLI: a table, fixes, the score; exit 1 because p FAILs
    code, out, err = cli(daemon, security.cmd_audit, [])
    assert code == 1, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "RESULT", "LEVEL", "TARGET", "TITLE"]
    assert any(line.split()[:4] == ["5.4", "FAIL", "container", "priv"] for line in lines)
    assert "fix:   recreate without --privileged" in out
    assert f"Score: {report['Score']}/100" in out
    code, out, _ = cli(daemon, security.cmd_audit, ["--format", "json", "--level", "daemon"])
    data = json.loads(out)
    assert {c["Level"] for c in data["Checks"]} == {"daemon"} and code == 0
    daemon_checks = [c for c in report["Checks"] if c["Level"] == "daemon"]
    scored = [c for c in daemon_checks if c["Result"] != "INFO"]
    assert data["Score"] == sum(c["Result"] == "PASS" for c in scored) * 100 // len(scored)
    assert p["5.4"]["Title"] == "Container is privileged"     # the finding, on a FAIL

    # without the privileged container nothing FAILs
    daemon.docker("rm", "-f", "priv", check=True)
    code, out, _ = cli(daemon, security.cmd_audit, ["-q"])
    assert code == 0, out
    assert " priv " not in out and "plain" in out


def test_scan_alpine(daemon):
    from berth.client.commands import security
    daemon.load("alpine-3.20")
    image_id = daemon.docker("image", "inspect", "-f", "{{.Id}}", "alpine", check=True).stdout.strip()
    r = daemon.json("POST", "/berth/images/alpine/scan")
    assert r["Image"] == image_id and "alpine:latest" in r["RepoTags"]
    kinds = {f["Kind"] for f in r["Findings"]}
    assert "root-user" in kinds and "no-healthcheck" in kinds
    # alpine 3.20 ships busybox without the setuid bbsuid helper: no setuid
    # files; /tmp and /var/tmp are 1777 (sticky), so not findings either
    assert not kinds & {"setuid", "setgid", "world-writable", "world-writable-dir"}
    assert r["Summary"]["HIGH"] == 0 and r["Summary"]["Files"] > 400 and r["Summary"]["Layers"] == 1
    assert daemon.json("GET", f"/berth/images/{image_id}/scan")["Image"] == image_id
    assert daemon.api("POST", "/berth/images/nosuch:1/scan")[0] == 404

    code, out, _ = cli(daemon, security.cmd_scan, ["alpine"])
    assert code == 0, out
    assert "root-user" in out and "alpine: 0 high, 1 medium" in out
    code, _, _ = cli(daemon, security.cmd_scan, ["--fail-on", "medium", "alpine"])
    assert code == 1
    code, _, err = cli(daemon, security.cmd_scan, ["nosuch:1"])
    assert code == 1 and "nosuch" in err


def _rootfs_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        def add(name, mode, data=b"", kind=tarfile.REGTYPE):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.size = kind, mode, 0, 0, len(data)
            t.addfile(ti, io.BytesIO(data) if data else None)
        add("bin", 0o755, kind=tarfile.DIRTYPE)
        add("bin/sh", 0o755, b"#!/nothing\n")
        add("bin/suidtool", 0o4755, b"\x7fELF not really\n")
        add("drop", 0o777, kind=tarfile.DIRTYPE)
        add("tmp", 0o1777, kind=tarfile.DIRTYPE)
    return buf.getvalue()


def test_scan_imported_image_with_setuid_and_secret(daemon, tmp_path):
    from berth.client.commands import security
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(_rootfs_tar())
    ref = f"sec-{uuid.uuid4().hex[:8]}:1"
    daemon.docker("import", "-c", "ENV DB_PASSWORD=hunter2", "-c", "ENV API_TOKEN=s3cr3t-t0k3n",
                  str(tar), ref, check=True)
    status, _, raw = daemon.api("POST", f"/berth/images/{ref}/scan")
    assert status == 200, raw
    assert b"hunter2" not in raw and b"s3cr3t-t0k3n" not in raw
    r = json.loads(raw)
    found = {(f["Kind"], f.get("Path")): f for f in r["Findings"]}
    suid = found[("setuid", "/bin/suidtool")]
    assert suid["Severity"] == "MEDIUM" and "chmod u-s /bin/suidtool" in suid["Fix"]
    assert ("world-writable-dir", "/drop") in found and ("world-writable-dir", "/tmp") not in found
    secrets = [f for f in r["Findings"] if f["Kind"] == "secret-env"]
    assert len(secrets) == 2 and all(f["Severity"] == "HIGH" for f in secrets)
    pw = [f for f in secrets if "DB_PASSWORD" in f["Detail"]][0]
    assert "<masked, 7 characters>" in pw["Detail"] and "-e DB_PASSWORD" in pw["Fix"]
    assert ("root-user", None) in found
    assert r["Summary"]["HIGH"] == 2

    code, out, err = cli(daemon, security.cmd_scan, [ref])
    assert code == 1, (out, err)   # HIGH findings gate CI
    assert "hunter2" not in out and "s3cr3t" not in out
    assert "/bin/suidtool" in out and "DB_PASSWORD" in out
    code, out, _ = cli(daemon, security.cmd_scan, ["--format", "json", ref])
    assert code == 1 and json.loads(out)["Image"] == r["Image"] and "hunter2" not in out
    code, out, _ = cli(daemon, security.cmd_scan, ["--fail-on", "none", "-q", ref])
    assert code == 0 and out.strip() == f"{ref}: 2 high, 3 medium, 0 low, 1 info"

    status, _, raw = daemon.api("GET", "/berth/audit")
    assert status == 200 and b"hunter2" not in raw
    img = checks_of(json.loads(raw), ref, "image")
    assert img["4.10"]["Result"] == "FAIL" and "DB_PASSWORD" in img["4.10"]["Detail"]
    assert img["4.8"]["Result"] == "WARN" and "/bin/suidtool" in img["4.8"]["Detail"]
