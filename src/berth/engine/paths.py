"""Where the engine keeps things. Persistent state under root
(/var/lib/berth), what dies with the machine under run (/run/berth)."""
import os


class Paths:
    def __init__(self, root="/var/lib/berth", run="/run/berth", etc="/etc/berth"):
        self.root = os.path.abspath(root)
        self.run = os.path.abspath(run)
        self.etc = os.path.abspath(etc)
        self.images = os.path.join(self.root, "images")
        self.storage = os.path.join(self.root, "storage")
        self.containers = os.path.join(self.root, "containers")
        self.volumes = os.path.join(self.root, "volumes")
        self.audit_log = os.path.join(self.root, "audit.log")
        self.socket = os.path.join(self.run, "berth.sock")
        self.shims = os.path.join(self.run, "shims")
        self.pidfile = os.path.join(self.run, "berthd.pid")
        self.authz_policy = os.path.join(self.etc, "authz.json")
        self.trust_policy = os.path.join(self.etc, "policy.json")

    def container(self, cid):
        return os.path.join(self.containers, cid)

    def shim(self, cid):
        # sun_path holds 108 bytes: a 64-hex id would leave too little room
        # for socket names under a long --exec-root; 24 hex digits stay unique
        return os.path.join(self.shims, cid[:24])

    def runtime_root(self, name):
        return os.path.join(self.run, "runtime", name)

    def make(self):
        for d in (self.root, self.containers, self.volumes, self.run, self.shims):
            os.makedirs(d, mode=0o710 if d == self.root else 0o700, exist_ok=True)
