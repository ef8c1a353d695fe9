"""How berthd tells whether a container's shim still runs, from the pid in
its shim.pid: a shim the zygote (its parent) has not reaped yet has ended
all the same, so berthd may remove its directory and reuse the id."""
import subprocess
import time

from berth.engine.containers import shimctl


def _write_pid(d, pid):
    (d / "shim.pid").write_text(f"{pid}\n")


def test_running_process_is_alive(tmp_path):
    p = subprocess.Popen(["sleep", "30"])
    try:
        _write_pid(tmp_path, p.pid)
        assert shimctl.shim_alive(str(tmp_path)) == p.pid
    finally:
        p.kill()
        p.wait()


def test_exited_but_unreaped_process_is_gone(tmp_path):
    p = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{p.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        _write_pid(tmp_path, p.pid)
        assert shimctl.shim_alive(str(tmp_path)) == 0
        assert shimctl.wait_gone(p.pid, timeout=1)
    finally:
        p.wait()


def test_missing_or_garbled_pid_file_is_gone(tmp_path):
    assert shimctl.shim_alive(str(tmp_path)) == 0
    (tmp_path / "shim.pid").write_text("not a pid\n")
    assert shimctl.shim_alive(str(tmp_path)) == 0
