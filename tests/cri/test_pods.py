"""Pods through containerd's CRI plugin, each scenario run with the `runc`
handler and the `berth` handler in the same test: what the kubelet sees
(states, exit codes, exec, logs, stop and remove) must be the same, and
right."""
import json
import subprocess
import sys
import time

import grpc
import pytest

import runtime_v1_pb2 as pb
from compare import both, pid_ns
from node import BERTH, BUSYBOX, HERE

SLEEP = ["sleep", "1000"]
# stop and remove of a pod take well under a second here; containerd's own
# waits (a stuck kill) run to minutes
QUICK_S = 20


def runtime_ids(node, handler):
    """Container ids in the handler's runtime root, as its own binary lists them."""
    binary = str(BERTH) if handler == "berth" else "runc"
    r = subprocess.run([binary, "--root", str(node.work / handler / "k8s.io"), "list", "-q"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def not_found(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code() == grpc.StatusCode.NOT_FOUND


def test_pod_sandbox_with_two_containers(node, pods):
    def scenario(h):
        pod = pods(h, security=pid_ns(pb.CONTAINER))
        a = pod.run("a", ["sh", "-c", "echo from-a > /dev/shm/note; exec sleep 1000"], BUSYBOX)
        b = pod.run("b", SLEEP, BUSYBOX)
        status = pod.status()
        assert status.state == pb.SANDBOX_READY and status.runtime_handler == h
        # the sandbox and both containers are this handler's runtime's only
        other = "runc" if h == "berth" else "berth"
        assert {pod.id, a, b} <= runtime_ids(node, h)
        assert not {pod.id, a, b} & runtime_ids(node, other)
        view = {}
        for name, cid in (("a", a), ("b", b)):
            pod.wait_state(cid, pb.CONTAINER_RUNNING)
            out = pod.sh(cid, "hostname; ip -4 -o addr show eth0 | awk '{print $4}'; "
                              "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /dev/shm/note")
            view[name] = out.replace(status.network.ip, "POD_IP").replace(
                pod.config.hostname, "POD_NAME")
        return view
    # one hostname, network and IPC namespace for the pod; a pid namespace each
    assert both(scenario) == {"a": "POD_NAME\nPOD_IP/24\nsleep 1000 \nfrom-a\n",
                              "b": "POD_NAME\nPOD_IP/24\nsleep 1000 \nfrom-a\n"}


@pytest.mark.parametrize("pid", [pb.CONTAINER, pb.POD], ids=["own-pid-ns", "pod-pid-ns"])
def test_container_that_exits_is_seen_exited_with_its_code(pods, pid):
    """The shim must see the init's exit (with a pod-wide pid namespace it
    also runs `kill --all` on the stopped container) and report it."""
    def scenario(h):
        pod = pods(h, security=pid_ns(pid))
        seen = []
        for name, cmd in (("fails", "exit 7"), ("succeeds", "true")):
            cid = pod.run(name, ["sh", "-c", cmd], BUSYBOX)
            st = pod.wait_state(cid, pb.CONTAINER_EXITED, timeout=QUICK_S)
            seen.append((name, st.exit_code, st.reason, st.started_at > 0 and st.finished_at > 0))
            pod.remove_container(cid)
            assert not_found(lambda: pod.container(cid))
        return seen
    assert both(scenario) == [("fails", 7, "Error", True), ("succeeds", 0, "Completed", True)]


def test_stop_and_remove_running_and_exited_containers_and_the_sandbox(node, pods):
    def scenario(h):
        pod = pods(h, security=pid_ns(pb.CONTAINER))
        # pid 1 without a handler ignores SIGTERM: stop has to SIGKILL it
        stubborn = pod.run("stubborn", SLEEP, BUSYBOX)
        polite = pod.run("polite", ["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done"],
                         BUSYBOX)
        done = pod.run("done", ["true"], BUSYBOX)
        left = pod.run("left", SLEEP, BUSYBOX)
        pod.wait_state(done, pb.CONTAINER_EXITED)
        pod.wait_state(polite, pb.CONTAINER_RUNNING)
        time.sleep(0.3)  # the trap is set once sh runs; a TERM before would kill it
        seen = {}
        t0 = time.monotonic()
        for name, cid in (("stubborn", stubborn), ("polite", polite), ("done", done)):
            pod.stop_container(cid, timeout=2)
            st = pod.container(cid)
            seen[name] = (pb.ContainerState.Name(st.state), st.exit_code)
        pod.stop_container(done, timeout=2)  # stopping twice is fine
        for cid in (stubborn, polite, done):
            pod.remove_container(cid)
        # the sandbox goes with a container still running in it
        pod.stop()
        seen["left after pod stop"] = pb.ContainerState.Name(pod.container(left).state)
        pod.remove()
        elapsed = time.monotonic() - t0
        assert elapsed < QUICK_S, f"{h}: stop and remove took {elapsed:.1f}s"
        assert not_found(lambda: pod.container(left))
        assert not_found(lambda: pod.status())
        assert not {pod.id, stubborn, polite, done, left} & runtime_ids(node, h)
        return seen
    assert both(scenario) == {"stubborn": ("CONTAINER_EXITED", 137),
                              "polite": ("CONTAINER_EXITED", 3),
                              "done": ("CONTAINER_EXITED", 0),
                              "left after pod stop": "CONTAINER_EXITED"}


def ws_exec(node, url):
    r = node.in_netns([sys.executable, str(HERE / "wsexec.py"), url],
                      capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    from wsexec import exit_code
    return exit_code(got["status"]), got["stdout"], got["stderr"]


def test_exec_with_and_without_tty_and_logs(node, pods):
    def scenario(h):
        pod = pods(h)
        talker = pod.run("talker", ["sh", "-c", "echo one; echo two >&2; sleep 1000"], BUSYBOX)
        pod.wait_state(talker, pb.CONTAINER_RUNNING)
        seen = {"sync": pod.exec_sync(talker, "sh", "-c", "echo out; echo err >&2; exit 3")}
        seen["no tty"] = ws_exec(node, pod.exec_url(
            talker, "sh", "-c", "test -t 1 || echo no-tty; echo err >&2; exit 4"))
        seen["tty"] = ws_exec(node, pod.exec_url(
            talker, "sh", "-c", "test -t 1 && echo is-a-tty; tty | tr -d 0-9", tty=True))
        deadline = time.monotonic() + QUICK_S
        while len(pod.logs(talker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        seen["logs"] = sorted(pod.logs(talker))
        return seen
    assert both(scenario) == {
        "sync": (3, "out\n", "err\n"),
        "no tty": (4, "no-tty\n", "err\n"),
        "tty": (0, "is-a-tty\r\n/dev/pts/\r\n", ""),
        "logs": ["stderr two", "stdout one"]}
