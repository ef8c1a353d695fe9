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
    # urfave/cli's words and status for an unknown command, as runc
    assert cli.main(["--root", str(tmp_path), "frobnicate"]) == 3
    assert "No help topic for 'frobnicate'" in capfd.readouterr().err


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


def test_help_pages_in_runcs_layout(capfd):
    assert cli.main(["-h"]) == 0
    out = capfd.readouterr().out.splitlines()
    assert out[0] == "NAME:" and out[1].startswith("   berth-runtime - ")
    for verb in cli.VERBS:
        assert cli.main([verb, "-h"]) == 0, verb
        lines = capfd.readouterr().out.splitlines()
        assert lines[0] == "NAME:" and lines[1].startswith(f"   berth-runtime {verb} - "), verb
    assert cli.main(["help", "update"]) == 0
    assert "--cpu-share" in capfd.readouterr().out


def test_version_has_runcs_three_lines(capfd):
    assert cli.main(["--version"]) == 0
    name, commit, spec = capfd.readouterr().out.splitlines()
    assert name.startswith("berth-runtime version ") and commit.startswith("commit: ")
    assert spec == "spec: 1.0.2-dev"


def test_exec_fails_with_255_as_runc_other_verbs_with_1(tmp_path, capfd):
    assert cli.main(["--root", str(tmp_path), "exec", "nope", "true"]) == 255
    assert cli.main(["--root", str(tmp_path), "kill", "nope"]) == 1
    assert cli.main(["--root", str(tmp_path), "checkpoint", "nope"]) == 1
    assert "not supported" in capfd.readouterr().err


def test_an_unexpected_exception_is_one_line_not_a_traceback(tmp_path, capfd, monkeypatch):
    def boom(*a):
        raise FileNotFoundError(2, "No such file or directory", "/some/where")
    monkeypatch.setattr(cli, "dispatch", boom)
    assert cli.main(["--root", str(tmp_path), "state", "x"]) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "/some/where" in err, err


def test_debug_lines_are_logrus_text_on_stderr(tmp_path, capfd):
    from berth.runtime.context import Context
    Context(debug=True).log("debug", "step one")
    err = capfd.readouterr().err
    assert err.startswith('time="') and ' level=debug msg="step one"' in err


@pytest.mark.parametrize("argv,says", [
    (["--log", "/nonexistent/dir/log", "state", "x"], "--log /nonexistent/dir/log: cannot open"),
    (["--log-format", "yaml", "state", "x"], "--log-format 'yaml': unknown log format"),
    (["list", "-f", "weird"], "--format 'weird': invalid format option"),
    (["create", "--bundle", "/nonexistent", "x"], "/nonexistent/config.json"),
])
def test_bad_global_and_verb_flags_are_one_line_by_name(tmp_path, capfd, argv, says):
    assert cli.main(["--root", str(tmp_path), *argv]) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and says in err, err
