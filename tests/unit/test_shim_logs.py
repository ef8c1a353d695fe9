"""berth-shim's pieces that need no root: the json-file writer (line
splitting, partial lines, rotation), Docker's stream framing, the small
JSON codec and the argv parser."""
import json
import os
import re

import pytest

from berth.cli import shim as cli
from berth.shim import logs, wire

T0 = 1_795_540_800_123_456_789   # 2026-11-24T17:20:00.123456789Z


def clock():
    return T0


def entries(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def log(tmp_path):
    made = []

    def make(**kw):
        w = logs.JsonLog(str(tmp_path / "c.log"), clock=clock, **kw)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()


def test_rfc3339nano_has_nine_digits():
    assert logs.rfc3339nano(T0) == "2026-11-24T17:20:00.123456789Z"
    assert logs.rfc3339nano(1_000_000_000 * 86400) == "1970-01-02T00:00:00.000000000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", logs.rfc3339nano())


def test_entry_is_docker_json_file_line():
    line = logs.entry("stdout", b"hello\n", T0)
    assert line == (b'{"log":"hello\\n","stream":"stdout",'
                    b'"time":"2026-11-24T17:20:00.123456789Z"}\n')
    # quotes, control bytes, non-ASCII and invalid UTF-8 stay valid JSON
    e = json.loads(logs.entry("stderr", 'a"\\\x01é\n'.encode() + b"\xff", T0))
    assert e["log"] == 'a"\\\x01é\n\ufffd' and e["stream"] == "stderr"


def test_lines_split_and_streams_kept(log, tmp_path):
    w = log()
    w.write("stdout", b"one\ntwo\nthr")
    w.write("stderr", b"err\n")
    w.write("stdout", b"ee\n")
    w.close()
    got = [(e["stream"], e["log"], e["time"]) for e in entries(tmp_path / "c.log")]
    assert got == [("stdout", "one\n", logs.rfc3339nano(T0)),
                   ("stdout", "two\n", logs.rfc3339nano(T0)),
                   ("stderr", "err\n", logs.rfc3339nano(T0)),
                   ("stdout", "three\n", logs.rfc3339nano(T0))]


def test_partial_line_flushed_at_16k_and_at_close(log, tmp_path):
    w = log()
    w.write("stdout", b"x" * (logs.PARTIAL_MAX - 1))
    assert os.path.getsize(tmp_path / "c.log") == 0
    w.write("stdout", b"xx")
    w.write("stderr", b"no newline")
    w.close()
    got = [(e["stream"], len(e["log"])) for e in entries(tmp_path / "c.log")]
    assert got == [("stdout", logs.PARTIAL_MAX), ("stdout", 1), ("stderr", 10)]


def test_appends_to_an_existing_log(log, tmp_path):
    (tmp_path / "c.log").write_text('{"log":"old\\n","stream":"stdout","time":"x"}\n')
    w = log()
    w.write("stdout", b"new\n")
    w.close()
    assert [e["log"] for e in entries(tmp_path / "c.log")] == ["old\n", "new\n"]


def _line_len():
    return len(logs.entry("stdout", b"line-000\n", T0))


def test_rotation_keeps_max_files_in_total(log, tmp_path):
    n = _line_len()
    w = log(max_size=3 * n, max_files=3)
    for i in range(20):
        w.write("stdout", b"line-%03d\n" % i)
    w.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["c.log", "c.log.1", "c.log.2"]
    got = []
    for name in ("c.log.2", "c.log.1", "c.log"):
        size = os.path.getsize(tmp_path / name)
        assert size <= 3 * n
        got += [e["log"] for e in entries(tmp_path / name)]
    assert got == ["line-%03d\n" % i for i in range(20 - len(got), 20)]
    assert got[-1] == "line-019\n" and len(got) == 8   # 3 + 3 + 2


def test_rotation_with_one_file_truncates(log, tmp_path):
    n = _line_len()
    w = log(max_size=2 * n)
    for i in range(5):
        w.write("stdout", b"line-%03d\n" % i)
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.log"]
    assert [e["log"] for e in entries(tmp_path / "c.log")] == ["line-004\n"]


def test_no_rotation_without_max_size(log, tmp_path):
    w = log(max_files=5)
    for i in range(100):
        w.write("stdout", b"line-%03d\n" % i)
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.log"]


def test_frame_is_docker_multiplexed_stream():
    assert logs.frame("stdout", b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    f = logs.frame("stderr", b"x" * 70000)
    assert f[:4] == b"\x02\x00\x00\x00" and int.from_bytes(f[4:8], "big") == 70000
    assert len(f) == 70008


def test_wire_round_trip():
    obj = {"exit_code": 137, "finished_at": "t", "oom_killed": False, "n": None,
           "s": 'q"\n\\é', "l": [1, True], "f": 1.5}
    text = wire.dumps(obj)
    assert json.loads(text) == obj
    assert wire.dumps({"pid": 5, "shim_pid": 6}) == '{"pid":5,"shim_pid":6}'
    assert wire.loads_object(b' {"op":"resize","height":3,"width":4}\n') == \
        {"op": "resize", "height": 3, "width": 4}
    for bad in (b"", b"[1]", b"{", b'{"a":1} x', b"nope"):
        with pytest.raises(ValueError):
            wire.loads_object(bad)


def test_cli_parses_the_contract():
    kw = cli.parse(["--id", "c1", "--bundle", "/b", "--runtime", "runc",
                    "--runtime-root=/r", "--state-dir", "/s", "--log-path", "/s/l",
                    "--log-max-size", "1000", "--log-max-files", "3",
                    "--tty", "--open-stdin", "--stdin-once"])
    assert kw == {"id": "c1", "bundle": "/b", "runtime": "runc", "runtime_root": "/r",
                  "state_dir": "/s", "log_path": "/s/l", "log_max_size": 1000,
                  "log_max_files": 3, "tty": True, "open_stdin": True, "stdin_once": True}
    for bad in (["--id", "x"], ["--bogus"], ["--tty=1"],
                ["--id", "c", "--bundle", "b", "--runtime", "r", "--runtime-root", "r",
                 "--state-dir", "s", "--log-path", "l", "--log-max-size", "big"],
                ["--id", "c", "--bundle", "b", "--runtime", "r", "--runtime-root", "r",
                 "--state-dir", "s", "--log-path", "l", "--log-max-files", "0"]):
        with pytest.raises(cli.UsageError):
            cli.parse(bad)


def test_cli_usage_error_is_a_json_line(capfd):
    assert cli.main(["--nope"]) == 2
    out = capfd.readouterr().out
    assert json.loads(out)["error"].startswith("berth-shim: unknown option")
