"""Escape classes the runtime must close, checked from inside real
containers on both runtimes: leaked fds, a working directory reached
through a leaked fd (CVE-2024-21626), the init's host executable reachable
from the container (CVE-2019-5736), and mount targets that symlinks in the
image point at the host."""
import os
import subprocess

import pytest

SLEEP = ["sleep", "60"]


def run_with_fd(runtime, bundle, fd_target, extra=()):
    """`run` with a host directory open as fd 3 of the runtime itself."""
    cid = runtime.new_id("fd")
    args = ["run", *extra, "--bundle", bundle, cid]
    runtime._note(args)
    host_fd = os.open(fd_target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        def child():
            os.dup2(host_fd, 3)
        # pass_fds: subprocess closes every other fd after preexec_fn
        p = subprocess.run(runtime.argv(args), capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL, preexec_fn=child, pass_fds=(3,))
    finally:
        os.close(host_fd)
    return p


def test_only_stdio_reaches_the_program(runtime, busybox_bundle, tmp_path):
    b = busybox_bundle(args=["ls", "/proc/self/fd"])
    p = run_with_fd(runtime, b, tmp_path)
    assert p.returncode == 0, p.stderr
    # 0-2, plus the fd ls itself opened to read the directory
    assert sorted(p.stdout.split()) == ["0", "1", "2", "3"]


def test_preserve_fds_passes_exactly_those(runtime, busybox_bundle, tmp_path):
    (tmp_path / "marker").write_text("x")
    b = busybox_bundle(args=["sh", "-c", "ls /proc/self/fd; ls /proc/self/fd/3/"])
    p = run_with_fd(runtime, b, tmp_path, extra=["--preserve-fds", "1"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert "marker" in lines  # fd 3 is the host directory the caller handed over
    assert sorted(x for x in lines if x.isdigit()) == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("fd", range(3, 10))
def test_cwd_through_a_leaked_fd_is_refused(runtime, busybox_bundle, fd):
    b = busybox_bundle(args=["sh", "-c", "ls ../../../../../ && echo ESCAPED"],
                       changes={"process.cwd": f"/proc/self/fd/{fd}"})
    res = runtime.run_bundle(b)
    assert "ESCAPED" not in res.stdout, f"cwd {fd} reached: {res.stdout[:300]}"
    assert res.returncode != 0


def test_init_executable_cannot_be_written_before_exec(runtime, busybox_bundle):
    # between create and start the init still runs the runtime's own binary
    b = busybox_bundle(args=SLEEP)
    cid = runtime.new_id("exe")
    runtime.run(["create", "--bundle", b, cid])
    res = runtime.run(["exec", cid, "sh", "-c",
                       "cat /proc/1/exe > /dev/null && echo READ; "
                       "echo x >> /proc/1/exe && echo WROTE; readlink /proc/1/exe || echo NOLINK"],
                      check=False)
    assert "WROTE" not in res.stdout, res.stdout
    if runtime.name == "berth":
        # stricter than runc, whose init is a sealed copy that may be read:
        # berth's init is not dumpable, so its host interpreter is out of reach
        assert "READ" not in res.stdout and "NOLINK" in res.stdout, res.stdout


def test_preserve_fds_refuses_fds_the_caller_did_not_open(runtime, busybox_bundle):
    if runtime.name == "runc":
        pytest.skip("runc hands the container its own internal fd 3 here")
    b = busybox_bundle(args=["ls", "/proc/self/fd"])
    res = runtime.run_bundle(b, extra=["--preserve-fds", "1"])
    assert res.returncode != 0
    assert "--preserve-fds 1: fd 3 is not open" in res.stderr


def test_mount_target_symlinks_stay_in_the_rootfs(runtime, busybox_bundle, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    b = busybox_bundle(args=["sh", "-c", "ls /evil/"])
    rootfs = os.path.join(b, "rootfs")
    os.symlink(str(victim), os.path.join(rootfs, "evil"))            # absolute, to the host
    os.symlink("../../../../../../" + str(victim).lstrip("/"), os.path.join(rootfs, "up"))
    import json
    cfg_path = os.path.join(b, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["mounts"] += [{"destination": "/evil/a", "type": "tmpfs", "source": "tmpfs"},
                      {"destination": "/up/b", "type": "tmpfs", "source": "tmpfs"}]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    runtime.run_bundle(b)
    # whatever the runtime did with the links, the host directory got nothing
    assert list(victim.iterdir()) == []
    with open("/proc/self/mountinfo") as f:
        assert str(victim) not in f.read()


def test_shebang_to_proc_self_exe_ends(runtime, busybox_bundle):
    # the CVE-2019-5736 entry point: the program is a script whose
    # interpreter is /proc/self/exe. It must fail promptly, not run the
    # runtime's binary usefully nor loop.
    b = busybox_bundle(args=["/evil"])
    with open(os.path.join(b, "rootfs", "evil"), "w") as f:
        f.write("#!/proc/self/exe\n")
    os.chmod(os.path.join(b, "rootfs", "evil"), 0o755)
    res = runtime.run_bundle(b, timeout=15)
    assert res.returncode != 0
