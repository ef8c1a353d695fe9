"""The pod and container security contexts the kubelet sends, as containerd
turns them into OCI specs, applied by runc and by berth-runtime alike."""
import runtime_v1_pb2 as pb
from compare import both, pid_ns
from node import BUSYBOX

STATUS = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status"
DEFAULT_CAPS = "00000000a80425fb"  # containerd's default set: Docker's 14
# what the kubelet sends for procMount Default (containerd adds none itself)
KUBELET_MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                  "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                  "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
KUBELET_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def probe(pod, cid, lines):
    """{name: output} of each shell line, run with exec in the container."""
    return {name: pod.sh(cid, f"({line}) 2>&1 || true").strip() for name, line in lines.items()}


def test_security_contexts(pods):
    kubelet = pb.LinuxContainerSecurityContext(masked_paths=KUBELET_MASKED,
                                               readonly_paths=KUBELET_READONLY)
    restricted = pb.LinuxContainerSecurityContext(
        masked_paths=KUBELET_MASKED, readonly_paths=KUBELET_READONLY, run_as_user=pb.Int64Value(value=1000), run_as_group=pb.Int64Value(value=3000),
        supplemental_groups=[4000], no_new_privs=True, readonly_rootfs=True,
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault),
        capabilities=pb.Capability(drop_capabilities=["ALL"]))
    caps = pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(add_capabilities=["SYS_ADMIN", "NET_ADMIN"],
                                   drop_capabilities=["CHOWN", "NET_RAW"]))
    paths = pb.LinuxContainerSecurityContext(masked_paths=["/proc/timer_list", "/home"],
                                             readonly_paths=["/var"])

    def scenario(h):
        pod = pods(h, security=pid_ns(pb.CONTAINER))
        seen = {}
        for name, sc in (("default", kubelet), ("restricted", restricted), ("caps", caps),
                         ("paths", paths), ("none", None)):
            cid = pod.run(name, ["sleep", "1000"], BUSYBOX, security=sc)
            pod.wait_state(cid, pb.CONTAINER_RUNNING)
            seen[name] = probe(pod, cid, {
                "status": STATUS, "id": "id",
                "write root": "touch /probe && echo ok",
                "timer_list bytes": "head -c1 /proc/timer_list | wc -c",
                "write proc sys": "echo x > /proc/sys/kernel/domainname && echo ok",
                "home": "ls -A /home | wc -l; touch /home/x && echo ok",
                "write var": "touch /var/x && echo ok",
                "chown": "touch /tmp/c && chown 1:1 /tmp/c && echo ok",
            })
        return seen
    seen = both(scenario)
    # and runc's result is what Kubernetes means by each context
    default, restricted, caps, paths, none = (
        seen[k] for k in ("default", "restricted", "caps", "paths", "none"))
    assert default["status"].split() == ["CapEff:", DEFAULT_CAPS, "CapBnd:", DEFAULT_CAPS,
                                         "NoNewPrivs:", "0", "Seccomp:", "0"]
    assert default["id"].startswith("uid=0(root) gid=0(root)")
    assert default["write root"] == "ok" and default["timer_list bytes"] == "0"
    assert "Read-only file system" in default["write proc sys"]
    assert restricted["status"].split() == ["CapEff:", "0" * 16, "CapBnd:", "0" * 16,
                                            "NoNewPrivs:", "1", "Seccomp:", "2"]
    assert restricted["id"] == "uid=1000 gid=3000 groups=3000,4000"
    assert "Read-only file system" in restricted["write root"]
    cap_eff = int(caps["status"].split()[1], 16)
    assert cap_eff & (1 << 21) and cap_eff & (1 << 12), "SYS_ADMIN and NET_ADMIN added"
    assert not cap_eff & 1 and not cap_eff & (1 << 13), "CHOWN and NET_RAW dropped"
    assert "Operation not permitted" in caps["chown"]
    assert paths["timer_list bytes"] == "0" and paths["home"].startswith("0\n")
    assert "Read-only file system" in paths["home"] and "Read-only file system" in paths["write var"]
    assert paths["write proc sys"] == "ok", "readonly_paths replace the defaults"
    assert none["timer_list bytes"] == "1" and none["write proc sys"] == "ok", \
        "without the kubelet's lists nothing is masked or read-only"
