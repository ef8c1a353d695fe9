"""The hooks that run inside the container (createContainer and
startContainer), on both runtimes: they run in the container's namespaces,
createContainer before pivot_root (its path is a host path) and
startContainer after it (its path is found in the container's rootfs), with
the state JSON on stdin; a failing createContainer hook fails `create` and
leaves nothing behind."""
import json
import os
import socket
import time

SLEEP = ["sleep", "60"]

# what each hook records; $1 is where to write (host path or container path)
PROBE = """\
cat > "$1/$2.json"
readlink /proc/self/ns/uts > "$1/$2.uts"
readlink /proc/self/ns/mnt > "$1/$2.mnt"
hostname > "$1/$2.hostname"
echo "$HOOK_ENV" > "$1/$2.env"
"""


def hook_script(path, interpreter):
    with open(path, "w") as f:
        f.write(f"#!{interpreter}\n{PROBE}")
    os.chmod(path, 0o755)


def wait_for(path, timeout=10):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def hooked_bundle(busybox_bundle, tmp_path, tag, args=SLEEP, create_hook=None):
    """A bundle whose createContainer hook is a script only the host has and
    whose startContainer hook is a script only the rootfs has; both write
    into a directory the host shares with the container at /out."""
    out = tmp_path / f"out-{tag}"
    out.mkdir()
    os.chmod(out, 0o777)
    host_hook = tmp_path / f"create-hook-{tag}.sh"
    hook_script(host_hook, "/bin/sh")
    hooks = {
        "createContainer": [create_hook or {
            "path": str(host_hook), "args": ["create-hook", str(out), "create"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOOK_ENV=host-side"]}],
        "startContainer": [{
            "path": "/in-container-hook", "args": ["start-hook", "/out", "start"],
            "env": ["PATH=/bin", "HOOK_ENV=inside"]}]}
    b = busybox_bundle(args=args, changes={"hooks": hooks, "hostname": "hooked-box"})
    hook_script(b / "rootfs" / "in-container-hook", "/bin/sh")
    cfg = json.loads((b / "config.json").read_text())
    mounts = cfg["mounts"] + [{"destination": "/out", "type": "bind",
                               "source": str(out), "options": ["rbind", "rw"]}]
    cfg["mounts"] = mounts
    (b / "config.json").write_text(json.dumps(cfg))
    assert not os.path.exists("/in-container-hook")  # else the test proves nothing
    return b, out, host_hook


def test_create_and_start_container_hooks(parity, busybox_bundle, tmp_path):
    def scenario(rt):
        b, out, _ = hooked_bundle(busybox_bundle, tmp_path, rt.name)
        cid = rt.new_id("inhooks")
        rt.run(["create", "--bundle", b, cid])
        pid = rt.state(cid)["pid"]
        ns = {k: os.readlink(f"/proc/{pid}/ns/{k}") for k in ("uts", "mnt")}
        created_files = sorted(p.name for p in out.iterdir())
        rt.run(["start", cid])
        wait_for(out / "start.env")
        rt.wait_status(cid, "running")
        rt.run(["delete", "-f", cid])
        result = {"after create": created_files}
        for h in ("create", "start"):
            st = json.loads((out / f"{h}.json").read_text())
            result[h] = {
                "id": st["id"] == cid, "bundle": st["bundle"] == str(b),
                "status": st["status"],
                # hooks in the container's namespaces get the pid as the
                # container sees it (runtime-spec state.md, since #1045)
                "pid": st.get("pid"),
                "uts": (out / f"{h}.uts").read_text().strip() == ns["uts"],
                "mnt": (out / f"{h}.mnt").read_text().strip() == ns["mnt"],
                "hostname": (out / f"{h}.hostname").read_text().strip(),
                "env": (out / f"{h}.env").read_text().strip()}
        return result
    got = parity(scenario)
    same = {"id": True, "bundle": True, "pid": 1, "uts": True, "mnt": True}
    assert got == {
        "after create": ["create.env", "create.hostname", "create.json",
                         "create.mnt", "create.uts"],
        # the container's uts namespace, before the runtime set its hostname:
        # the new namespace still carries the host's name
        "create": dict(same, status="creating", hostname=socket.gethostname(),
                       env="host-side"),
        # create is over when start runs the hook: the container is "created"
        "start": dict(same, status="created", hostname="hooked-box", env="inside")}


def test_failing_create_container_hook_leaves_nothing(runtime, busybox_bundle,
                                                      tmp_path, host):
    failing = {"path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no >&2; exit 3"]}
    b, out, _ = hooked_bundle(busybox_bundle, tmp_path, runtime.name, create_hook=failing)
    cid = runtime.new_id("badinhook")
    res = runtime.run(["create", "--bundle", b, cid], check=False)
    assert res.returncode != 0
    if runtime.name == "berth":
        assert "hooks.createContainer[0]" in res.stderr, res.stderr
        assert "exit status 3" in res.stderr, res.stderr
    # checked before the harness's own `delete -f` could tidy up
    assert runtime.run(["state", cid], check=False).returncode != 0
    assert not (runtime.root / cid).exists()
    assert host.cgroup_dirs(cid) == []
    assert host.mounts_mentioning([str(b)]) == []
    assert host.processes_rooted_in(b / "rootfs") == []
    assert list(out.iterdir()) == []  # startContainer never ran


def test_start_container_hook_runs_under_the_containers_seccomp_filter(runtime, busybox_bundle):
    # noNewPrivileges on (runc spec's default): the filter that goes in last
    # must still cover the hook, which is the container's own code
    b = busybox_bundle(args=["true"], changes={
        "process.noNewPrivileges": True,
        "linux.seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                          "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]},
        "hooks": {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "mkdir /tmp/hooked"]}]}})
    res = runtime.run_bundle(b)
    assert res.returncode != 0, res
    assert "error running hook" in res.stderr and "bad system call" in res.stderr, res
    assert not (b / "rootfs" / "tmp" / "hooked").exists()


def test_create_container_hook_runs_in_the_rootfs(runtime, busybox_bundle, tmp_path):
    # runc's hooks.bats bind-mounts onto ./lib from such a hook
    where = tmp_path / f"cwd-{runtime.name}"
    b = busybox_bundle(args=["true"], changes={"hooks": {"createContainer": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"pwd > {where}"]}]}})
    res = runtime.run_bundle(b)
    assert res.returncode == 0, res
    assert where.read_text().strip() == str(b / "rootfs")
