import json

import pytest

from berth.errors import ConfigError
from berth.oci import jsonio

DOC = {"a": [1, 2.5, True, None, "x\u00e9\n"], "b": {}, "c": [], "d": {"e": {"f": -1}}}


def test_round_trip_matches_stdlib():
    text = json.dumps(DOC)
    assert jsonio.loads(text) == DOC
    assert jsonio.dumps(DOC) == json.dumps(DOC, separators=(",", ":"))
    assert jsonio.dumps(DOC, indent=2) == json.dumps(DOC, indent=2)


@pytest.mark.parametrize("bad,where", [("{", "column 2"), ("{}x", "extra data"),
                                       ("[1,]", "line 1"), ("NaN", "NaN"), (b"\xff", "utf-8")])
def test_errors_name_the_file_and_place(bad, where):
    with pytest.raises(ConfigError) as e:
        jsonio.loads(bad, "config.json")
    assert str(e.value).startswith("config.json")
    assert where in str(e.value)


def test_write_atomic_leaves_no_temp(tmp_path):
    p = tmp_path / "state.json"
    jsonio.write_atomic(str(p), DOC)
    assert json.loads(p.read_text()) == DOC
    assert [x.name for x in tmp_path.iterdir()] == ["state.json"]
