"""The audit log (src/berth/api/audit.py): line contents, redaction, file
mode, concurrent writers, rotation, and that it never raises."""
import json
import os
import re
import stat
import threading

import pytest

from berth.api import audit
from berth.api.http import Peer


class FakeReq:
    def __init__(self, method, path, body=None, peer=None, params=None, query=None, read=True):
        self.method = method
        self.path = path
        self.params = params or {}
        self.query = query or {}
        self.peer = peer or Peer(uid=1000, gid=1000, pid=4242)
        raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body else b"")
        self._body = raw if read and raw else None


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def log(tmp_path):
    a = audit.AuditLog(str(tmp_path / "sub" / "dir" / "audit.log"))
    yield a
    a.close()


def test_line_for_container_create(log):
    body = {"Image": "alpine:3.20", "Cmd": ["sh", "-c", "echo hi"],
            "Env": ["PASSWORD=hunter2", "TOKEN=s3cr3t", "PLAIN"],
            "HostConfig": {"Privileged": True, "Binds": ["/srv:/srv:ro"],
                           "CapAdd": ["NET_ADMIN"]}}
    log.record(FakeReq("POST", "/containers/create", body, query={"name": ["web"]}), 201, None)
    [e] = lines(log.path)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", e["time"])
    assert e["who"] == "uid=1000 gid=1000 pid=4242"
    assert (e["uid"], e["gid"], e["pid"]) == (1000, 1000, 4242)
    assert e["method"] == "POST" and e["path"] == "/containers/create"
    assert e["query"] == {"name": "web"}
    assert e["status"] == 201 and e["error"] is None
    b = e["body"]
    assert b["Image"] == "alpine:3.20"
    assert b["Cmd"] == ["sh", "-c", "echo hi"]
    assert b["privileged"] is True
    assert b["binds"] == ["/srv:/srv:ro"]
    assert b["cap_add"] == ["NET_ADMIN"]
    assert b["env"] == ["PASSWORD", "TOKEN", "PLAIN"]


def test_env_values_never_written(log):
    for path in ("/containers/create", "/containers/c1/exec", "/containers/c1/update"):
        log.record(FakeReq("POST", path, {"Image": "x", "Cmd": ["true"],
                                          "Env": ["DB_PASSWORD=hunter2"]}), 200, None)
    text = open(log.path).read()
    assert "hunter2" not in text
    assert "DB_PASSWORD" in text


def test_secret_query_values_redacted(log):
    log.record(FakeReq("POST", "/build", query={"buildargs": ['{"KEY":"s3cr3t"}'],
                                                "t": ["app:1"]}), 200, None)
    [e] = lines(log.path)
    assert "s3cr3t" not in json.dumps(e)
    assert e["query"] == {"buildargs": "<redacted>", "t": "app:1"}


def test_targets_error_and_tls_peer(log):
    peer = Peer(cert_subject="ci-runner", address="('127.0.0.1', 5555)")
    log.record(FakeReq("DELETE", "/containers/abc", peer=peer, params={"id": "abc"},
                       query={"force": ["1"], "v": ["1", "0"]}), 409, "container abc is running")
    [e] = lines(log.path)
    assert e["who"].startswith("tls:ci-runner@")
    assert e["cert_subject"] == "ci-runner" and e["uid"] is None
    assert e["targets"] == {"id": "abc"}
    assert e["query"] == {"force": "1", "v": ["1", "0"]}
    assert e["status"] == 409 and e["error"] == "container abc is running"
    assert e["body"] is None


def test_unread_body_not_summarised(log):
    log.record(FakeReq("POST", "/images/load", b"\x00" * 100, read=False), 200, None)
    [e] = lines(log.path)
    assert e["body"] is None


def test_other_bodies_only_keys(log):
    log.record(FakeReq("POST", "/volumes/create", {"Name": "v", "DriverOpts": {"pw": "x1y2"}}),
               201, None)
    [e] = lines(log.path)
    assert e["body"] == {"keys": ["DriverOpts", "Name"]}
    assert "x1y2" not in open(log.path).read()


def test_exec_summary(log):
    log.record(FakeReq("POST", "/containers/c1/exec",
                       {"Cmd": ["id"], "User": "root", "Privileged": True, "Env": ["A=b"]},
                       params={"id": "c1"}), 403, "denied")
    [e] = lines(log.path)
    assert e["body"] == {"Cmd": ["id"], "User": "root", "privileged": True, "env": ["A"],
                         "tty": False}


def test_bad_json_body(log):
    log.record(FakeReq("POST", "/containers/create", b"{nope"), 400, "malformed")
    [e] = lines(log.path)
    assert e["body"] == {"bytes": 5, "json": False}


def test_mode_0600_and_parents(log, tmp_path):
    log.record(FakeReq("POST", "/x"), 404, "page not found")
    st = os.stat(log.path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "sub").st_mode) & 0o077 == 0


def test_existing_file_tightened_and_appended(tmp_path):
    p = tmp_path / "audit.log"
    p.write_text('{"old": 1}\n')
    os.chmod(p, 0o644)
    a = audit.AuditLog(str(p))
    try:
        a.record(FakeReq("POST", "/x"), 200, None)
    finally:
        a.close()
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    got = lines(p)
    assert got[0] == {"old": 1} and got[1]["path"] == "/x"


def test_symlinked_log_refused_without_raising(tmp_path, capsys):
    target = tmp_path / "elsewhere"
    target.write_text("")
    link = tmp_path / "audit.log"
    link.symlink_to(target)
    a = audit.AuditLog(str(link))
    a.record(FakeReq("POST", "/x"), 200, None)
    a.close()
    assert target.read_text() == ""
    assert "audit log" in capsys.readouterr().err


def test_never_raises(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    a = audit.AuditLog(str(blocker / "audit.log"))   # parent is a file
    for _ in range(3):
        a.record(FakeReq("POST", "/x"), 200, None)
    a.record(object(), 200, None)                     # not even a request
    err = capsys.readouterr().err
    assert err.count("berthd: audit log") == 1       # said once, not per request


def test_concurrent_threads(log):
    n_threads, per = 8, 200

    def work(t):
        for i in range(per):
            log.record(FakeReq("POST", f"/containers/c{t}/start", params={"id": f"c{t}-{i}"}),
                       204, None)
    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = lines(log.path)          # every line parses: none interleaved
    assert len(got) == n_threads * per
    assert len({e["targets"]["id"] for e in got}) == n_threads * per


def test_rotation(tmp_path):
    p = str(tmp_path / "audit.log")
    a = audit.AuditLog(p, max_bytes=2000, keep=3)
    try:
        for i in range(100):
            a.record(FakeReq("POST", "/containers/c/start", params={"id": f"n{i:03d}"}), 204, None)
    finally:
        a.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["audit.log", "audit.log.1", "audit.log.2"]
    for n in names:
        st = os.stat(tmp_path / n)
        assert st.st_size <= 2000
        assert stat.S_IMODE(st.st_mode) == 0o600
    # newest in audit.log, older in .1, older still in .2; nothing torn
    ids = [[e["targets"]["id"] for e in lines(tmp_path / n)]
           for n in ("audit.log.2", "audit.log.1", "audit.log")]
    flat = [i for chunk in ids for i in chunk]
    assert flat == sorted(flat) and flat[-1] == "n099"
    assert len(flat) < 100          # the oldest were dropped


def test_default_rotation_size():
    a = audit.AuditLog("/nonexistent/x")
    assert a.max_bytes == 10 << 20 and a.keep == 3


def test_rfc3339nano():
    assert audit.rfc3339nano(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
