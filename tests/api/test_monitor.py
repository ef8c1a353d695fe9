"""Each container's monitor under berthd: berth-monitor (C) by default, the
Python berth-shim with `--monitor none`. Both must look the same to a user
(logs, attach, resize, exit codes, OOMKilled), and what SIGKILL of a
monitor, of the shim zygote or of berthd does must not depend on which."""
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from procutil import alive, children, wait_until

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")

REPO = Path(__file__).resolve().parents[2]
MONITOR = REPO / "bin" / "berth-monitor"


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


@pytest.fixture(params=["monitor", "python"])
def engine(request, berthd):
    if request.param == "python":
        berthd.extra_args = ["--monitor", "none"]
        berthd.restart()
    elif not os.access(MONITOR, os.X_OK):
        pytest.fail(f"{MONITOR} is not built (make build)")
    berthd.kind = request.param
    berthd.load("alpine-3.20")
    return berthd


def inspect(d, name):
    return json.loads(ok(d.docker("inspect", name)))[0]


def shim_of(d, name):
    """The pid of the process that monitors container name."""
    info = inspect(d, name)
    with open(d.exec_root / "shims" / info["Id"][:24] / "shim.pid") as f:
        return int(f.read())


def exe(pid):
    return os.path.basename(os.readlink(f"/proc/{pid}/exe"))


def test_output_stdin_terminal_and_exit_codes(engine):
    d = engine
    info = d.json("GET", "/info")
    if d.kind == "monitor":
        assert info["Labels"] == [f"berth.monitor={MONITOR}"] and not info["Warnings"]
    else:
        assert info["Labels"] == ["berth.monitor=berth-shim (Python)"]
        assert any("berth-monitor is not in use" in w for w in info["Warnings"])
    r = d.docker("run", "--name", "ab", "alpine", "sh", "-c",
                 "echo out; echo err >&2; printf partial; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\npartial", "err\n"), r
    logs = d.docker("logs", "ab")
    assert (logs.stdout, logs.stderr) == ("out\npartial", "err\n")
    assert inspect(d, "ab")["State"]["ExitCode"] == 3
    r = d.docker("run", "-i", "--rm", "alpine", "tr", "a-z", "A-Z", input="shout\n")
    assert (r.returncode, r.stdout) == (0, "SHOUT\n")
    # a terminal of a known size (script gives the CLI one): resize reaches it
    cmd = "stty rows 33 cols 111; docker run -it --rm alpine sh -c 'stty size; exit 4'"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=d.env, capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 4 and "33 111" in r.stdout, r
    ok(d.docker("run", "-d", "--name", "sl", "alpine", "sleep", "1000"))
    assert exe(shim_of(d, "sl")) == ("berth-monitor" if d.kind == "monitor" else "python3.11")
    ok(d.docker("kill", "-s", "TERM", "sl"))   # sleep as pid 1 ignores TERM
    ok(d.docker("kill", "sl"))
    assert ok(d.docker("wait", "sl")).strip() == "137"


def test_oom_killed(engine):
    r = engine.docker("run", "--name", "hog", "--network", "none", "-m", "32m", "alpine",
                      "tail", "/dev/zero", timeout=120)
    state = inspect(engine, "hog")["State"]
    assert r.returncode == 137 and state["ExitCode"] == 137 and state["OOMKilled"] is True, state
    r = engine.docker("run", "--name", "fine", "-m", "32m", "alpine", "true")
    assert r.returncode == 0 and inspect(engine, "fine")["State"]["OOMKilled"] is False


def _private_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))


def test_monitor_is_small_holds_nothing_of_berthd_and_leaves_no_zombie(berthd):
    berthd.load("alpine-3.20")
    ok(berthd.docker("run", "-d", "--name", "sl", "alpine", "sleep", "1000"))
    mon = shim_of(berthd, "sl")
    init = inspect(berthd, "sl")["State"]["Pid"]
    assert exe(mon) == "berth-monitor"
    assert _private_kib(mon) < 1024   # the Python shim: ~2500
    # the container's init got only its stdio from the shim and the monitor
    assert sorted(os.listdir(f"/proc/{init}/fd")) == ["0", "1", "2"]
    # runtime verbs were reaped (start ran in a fork of the zygote): only
    # the init is the monitor's child
    assert children(mon) == [init]
    # files: its stdio, its own log and the container's, nothing of berthd's
    fds = {os.readlink(f"/proc/{mon}/fd/{n}") for n in os.listdir(f"/proc/{mon}/fd")}
    files = {f for f in fds if f.startswith("/")}
    assert files == {"/dev/null", inspect(berthd, "sl")["LogPath"],
                     str(berthd.exec_root / "shims" / inspect(berthd, "sl")["Id"][:24] / "shim.log")}
    ok(berthd.docker("rm", "-f", "sl"))
    assert wait_until(lambda: not alive(mon) and not alive(init), 10)


def test_kill9_of_a_monitor_leaves_the_container_running(engine):
    d = engine
    ok(d.docker("run", "-d", "--name", "sl", "alpine", "sleep", "1000"))
    init = inspect(d, "sl")["State"]["Pid"]
    mon = shim_of(d, "sl")
    os.kill(mon, signal.SIGKILL)
    # berthd sees its monitor gone without an exit record
    assert wait_until(lambda: inspect(d, "sl")["State"]["Status"] == "exited", 30)
    state = inspect(d, "sl")["State"]
    assert state["ExitCode"] == 255 and "died without an exit record" in state["Error"], state
    assert alive(init), "the container died with its monitor"
    # a new start replaces what the runtime still has; rm -f removes it all
    ok(d.docker("start", "sl"))
    assert wait_until(lambda: not alive(init), 10), "docker start left the old process"
    init = inspect(d, "sl")["State"]["Pid"]
    os.kill(shim_of(d, "sl"), signal.SIGKILL)
    assert wait_until(lambda: inspect(d, "sl")["State"]["Status"] == "exited", 30)
    ok(d.docker("rm", "-f", "sl"))
    assert wait_until(lambda: not alive(init), 10), "docker rm -f left the container's process"


def test_monitors_outlive_the_zygote_and_berthd(berthd):
    berthd.load("alpine-3.20")
    zygote = [p for p in children(berthd.proc.pid)
              if b"--zygote" in Path(f"/proc/{p}/cmdline").read_bytes()]
    waiting = "while [ ! -e /tmp/go ]; do sleep 0.1; done; echo done; exit 7"
    ok(berthd.docker("run", "-d", "--name", "zz", "alpine", "sh", "-c", waiting))
    mon = shim_of(berthd, "zz")
    assert len(zygote) == 1
    os.kill(zygote[0], signal.SIGKILL)
    assert wait_until(lambda: not alive(zygote[0]), 10)
    # the monitor's delete at the exit runs berth-runtime itself now
    ok(berthd.docker("exec", "zz", "touch", "/tmp/go"))
    assert ok(berthd.docker("wait", "zz")).strip() == "7"
    assert ok(berthd.docker("logs", "zz")) == "done\n"
    assert wait_until(lambda: not alive(mon), 10)
    # ...and it did: the runtime has no state left for the container
    assert inspect(berthd, "zz")["Id"] not in os.listdir(berthd.exec_root / "runtime" / "berth")
    # berthd killed: its zygote dies with it, the monitors do not
    ok(berthd.docker("run", "-d", "--name", "kk", "alpine", "sh", "-c", waiting))
    mon = shim_of(berthd, "kk")
    berthd.proc.send_signal(signal.SIGKILL)
    berthd.proc.wait(10)
    assert alive(mon) and exe(mon) == "berth-monitor"
    berthd.restart()
    assert inspect(berthd, "kk")["State"]["Status"] == "running"
    ok(berthd.docker("exec", "kk", "touch", "/tmp/go"))
    assert ok(berthd.docker("wait", "kk")).strip() == "7"
    assert ok(berthd.docker("logs", "kk")) == "done\n"
    assert wait_until(lambda: not alive(mon), 10)
