"""docker-py (Debian's python3-docker, imported by /usr/bin/python3, not the
venv) against berthd: the high-level client (containers, images, volumes,
info, events) and the low-level APIClient, as a Python program using the
Docker SDK would. Each test runs a small script in a subprocess pointed at
the fixture's daemon by DOCKER_HOST; the script prints one JSON line of what
it saw and the assertions are made here."""
import ipaddress
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"


def _dockerpy_version():
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return None
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import docker; print(docker.__version__)"],
                       capture_output=True, text=True, timeout=60)
    return r.stdout.strip() if r.returncode == 0 else None


DOCKERPY = _dockerpy_version()
pytestmark = [
    pytest.mark.skipif(DOCKERPY is None, reason=f"{SYSTEM_PYTHON} cannot import docker "
                       "(apt install python3-docker)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root"),
]

PRELUDE = """\
import json, sys, time
import docker
client = docker.from_env(timeout=120)
out = {}
def done():
    print(json.dumps(out, default=repr))
"""


def run_script(d, body, *args, timeout=240):
    """Runs PRELUDE + body with /usr/bin/python3 against daemon d -> the dict
    the script put in `out` (printed by done() as the last stdout line)."""
    code = PRELUDE + textwrap.dedent(body) + "\ndone()\n"
    env = dict(d.env)
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run([SYSTEM_PYTHON, "-c", code, *map(str, args)], env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0 and r.stdout.strip(), (
        f"docker-py script failed ({r.returncode})\nstdout: {r.stdout}\nstderr: {r.stderr}\n"
        f"berthd log:\n{d.log()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def alpine(berthd):
    berthd.load("alpine-3.20")
    return berthd


def test_run_returns_the_output_and_removes_the_container(alpine):
    out = run_script(alpine, """
        out["output"] = client.containers.run("alpine", "echo hi", remove=True)
        out["left"] = [c.name for c in client.containers.list(all=True)]
        # a failing command raises ContainerError carrying its exit status and stderr
        try:
            client.containers.run("alpine", ["sh", "-c", "echo bad >&2; exit 3"], remove=True)
            out["error"] = None
        except docker.errors.ContainerError as e:
            out["error"] = [e.exit_status, e.stderr]
        out["left2"] = [c.name for c in client.containers.list(all=True)]
        # ... and an unknown image is ImageNotFound (after a pull attempt, which
        # must fail without reaching the network: loopback registries only)
        try:
            client.containers.run("no-such-image-here", "true", remove=True)
            out["missing"] = None
        except (docker.errors.ImageNotFound, docker.errors.APIError) as e:
            out["missing"] = type(e).__name__
        out["version"] = client.version()["ApiVersion"]
    """)
    assert out["output"] == "b'hi\\n'"
    assert out["left"] == [] and out["left2"] == []
    assert out["error"] == [3, "b'bad\\n'"]
    assert out["missing"] in ("ImageNotFound", "NotFound", "APIError")
    assert out["version"] == "1.43"


def test_detached_container_logs_exec_stats_stop_wait_remove(alpine):
    out = run_script(alpine, """
        c = client.containers.run("alpine", ["sh", "-c", "echo started; echo oops >&2; exec sleep 1000"],
                                  detach=True, name="pyweb", labels={"suite": "dockerpy"},
                                  environment={"GREETING": "hello"})
        out["short_id"] = c.short_id
        deadline = time.monotonic() + 10
        while b"started" not in c.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        out["logs"] = c.logs().decode()
        out["stdout_only"] = c.logs(stderr=False).decode()
        out["stderr_only"] = c.logs(stdout=False).decode()
        r = c.exec_run("cat /etc/alpine-release")
        out["exec"] = [r.exit_code, r.output.decode()]
        r = c.exec_run(["sh", "-c", "echo $GREETING; exit 5"])
        out["exec_env"] = [r.exit_code, r.output.decode()]
        r = c.exec_run("id -u", user="nobody")
        out["exec_user"] = r.output.decode().strip()
        s = c.stats(stream=False)
        out["stats_keys"] = sorted(s)
        out["mem"] = s["memory_stats"]
        out["pids"] = s.get("pids_stats", {})
        c.reload()
        out["state"] = c.attrs["State"]
        out["status"] = c.status
        out["name"] = c.name
        out["labels"] = c.labels
        out["listed"] = [x.name for x in client.containers.list(filters={"label": "suite=dockerpy"})]
        out["by_id"] = client.containers.get(c.id).name
        c.stop(timeout=1)
        out["wait"] = c.wait(timeout=30)
        c.reload()
        out["after_stop"] = [c.status, c.attrs["State"]["ExitCode"], c.attrs["State"]["Running"]]
        c.remove()
        try:
            client.containers.get("pyweb")
            out["gone"] = False
        except docker.errors.NotFound:
            out["gone"] = True
    """)
    assert out["logs"] == "started\noops\n"
    assert out["stdout_only"] == "started\n" and out["stderr_only"] == "oops\n"
    assert out["exec"][0] == 0 and out["exec"][1].startswith("3.20")
    assert out["exec_env"] == [5, "hello\n"]
    assert out["exec_user"] == "65534"
    assert {"memory_stats", "cpu_stats", "precpu_stats", "pids_stats", "read"} <= set(out["stats_keys"])
    assert out["mem"]["usage"] > 0 and out["mem"]["limit"] > 0
    assert out["pids"].get("current", 0) >= 1
    st = out["state"]
    assert st["Status"] == "running" and st["Running"] is True and st["Pid"] > 0
    assert out["status"] == "running" and out["name"] == "pyweb"
    assert out["labels"] == {"suite": "dockerpy"} and out["listed"] == ["pyweb"]
    assert out["by_id"] == "pyweb"
    assert out["wait"]["StatusCode"] == 137
    assert out["after_stop"] == ["exited", 137, False]
    assert out["gone"] is True


def test_images_volumes_and_info(alpine):
    out = run_script(alpine, """
        imgs = client.images.list()
        out["tags"] = sorted(t for i in imgs for t in i.tags)
        img = client.images.get("alpine")
        out["img_id"] = img.id
        out["img_in_list"] = img.id in [i.id for i in imgs]
        out["filtered"] = [i.tags for i in client.images.list(name="alpine")]
        v = client.volumes.create("pyvol", labels={"suite": "dockerpy"})
        out["vol"] = [v.name, v.attrs["Driver"], v.attrs["Labels"], v.attrs["Mountpoint"]]
        out["vol_list"] = sorted(x.name for x in client.volumes.list())
        out["vol_filtered"] = [x.name for x in client.volumes.list(filters={"label": "suite=dockerpy"})]
        out["vol_get"] = client.volumes.get("pyvol").name
        # the volume holds data across containers
        client.containers.run("alpine", ["sh", "-c", "echo kept > /v/f"], volumes={"pyvol": {"bind": "/v"}},
                              remove=True)
        out["vol_data"] = client.containers.run("alpine", "cat /v/f", volumes=["pyvol:/v:ro"],
                                                remove=True).decode()
        v.remove()
        out["vol_after"] = [x.name for x in client.volumes.list()]
        info = client.info()
        out["security"] = info["SecurityOptions"]
        out["info"] = {k: info.get(k) for k in ("Containers", "Images", "Driver", "OSType",
                                                 "CgroupVersion", "NCPU", "MemTotal")}
        out["ping"] = client.ping()
        out["df"] = sorted(client.df())
    """)
    assert "alpine:latest" in out["tags"]
    assert out["img_id"].startswith("sha256:") and out["img_in_list"]
    assert out["filtered"] == [["alpine:latest"]]
    assert out["vol"][0] == "pyvol" and out["vol"][1] == "local"
    assert out["vol"][2] == {"suite": "dockerpy"} and out["vol"][3]
    assert "pyvol" in out["vol_list"] and out["vol_filtered"] == ["pyvol"]
    assert out["vol_get"] == "pyvol"
    assert out["vol_data"] == "kept\n"
    assert "pyvol" not in out["vol_after"]
    assert any(o.startswith("name=seccomp") for o in out["security"]), out["security"]
    assert out["info"]["OSType"] == "linux" and out["info"]["Images"] >= 1
    assert out["info"]["NCPU"] >= 1 and out["info"]["MemTotal"] > 0
    assert out["ping"] is True
    assert {"Images", "Containers", "Volumes"} <= set(out["df"])


def test_low_level_create_with_host_config(alpine, tmp_path):
    src = tmp_path / "bind"
    src.mkdir()
    (src / "in.txt").write_text("from the host\n")
    out = run_script(alpine, """
        api = client.api
        src = sys.argv[1]
        hc = api.create_host_config(binds={src: {"bind": "/data", "mode": "rw"}},
                                    mem_limit="64m", cap_drop=["CHOWN"], read_only=False)
        cmd = ["sh", "-c", "cat /data/in.txt; echo from the container > /data/out.txt; "
               "grep CapBnd /proc/self/status; "
               "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
               "chown nobody /tmp 2>/dev/null && echo chowned || echo no-chown"]
        c = api.create_container("alpine", cmd, host_config=hc, name="lowlevel",
                                 labels={"suite": "dockerpy"}, environment={"A": "1"})
        out["create"] = c
        api.start(c["Id"])
        out["wait"] = api.wait(c["Id"], timeout=60)
        out["logs"] = api.logs(c["Id"]).decode()
        i = api.inspect_container(c["Id"])
        out["hc"] = {k: i["HostConfig"].get(k) for k in ("Binds", "Memory", "CapDrop")}
        out["mounts"] = [(m["Type"], m["Source"], m["Destination"], m["RW"]) for m in i["Mounts"]]
        out["env"] = i["Config"]["Env"]
        out["listed"] = [x["Names"] for x in api.containers(all=True, filters={"name": "lowlevel"})]
        api.remove_container(c["Id"], v=True)
        out["after"] = api.containers(all=True)
    """, src)
    assert len(out["create"]["Id"]) == 64 and out["create"]["Warnings"] in ([], None)
    assert out["wait"]["StatusCode"] == 0
    lines = out["logs"].splitlines()
    assert lines[0] == "from the host"
    capbnd = int(lines[1].split()[1], 16)
    assert capbnd & 1 == 0                            # CAP_CHOWN (bit 0) dropped
    assert capbnd & (1 << 6)                          # CAP_SETGID still there
    assert lines[2] == str(64 * 1024 * 1024)
    assert lines[3] == "no-chown"
    assert (src / "out.txt").read_text() == "from the container\n"
    assert out["hc"]["Binds"] == [f"{src}:/data:rw"]
    assert out["hc"]["Memory"] == 64 * 1024 * 1024
    assert "CHOWN" in out["hc"]["CapDrop"]
    assert out["mounts"] == [["bind", str(src), "/data", True]]
    assert "A=1" in out["env"]
    assert out["listed"] == [["/lowlevel"]]
    assert out["after"] == []


def test_streams_stdin_and_wait_conditions(alpine):
    out = run_script(alpine, """
        import threading
        api = client.api
        out["stream"] = [b.decode() for b in client.containers.run(
            "alpine", ["sh", "-c", "echo a; sleep 0.3; echo b"], stream=True, remove=True)]
        out["stderr_only"] = client.containers.run(
            "alpine", ["sh", "-c", "echo a; echo b >&2"], stdout=False, stderr=True,
            remove=True).decode()
        x = client.containers.run("alpine", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"],
                                  detach=True)
        out["follow"] = b"".join(x.logs(stream=True, follow=True)).decode()   # ends with the container
        x.remove()
        x = client.containers.create("alpine", ["sh", "-c", "sleep 0.3; echo attached"])
        s = x.attach(stream=True, logs=True)
        x.start()
        out["attach"] = b"".join(s).decode()
        x.remove()
        # stdin through a hijacked attach socket
        x = api.create_container("alpine", "cat", stdin_open=True)
        sock = api.attach_socket(x["Id"], params={"stdin": 1, "stdout": 1, "stream": 1})
        api.start(x["Id"])
        raw = sock._sock
        raw.sendall(b"via stdin\\n")
        raw.shutdown(1)
        raw.settimeout(20)
        data = b""
        while True:
            chunk = raw.recv(4096)
            if not chunk:
                break
            data += chunk
        out["stdin"] = [data.hex(), api.wait(x["Id"], timeout=30)["StatusCode"]]
        api.remove_container(x["Id"])
        # wait conditions: next-exit (while running), removed (AutoRemove)
        x = client.containers.run("alpine", "sleep 1000", detach=True)
        res = {}
        t = threading.Thread(target=lambda: res.update(api.wait(x.id, condition="next-exit")))
        t.start(); time.sleep(0.3); x.kill(); t.join(30)
        out["next_exit"] = res.get("StatusCode")
        x.remove()
        x = api.create_container("alpine", "true", host_config=api.create_host_config(auto_remove=True))
        res = {}
        t = threading.Thread(target=lambda: res.update(api.wait(x["Id"], condition="removed")))
        t.start(); time.sleep(0.2); api.start(x["Id"]); t.join(30)
        out["removed"] = [res.get("StatusCode"), [c.id for c in client.containers.list(all=True)]]
    """)
    assert out["stream"] == ["a\n", "b\n"]
    assert out["stderr_only"] == "b\n"
    assert out["follow"] == "1\n2\n3\n"
    assert out["attach"] == "attached\n"
    data, status = bytes.fromhex(out["stdin"][0]), out["stdin"][1]
    assert data == b"\x01\x00\x00\x00\x00\x00\x00\x0avia stdin\n" and status == 0
    assert out["next_exit"] == 137
    assert out["removed"] == [0, []]


def test_events_filtering(alpine):
    since = int(time.time()) - 1
    out = run_script(alpine, """
        since = int(sys.argv[1])
        a = client.containers.run("alpine", "true", name="ev-a", labels={"ev": "a"}, detach=True)
        a.wait(timeout=30)
        a.remove()
        b = client.containers.run("alpine", "true", name="ev-b", labels={"ev": "b"}, detach=True)
        b.wait(timeout=30)
        b.remove()
        v = client.volumes.create("ev-vol")
        v.remove()
        until = int(time.time()) + 1
        def evs(**filters):
            return [(e["Type"], e["Action"], e["Actor"]["Attributes"].get("name"))
                    for e in client.events(since=since, until=until, decode=True, filters=filters)]
        out["by_name"] = evs(container="ev-a")
        out["by_label"] = evs(label="ev=b", event=["start", "die"])
        out["volumes"] = evs(type="volume")
        out["starts"] = evs(type="container", event="start")
        # a live stream: an event that happens while we listen arrives
        stream = client.events(decode=True, filters={"type": "container", "event": "create"})
        c = client.containers.create("alpine", "true", name="ev-live")
        first = next(iter(stream))
        stream.close()
        c.remove()
        out["live"] = [first["Action"], first["Actor"]["Attributes"].get("name"), first["id"] == c.id]
    """, since)
    assert out["by_name"] == [["container", a, "ev-a"] for a in
                              ("create", "start", "die", "destroy")], out["by_name"]
    assert out["by_label"] == [["container", "start", "ev-b"], ["container", "die", "ev-b"]]
    vol_actions = [a for _, a, _ in out["volumes"]]
    assert vol_actions[0] == "create" and vol_actions[-1] == "destroy", out["volumes"]
    assert [n for _, _, n in out["starts"]] == ["ev-a", "ev-b"]
    assert out["live"] == ["create", "ev-live", True]


def test_two_daemons_each_run_on_their_default_bridge(berthd, second_berthd):
    """Two berthd on one host (concurrent test runs): each one's default
    bridge gets a subnet the host does not route yet, containers on both
    run at the same time, with addresses from different subnets."""
    script = """
        c = client.containers.run("alpine", ["sleep", "1000"], detach=True, name="both")
        r = c.exec_run("ip -4 -o addr show eth0")
        out["exec"] = [r.exit_code, r.output.decode()]
        c.reload()
        out["net"] = list(c.attrs["NetworkSettings"]["Networks"])
    """
    outs = []
    for d in (berthd, second_berthd):
        d.load("alpine-3.20")
        outs.append(run_script(d, script))
    for out in outs:
        assert out["exec"][0] == 0 and " inet " in out["exec"][1], out
        assert out["net"] == ["bridge"]
    a, b = (ipaddress.ip_interface(o["exec"][1].split(" inet ")[1].split()[0]) for o in outs)
    assert not a.network.overlaps(b.network), (a, b)


def test_restart_twenty_times(alpine):
    out = run_script(alpine, """
        c = client.containers.run("alpine", ["sleep", "1000"], detach=True, name="rs",
                                  network_mode="none")
        out["errors"] = []
        for i in range(20):
            try:
                c.restart(timeout=0)
            except docker.errors.APIError as e:
                out["errors"].append(str(e)[-200:])
                try:
                    c.start()
                except docker.errors.APIError:
                    pass
        c.reload()
        out["status"] = c.status
        c.remove(force=True)
    """)
    assert out["errors"] == [] and out["status"] == "running", out
