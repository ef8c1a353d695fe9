"""A container's persistent state under the runtime root (default
/run/berth-runtime/<id>/): state.json (written tmp+fsync+rename) and, while
the container is created but not started, the exec.fifo its init blocks on.

The status is derived, never stored: a dead or recycled init pid means
stopped, a present fifo means created, a frozen cgroup means paused."""
import os
import time

from berth.errors import BerthError, Conflict, NotFound
from berth.oci import jsonio
from berth.sys.procfs import start_time

OCI_VERSION = "1.0.2-dev"
STATE = "state.json"
FIFO = "exec.fifo"


def valid_id(cid):
    if not cid or len(cid) > 1024 or cid in (".", "..") or "/" in cid or "\0" in cid:
        raise BerthError(f"invalid container id {cid!r}",
                         hint="use letters, digits, '.', '_', '-' and '+'")
    for ch in cid:
        if not (ch.isalnum() or ch in "._-+"):
            raise BerthError(f"invalid container id {cid!r}: character {ch!r} is not allowed")


def now_rfc3339():
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        f".{ns % 1_000_000_000:09d}Z"





class Container:
    def __init__(self, root, cid):
        self.root = root
        self.id = cid
        self.dir = os.path.join(root, cid)
        self.data = {}

    @classmethod
    def load(cls, root, cid):
        valid_id(cid)
        c = cls(root, cid)
        try:
            with open(os.path.join(c.dir, STATE), "rb") as f:
                c.data = jsonio.loads(f.read(), STATE)
        except FileNotFoundError:
            raise NotFound(f"container {cid} does not exist") from None
        return c

    def make_dir(self):
        valid_id(self.id)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o711)
        except FileExistsError:
            raise Conflict(f"container {self.id} already exists",
                           hint="delete it first, or pick another id") from None

    def save(self):
        # runtime state describes live processes; after a reboot it is stale
        # whatever the disk kept, so an fsync (ms on ext4) buys nothing
        jsonio.write_atomic(os.path.join(self.dir, STATE), self.data, durable=False)

    @property
    def pid(self):
        return self.data.get("pid", 0)

    @property
    def config(self):
        return self.data["config"]

    @property
    def fifo(self):
        return os.path.join(self.dir, FIFO)

    def alive(self):
        pid = self.pid
        return bool(pid) and start_time(pid) == self.data.get("pidStart")

    def status(self):
        if not self.pid:
            return "creating"
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        cg = self.cgroup()
        if cg is not None and cg.frozen():
            return "paused"
        return "running"

    def cgroup(self):
        d = self.data.get("cgroup")
        if not d:
            return None
        from berth.runtime.cgroups import Cgroup
        return Cgroup.from_dict(d)

    def pids(self):
        """The container's processes: its cgroup's, or without one (a
        rootless container) every process in its pid namespace."""
        cg = self.cgroup()
        if cg is not None:
            return cg.pids()
        try:
            ns = os.readlink(f"/proc/{self.pid}/ns/pid")
        except OSError:
            return []
        out = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.readlink(f"/proc/{name}/ns/pid") == ns:
                        out.append(int(name))
                except OSError:
                    pass
        return sorted(out)

    def oci_state(self, status=None):
        """The state object of the OCI spec, as runc prints and passes to hooks."""
        st = status or self.status()
        out = {"ociVersion": OCI_VERSION, "id": self.id,
               "pid": self.pid if st != "stopped" else 0, "status": st,
               "bundle": self.data.get("bundle", ""), "rootfs": self.data.get("rootfs", ""),
               "created": self.data.get("created", ""), "owner": ""}
        ann = self.config.get("annotations") if "config" in self.data else None
        if ann:
            out["annotations"] = ann
        return out

    def remove_dir(self):
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:  # state.json, exec.fifo, pid files' temps
            try:
                os.unlink(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
        except FileNotFoundError:
            pass


def list_ids(root):
    try:
        return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, STATE)))
    except FileNotFoundError:
        return []
