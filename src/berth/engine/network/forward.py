"""IP forwarding, shared by every berth daemon on the host.

net.ipv4.ip_forward is switched on while some berth daemon has bridges;
the value found first is kept under /run/berth-net/ and put back when the
last daemon using it closes with no container running."""
import os

from berth.oci import jsonio
from berth.engine.network import netlink

FORWARD_DIR = "/run/berth-net"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


class Forward:
    def __init__(self, enabled, tag, data_dir):
        self.enabled = enabled
        self.tag = tag
        self.dir = data_dir
        self._held = False

    def on(self):
        if not self.enabled or self._held:
            return
        os.makedirs(FORWARD_DIR, mode=0o700, exist_ok=True)
        orig = os.path.join(FORWARD_DIR, "ip_forward.orig")
        if not os.path.exists(orig):
            jsonio.write_atomic(orig, {"value": netlink.read_sysctl(IP_FORWARD) or "0"})
        with open(os.path.join(FORWARD_DIR, "user." + (self.tag or "default")), "w") as f:
            f.write(self.dir)
        netlink.write_sysctl(IP_FORWARD, 1)
        self._held = True

    def release(self):
        mine = os.path.join(FORWARD_DIR, "user." + (self.tag or "default"))
        if not os.path.exists(mine):
            return
        os.unlink(mine)
        self._held = False
        left = [n for n in os.listdir(FORWARD_DIR) if n.startswith("user.")]
        # a user whose data root is gone crashed long ago: not a user
        for n in left[:]:
            try:
                with open(os.path.join(FORWARD_DIR, n)) as f:
                    d = f.read().strip()
            except OSError:
                d = ""
            if not os.path.isdir(os.path.join(d, "endpoints")):
                os.unlink(os.path.join(FORWARD_DIR, n))
                left.remove(n)
        if left:
            return
        orig = os.path.join(FORWARD_DIR, "ip_forward.orig")
        try:
            value = jsonio.load_file(orig, "ip_forward.orig").get("value", "0")
        except Exception:  # noqa: BLE001 - a broken record: leave the sysctl as it is
            value = None
        if value is not None:
            netlink.write_sysctl(IP_FORWARD, value)
        for n in os.listdir(FORWARD_DIR):
            os.unlink(os.path.join(FORWARD_DIR, n))
        os.rmdir(FORWARD_DIR)
