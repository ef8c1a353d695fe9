"""A Kubernetes node in a box: Debian's containerd with its CRI plugin and
two runtime handlers on containerd's runc shim, `runc` (Debian's runc) and
`berth` (bin/berth-runtime as the shim's BinaryName), the configuration
docs/kubernetes.md gives. The tests in this directory drive it; run as a
program it wraps a command (critest, crictl) in one:

    .venv/bin/python tests/cri/node.py [--config-extra FILE] -- critest ...

Everything is the node's own: root, state, socket, config and CNI network
under one work directory, and a network namespace containerd runs in (the
host's mount namespace, so mounts propagate as on a real node). In it are
only loopback and a bridge made here, which the CNI bridge plugin joins the
pods to (host-local addresses, leases kept in the work directory, no
masquerade, so no iptables rule), and the stream server listens on its
127.0.0.1. A pull has no route out.

containerd and the CNI library also write a little outside the work
directory whatever the config says: shim sockets in /run/containerd/s and
CNI result files in /var/lib/cni/results. stop() removes those of this
node, and the directories if they were not there before."""
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE.parent), str(REPO / "build" / "cri")]

from images import pause_image  # noqa: E402
from procutil import stop as stop_process  # noqa: E402
from shared_dir import FIXTURES  # noqa: E402

BERTH = REPO / "bin" / "berth-runtime"
CNI_BIN = "/usr/lib/cni"
PAUSE_IMAGE = "localhost/berth-pause:1"
BUSYBOX = "docker.io/library/busybox:latest"
HANDLERS = ("runc", "berth")
SUBNET = "10.231.7.0/24"
NETWORK = "berth-cri"

def config_toml(work, sock, binaries):
    runtimes = []
    for name, binary in binaries.items():
        runtimes.append(f"""
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}.options]
    BinaryName = "{binary}"
    Root = "{work}/{name}"
    SystemdCgroup = false
""")
    return f"""version = 2
root = "{work}/root"
state = "{work}/state"

[grpc]
  address = "{sock}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{work}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # the sandbox asks for oom_score_adj -998; lowering it needs
  # CAP_SYS_RESOURCE, which this kind of machine does not grant
  restrict_oom_score_adj = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{work}/net.d"
  max_conf_num = 1
""" + "".join(runtimes)


def cni_conflist(work, bridge):
    # portmap acts only for pods with host ports (critest's), and its
    # rules are in the node's network namespace, gone with it
    return {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]],
                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": f"{work}/ipam"}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}


def _run(argv, check=True, timeout=120, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: {r.stderr.strip() or r.stdout.strip()}")
    return r


class Node:
    # handler -> the shim's BinaryName (a wrapper that logs can stand in)
    binaries = {"runc": shutil.which("runc") or "runc", "berth": str(BERTH)}

    def __init__(self, work, token=None, config_extra=""):
        self.work = Path(work)
        self.token = token or secrets.token_hex(3)
        self.name = f"berth-test-{self.token}-cri"
        self.bridge = f"crib{self.token}"[:15]
        self.sock = self.work / "containerd.sock"
        self.cgroup_parent = f"/{self.name}"
        self.config_extra = config_extra
        self.proc = None
        self.cri = None
        self._had = {p: os.path.exists(p) for p in
                     ("/run/containerd", "/run/containerd/s", "/var/lib/cni",
                      "/var/lib/cni/results")}

    # ---------------------------------------------------------------- start

    def start(self):
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "net.d").mkdir(exist_ok=True)
        (self.work / "net.d" / "10-berth.conflist").write_text(
            json.dumps(cni_conflist(self.work, self.bridge), indent=1))
        (self.work / "config.toml").write_text(
            config_toml(self.work, self.sock, self.binaries) + self.config_extra)
        self._log = open(self.work / "containerd.log", "wb")
        # the network namespace is containerd's own (unshare), with no name
        # under /run/netns: it goes when containerd and its shims end, and
        # no `ip netns` of anyone else's can race with it
        self.proc = subprocess.Popen(
            ["unshare", "--net", "sh", "-ec",
             f'ip link set lo up; ip link add {self.bridge} type bridge; '
             f'exec containerd --config {self.work / "config.toml"}'],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while self.ctr("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("containerd did not start: " + self.log_tail())
            time.sleep(0.2)
        self.import_image(pause_image(self.work, PAUSE_IMAGE))
        self.import_image(FIXTURES / "images" / "busybox-1.38.tar")
        from cri import Cri
        self.cri = Cri(self.sock)
        return self

    def import_image(self, archive):
        self.ctr("-n", "k8s.io", "images", "import", str(archive))

    def ctr(self, *args, check=True):
        return _run(["ctr", "-a", str(self.sock), *args], check=check)

    def log_tail(self, n=1500):
        try:
            return (self.work / "containerd.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def in_netns(self, argv, **kw):
        """argv run inside the node's network namespace (critest must be:
        exec and port-forward go to the stream server's 127.0.0.1)."""
        env = dict(os.environ, CONTAINER_RUNTIME_ENDPOINT=f"unix://{self.sock}",
                   IMAGE_SERVICE_ENDPOINT=f"unix://{self.sock}")
        return subprocess.run(["nsenter", f"--net=/proc/{self.proc.pid}/ns/net", *argv],
                              env=env, **kw)

    # ----------------------------------------------------------------- stop

    def stop(self):
        """Removes everything the node made, also after a failed start or
        test: pods through CRI first (so the runtimes delete containers and
        the CNI plugins release addresses), then containerd, what its
        shims and runtimes may have left, mounts, netns, cgroups."""
        problems = []
        if self.cri is not None and self.proc is not None and self.proc.poll() is None:
            try:
                self.cri.remove_all_pods()
            except Exception as e:  # noqa: BLE001 - teardown goes on regardless
                problems.append(f"removing pods: {e}")
            self.cri.close()
        if self.proc is not None:
            stop_process(self.proc, 30)
            self._log.close()
        self._stop_shims()
        for name in self.binaries:
            self._delete_leftover_containers(name)
        self._unmount_below(self.work)
        self._remove_cgroup_parent()
        self._remove_outside_files()
        return problems

    def _stop_shims(self):
        """Shims of this node (their command line names its socket) that
        outlived containerd: nothing is left for them to serve. Killed, a
        shim leaves its socket behind, named as containerd names it."""
        import hashlib
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except (OSError, UnicodeDecodeError):
                continue
            if str(self.sock) not in cmd or "containerd-shim" not in cmd[0]:
                continue
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                continue
            flag = dict(zip(cmd, cmd[1:]))
            name = f"{self.sock}/{flag.get('-namespace')}/{flag.get('-id')}"
            try:
                os.unlink(f"/run/containerd/s/{hashlib.sha256(name.encode()).hexdigest()}")
            except OSError:
                pass

    def _delete_leftover_containers(self, handler):
        binary = self.binaries[handler]
        root = self.work / handler / "k8s.io"
        if not root.is_dir():
            return
        for cid in os.listdir(root):
            _run([binary, "--root", str(root), "delete", "--force", cid], check=False)

    @staticmethod
    def _unmount_below(top):
        with open("/proc/self/mountinfo") as f:
            stale = [line.split()[4] for line in f if line.split()[4].startswith(str(top) + "/")]
        for mp in sorted(set(stale), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)

    def _remove_cgroup_parent(self):
        base = "/sys/fs/cgroup"
        for ctrl in os.listdir(base):
            d = os.path.join(base, ctrl, self.name)
            if os.path.isdir(d):
                for sub, dirs, _ in sorted(os.walk(d), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(sub)
                    except OSError:
                        pass

    def _remove_outside_files(self):
        results = "/var/lib/cni/results"
        if os.path.isdir(results):
            for n in os.listdir(results):
                if n.startswith(NETWORK + "-") or n.startswith("cni-loopback-"):
                    os.unlink(os.path.join(results, n))
        # only directories that were not there before, and only once empty
        for path in ("/var/lib/cni/results", "/var/lib/cni", "/run/containerd/s",
                     "/run/containerd"):
            if not self._had[path]:
                try:
                    os.rmdir(path)
                except OSError:
                    pass


def main(argv):
    extra = ""
    if argv[:1] == ["--config-extra"]:
        extra, argv = Path(argv[1]).read_text(), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    import tempfile
    work = tempfile.mkdtemp(prefix="berth-cri-node-")
    node = Node(work, config_extra=extra)
    try:
        node.start()
        print(f"node: socket {node.sock}, containerd {node.proc.pid}, work {work}",
              file=sys.stderr)
        rc = node.in_netns(argv).returncode if argv else 0
    finally:
        problems = node.stop()
        shutil.rmtree(work, ignore_errors=True)
    for p in problems:
        print(f"node: {p}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
