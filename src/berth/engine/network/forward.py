"""IP forwarding, shared by every berth daemon on the host.

net.ipv4.ip_forward is switched on while some berth daemon has bridges
(net.ipv6.conf.all.forwarding while some has IPv6 bridges); the value
found first is kept under /run/berth-net/ (/run/berth-net6/) and put back
when the last daemon using it closes with no container running. The two
families keep apart directories, so a daemon that knows only IPv4 never
removes the IPv6 records."""
import os

from berth.oci import jsonio
from berth.engine.network import netlink

FORWARD_DIR = "/run/berth-net"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
FORWARD6_DIR = "/run/berth-net6"
IP6_FORWARD = "/proc/sys/net/ipv6/conf/all/forwarding"


class Forward:
    def __init__(self, enabled, tag, data_dir, family=4):
        self.enabled = enabled
        self.tag = tag
        self.dir = data_dir
        self._held = False
        self.run_dir, self.key = (FORWARD_DIR, IP_FORWARD) if family == 4 else \
            (FORWARD6_DIR, IP6_FORWARD)
        self.orig = os.path.join(self.run_dir, "ip_forward.orig" if family == 4 else
                                 "forwarding.orig")

    def on(self):
        if not self.enabled or self._held:
            return
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        if not os.path.exists(self.orig):
            jsonio.write_atomic(self.orig, {"value": netlink.read_sysctl(self.key) or "0"})
        with open(os.path.join(self.run_dir, "user." + (self.tag or "default")), "w") as f:
            f.write(self.dir)
        netlink.write_sysctl(self.key, 1)
        self._held = True

    def release(self):
        mine = os.path.join(self.run_dir, "user." + (self.tag or "default"))
        if not os.path.exists(mine):
            return
        os.unlink(mine)
        self._held = False
        left = [n for n in os.listdir(self.run_dir) if n.startswith("user.")]
        # a user whose data root is gone crashed long ago: not a user
        for n in left[:]:
            try:
                with open(os.path.join(self.run_dir, n)) as f:
                    d = f.read().strip()
            except OSError:
                d = ""
            if not os.path.isdir(os.path.join(d, "endpoints")):
                os.unlink(os.path.join(self.run_dir, n))
                left.remove(n)
        if left:
            return
        try:
            value = jsonio.load_file(self.orig, os.path.basename(self.orig)).get("value", "0")
        except Exception:  # noqa: BLE001 - a broken record: leave the sysctl as it is
            value = None
        if value is not None:
            netlink.write_sysctl(self.key, value)
        for n in os.listdir(self.run_dir):
            os.unlink(os.path.join(self.run_dir, n))
        os.rmdir(self.run_dir)
