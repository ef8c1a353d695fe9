import json
import os

import pytest

from berth.errors import BerthError, ConfigError
from berth.runtime import hooks as H

STATE = {"ociVersion": "1.0.2-dev", "id": "c1", "status": "creating", "pid": 42, "bundle": "/b"}


def script(tmp_path, body, name="hook.sh"):
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def test_hook_gets_state_on_stdin_args_and_exact_env(tmp_path):
    out = tmp_path / "out"
    path = script(tmp_path, f'cat > {out}.state; echo "$1 [$FOO] [$HOME]" > {out}\n')
    H.run([{"path": path, "args": ["myhook", "one"], "env": ["FOO=bar"]}], STATE, "createRuntime")
    assert json.loads((tmp_path / "out.state").read_text()) == STATE
    assert out.read_text() == "one [bar] []\n"


@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static")
def test_args0_is_argv0_not_the_path(tmp_path):
    # busybox picks its applet by argv[0]: "false" must run false, not busybox
    with pytest.raises(BerthError, match="exit status 1"):
        H.run([{"path": "/bin/busybox", "args": ["false"]}], STATE, "prestart")


def test_failing_hook_names_phase_index_status_and_stderr(tmp_path):
    ok = script(tmp_path, "exit 0\n", "ok.sh")
    bad = script(tmp_path, "echo 'no disk' >&2; exit 3\n", "bad.sh")
    with pytest.raises(BerthError) as e:
        H.run([{"path": ok}, {"path": bad}], STATE, "prestart")
    assert str(e.value) == f"hooks.prestart[1] {bad}: error running hook: exit status 3: no disk"


def test_timeout_kills_the_hook(tmp_path):
    pidfile = tmp_path / "pid"
    path = script(tmp_path, f"echo $$ > {pidfile}; exec sleep 30\n")
    with pytest.raises(BerthError, match="timed out after 1s"):
        H.run([{"path": path, "timeout": 1}], STATE, "poststart")
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_hook_binary(tmp_path):
    with pytest.raises(BerthError, match="cannot run"):
        H.run([{"path": str(tmp_path / "nope")}], STATE, "poststop")


@pytest.mark.parametrize("hooks,field", [
    ({"prestop": []}, "hooks.prestop"),
    ({"prestart": [{"path": "relative"}]}, "hooks.prestart[0].path"),
    ({"poststart": [{"path": "/bin/true", "timeout": 0}]}, "hooks.poststart[0].timeout"),
    ({"poststart": [{"path": "/bin/true", "env": "A=1"}]}, "hooks.poststart[0].env"),
    ({"createRuntime": {}}, "hooks.createRuntime"),
])
def test_validate_names_the_field(hooks, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        H.validate(hooks)


def test_no_env_means_an_empty_environment(tmp_path):
    out = tmp_path / "env"
    path = script(tmp_path, f"env > {out}\n")
    H.run([{"path": path}], STATE, "prestart")
    # sh may add PWD, SHLVL and _ of its own; nothing of ours leaks in
    names = {line.split("=", 1)[0] for line in out.read_text().splitlines()}
    assert names <= {"PWD", "SHLVL", "_", "OLDPWD"}, names


def test_hook_leaving_a_daemon_on_its_stdout_does_not_hang(tmp_path):
    pidfile = tmp_path / "daemon"
    # the background sleep keeps the hook's stdout and stderr open
    path = script(tmp_path, f"sleep 30 & echo $! > {pidfile}; echo started\n")
    import time
    t = time.monotonic()
    try:
        H.run([{"path": path, "timeout": 20}], STATE, "poststart")
        assert time.monotonic() - t < 5
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), 9)
            except ProcessLookupError:
                pass


def test_timeout_kills_the_hooks_children_too(tmp_path):
    pidfile = tmp_path / "child"
    # not exec: the shell waits on a child that must die with it
    path = script(tmp_path, f"sleep 30 & echo $! > {pidfile}; wait\n")
    with pytest.raises(BerthError, match=r"hooks.poststart\[0\] .*: timed out after 1s"):
        H.run([{"path": path, "timeout": 1}], STATE, "poststart")
    child = int(pidfile.read_text())
    # killed (a zombie at most until init reaps it); SIGKILL is delivered
    # asynchronously, so a loaded machine may show it running a moment longer
    import time
    state = "?"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat") as f:
                state = f.read().split(") ")[1][0]
        except FileNotFoundError:
            state = "gone"
        if state in ("Z", "X", "gone"):
            break
        time.sleep(0.05)
    assert state in ("Z", "X", "gone")


def test_killed_by_a_signal(tmp_path):
    path = script(tmp_path, "kill -TERM $$\n")
    with pytest.raises(BerthError, match="killed by signal 15"):
        H.run([{"path": path}], STATE, "createRuntime", field_prefix="x")


def test_field_prefix_and_no_stderr(tmp_path):
    path = script(tmp_path, "exit 2\n")
    with pytest.raises(BerthError) as e:
        H.run([{"path": path}], STATE, "createContainer", field_prefix="config.hooks")
    assert str(e.value) == f"config.hooks.createContainer[0] {path}: error running hook: exit status 2"


def test_no_hooks_is_a_no_op():
    H.run(None, STATE, "prestart")
    H.run([], STATE, "prestart")
    H.validate(None)
    H.validate({"prestart": None, "poststop": []})


@pytest.mark.parametrize("hooks,field", [
    ({"prestart": ["/bin/true"]}, "hooks.prestart[0]"),
    ({"prestart": [{"path": "/bin/true", "env": ["NOEQUALS"]}]}, "hooks.prestart[0].env[0]"),
    ({"prestart": [{"path": "/bin/true", "timeout": -1}]}, "hooks.prestart[0].timeout"),
    ({"prestart": [{"path": "/bin/true", "timeout": True}]}, "hooks.prestart[0].timeout"),
    ({"prestart": [{"path": "/bin/true", "args": [1]}]}, "hooks.prestart[0].args"),
    ({"prestart": [{}]}, "hooks.prestart[0].path"),
    ([], "hooks"),
])
def test_validate_more_fields(hooks, field):
    with pytest.raises(ConfigError) as e:
        H.validate(hooks)
    assert str(e.value).startswith(field + ":")
