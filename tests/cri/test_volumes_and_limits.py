"""Host-path volumes with Kubernetes' three mount propagations (what CSI
drivers rely on), and resource limits as the node's cgroups hold them,
each with runc and berth-runtime in the same test."""
import os
import subprocess
import time

import pytest

import runtime_v1_pb2 as pb
from compare import both, pid_ns
from node import BUSYBOX

MB = 1 << 20


def mounted_at(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


@pytest.fixture
def shared_dir(tmp_path):
    """A tmpfs made a shared mount, as kubelet's /var/lib/kubelet is on a
    systemd node: containerd refuses Bidirectional volumes from elsewhere.
    Unmounted with all that propagated into it."""
    d = tmp_path / "vol"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "berth-test-vol", str(d)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(d)], check=True)
        yield d
    finally:
        subprocess.run(["umount", "-R", "-l", str(d)], check=False)


def test_mount_propagation_both_ways(shared_dir, pods):
    may_mount = pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(add_capabilities=["SYS_ADMIN"]))

    def scenario(h):
        mine = shared_dir / h
        mine.mkdir()
        pod = pods(h, security=pid_ns(pb.CONTAINER))
        cids = {}
        for name, prop in (("bidirectional", pb.PROPAGATION_BIDIRECTIONAL),
                           ("host-to-container", pb.PROPAGATION_HOST_TO_CONTAINER),
                           ("private", pb.PROPAGATION_PRIVATE)):
            vol = pb.Mount(container_path="/vol", host_path=str(mine), propagation=prop)
            cids[name] = pod.run(name, ["sleep", "1000"], BUSYBOX, mounts=[vol],
                                 security=may_mount)
            pod.wait_state(cids[name], pb.CONTAINER_RUNNING)
        # host -> containers: a mount made on the host after they started
        (mine / "from-host").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mine / "from-host")],
                       check=True)
        (mine / "from-host" / "note").write_text("host\n")
        # containers -> host: a mount each container makes in its volume
        for name, cid in cids.items():
            pod.sh(cid, f"mkdir /vol/by-{name} && mount -t tmpfs -o size=1m tmpfs /vol/by-{name}"
                        f" && echo {name} > /vol/by-{name}/note")
        time.sleep(0.2)
        seen = {}
        for name, cid in cids.items():
            seen[f"{name} sees the host's"] = pod.sh(cid, "cat /vol/from-host/note 2>/dev/null || "
                                                          "echo nothing").strip()
        for name in cids:
            p = mine / f"by-{name}"
            seen[f"host sees {name}'s"] = (p / "note").read_text().strip() if mounted_at(p) \
                else "nothing"
        return seen
    assert both(scenario) == {
        "bidirectional sees the host's": "host",
        "host-to-container sees the host's": "host",
        "private sees the host's": "nothing",
        "host sees bidirectional's": "bidirectional",
        "host sees host-to-container's": "nothing",
        "host sees private's": "nothing"}


def cgroup_file(node, ctrl, cid, name):
    path = f"/sys/fs/cgroup/{ctrl}{node.cgroup_parent}/{cid}/{name}"
    if not os.path.exists(path):  # a cgroup2-only host
        path = f"/sys/fs/cgroup{node.cgroup_parent}/{cid}/{name}"
    with open(path) as f:
        return f.read().strip()


def test_resource_limits_in_the_cgroup(node, pods):
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("reads the cgroup v1 files (hybrid or v1 host)")
    limits = pb.LinuxContainerResources(cpu_period=100000, cpu_quota=50000, cpu_shares=512,
                                        memory_limit_in_bytes=64 * MB, cpuset_cpus="0")

    def scenario(h):
        pod = pods(h, security=pid_ns(pb.CONTAINER))
        cid = pod.run("limited", ["sleep", "1000"], BUSYBOX, resources=limits)
        pod.wait_state(cid, pb.CONTAINER_RUNNING)
        host = {f"{c}/{n}": cgroup_file(node, c, cid, n) for c, n in (
            ("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us"),
            ("cpu", "cpu.cfs_period_us"), ("cpu", "cpu.shares"), ("cpuset", "cpuset.cpus"))}
        inside = pod.sh(cid, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                             "/sys/fs/cgroup/cpu/cpu.cfs_quota_us").split()
        # the processes are in it: the init and what exec starts
        procs = pod.sh(cid, "cat /sys/fs/cgroup/memory/cgroup.procs | wc -l").strip()
        return host, inside, int(procs) >= 2
    host, inside, joined = both(scenario)
    assert host == {"memory/memory.limit_in_bytes": str(64 * MB),
                    "cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000",
                    "cpu/cpu.shares": "512", "cpuset/cpuset.cpus": "0"}
    assert inside == [str(64 * MB), "50000"] and joined
