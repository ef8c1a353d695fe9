import pytest

from berth.cli import runtime as cli
from berth.errors import BerthError


def test_go_style_flags():
    table = cli.VERBS["exec"][0]
    opts, args = cli.parse(["-e", "A=1", "--env=B=2", "-t", "--cwd", "/x", "id", "ls", "-l"], table, "exec")
    assert opts == {"env": ["A=1", "B=2"], "tty": True, "cwd": "/x"}
    assert args == ["id", "ls", "-l"]  # flags after the first positional belong to the command


def test_f_means_force_for_delete_and_format_elsewhere():
    assert cli.parse(["-f", "x"], cli.VERBS["delete"][0], "delete")[0] == {"force": True}
    assert cli.parse(["-f", "json"], cli.VERBS["list"][0], "list")[0] == {"format": "json"}


def test_unknown_flag_and_missing_value_are_errors():
    with pytest.raises(BerthError, match="not defined: -bogus"):
        cli.parse(["--bogus"], cli.VERBS["run"][0], "run")
    with pytest.raises(BerthError, match="needs an argument: -bundle"):
        cli.parse(["--bundle"], cli.VERBS["run"][0], "run")


def test_main_reports_errors_on_stderr_with_exit_1(tmp_path, capfd):
    assert cli.main(["--root", str(tmp_path), "state", "nope"]) == 1
    assert "container nope does not exist" in capfd.readouterr().err
    assert cli.main(["--root", str(tmp_path), "frobnicate"]) == 1


def test_json_log_for_containerd(tmp_path):
    log = tmp_path / "log.json"
    assert cli.main(["--root", str(tmp_path), "--log", str(log), "--log-format", "json", "start", "x"]) == 1
    import json
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "does not exist" in entry["msg"] and entry["time"]


def test_systemd_cgroup_driver_is_refused_by_name(tmp_path, capfd):
    assert cli.main(["--root", str(tmp_path), "--systemd-cgroup", "create", "-b",
                     str(tmp_path), "x"]) == 1
    assert "systemd cgroup driver is not supported" in capfd.readouterr().err
    assert not (tmp_path / "x").exists()


def test_flags_after_the_id_count_as_runc_reorders_them():
    table = dict(cli.VERBS["update"][0], help=cli.B)
    argv = cli.reorder(["ct", "--memory", "-1", "--cpu-share", "200", "--pids-limit=5"], table)
    opts, args = cli.parse(argv, table, "update")
    assert opts == {"memory": "-1", "cpu-share": "200", "pids-limit": "5"}
    assert args == ["ct"]
    # kill's signal is an argument, and nothing after "--" moves
    kill = dict(cli.VERBS["kill"][0], help=cli.B)
    assert cli.reorder(["ct", "KILL", "-a"], kill) == ["-a", "ct", "KILL"]
    assert cli.reorder(["ct", "--", "-a"], kill) == ["ct", "--", "-a"]
    delete = dict(cli.VERBS["delete"][0], help=cli.B)
    assert cli.parse(cli.reorder(["ct", "-f"], delete), delete, "delete") == ({"force": True}, ["ct"])
