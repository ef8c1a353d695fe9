"""One container's persistent record: Docker's inspect fields, kept in
containers/<id>/container.json (tmp + fsync + rename on every change)."""
import os
import threading
import time

from berth.oci import jsonio

ZERO_TIME = "0001-01-01T00:00:00Z"


def now_rfc3339():
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + f".{t % 10**9:09d}Z"


def new_state():
    return {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
            "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME}


class Container:
    FILE = "container.json"

    def __init__(self, directory, data):
        self.dir = directory
        self.data = data
        # guards data; notified on every state change (wait, attach)
        self.cond = threading.Condition(threading.RLock())
        # one start/restart/remove at a time; held across the slow parts,
        # which cond (taken by readers) must not be
        self.lifecycle = threading.RLock()
        self.shim_watch = None
        # the rootfs path while this berthd knows it is mounted
        self.mounted_rootfs = None
        # set (under cond) before the directory is removed: a late writer
        # (a restart timer, a watcher) must not bring back a removed record
        self.deleted = False

    @classmethod
    def load(cls, directory):
        return cls(directory, jsonio.load_file(os.path.join(directory, cls.FILE)))

    def save(self, durable=True):
        with self.cond:
            if not self.deleted:
                jsonio.write_atomic(os.path.join(self.dir, self.FILE), self.data,
                                    durable=durable)

    @property
    def id(self):
        return self.data["Id"]

    @property
    def name(self):
        return self.data["Name"]

    @property
    def state(self):
        return self.data["State"]

    @property
    def config(self):
        return self.data["Config"]

    @property
    def host_config(self):
        return self.data["HostConfig"]

    @property
    def image(self):
        return self.data["Config"].get("Image", "")

    @property
    def image_id(self):
        return self.data["Image"]

    @property
    def created(self):
        return self.data["Created"]

    @property
    def labels(self):
        return self.data["Config"].get("Labels") or {}

    @property
    def running(self):
        return self.state["Running"]

    @property
    def bundle(self):
        return os.path.join(self.dir, "bundle")

    @property
    def log_path(self):
        return self.data["LogPath"]

    def size_rw(self):
        upper = self.data.get("GraphDriver", {}).get("Data", {}).get("UpperDir")
        if not upper or not os.path.isdir(upper):
            return 0
        total = 0
        for top, dirs, files in os.walk(upper):
            for f in files:
                try:
                    total += os.lstat(os.path.join(top, f)).st_size
                except OSError:
                    pass
        return total

    def set_state(self, **changes):
        with self.cond:
            st = self.state
            st.update(changes)
            if "Status" in changes:
                s = changes["Status"]
                st["Running"] = s in ("running", "paused", "restarting")
                st["Paused"] = s == "paused"
                st["Restarting"] = s == "restarting"
                st["Dead"] = s == "dead"
            # the rename alone survives a killed berthd; a state change needs
            # no fsync, a reboot ends every container whatever it said
            self.save(durable=False)
            self.cond.notify_all()
