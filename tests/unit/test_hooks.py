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
    assert str(e.value) == f"hooks.prestart[1] {bad}: exit status 3: no disk"


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
