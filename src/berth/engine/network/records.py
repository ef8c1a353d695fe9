"""The driver's records under <data-root>/network/, the truth for teardown,
restore and the firewall:
  endpoints/<container id>.json  written BEFORE any veth is made: the
                                 container's addresses (its leases), veth
                                 names and published ports
  bridges.json                   bridges berth made, written before each"""
import json
import os

from berth.oci import jsonio


class Records:
    def __init__(self, dir):
        self.dir = dir
        self.epdir = os.path.join(dir, "endpoints")
        os.makedirs(self.epdir, mode=0o700, exist_ok=True)

    def path(self, cid):
        return os.path.join(self.epdir, cid + ".json")

    def endpoints(self):
        out = {}
        for n in sorted(os.listdir(self.epdir)):
            if n.endswith(".json"):
                try:
                    with open(os.path.join(self.epdir, n)) as f:
                        out[n[:-5]] = json.load(f)
                except (OSError, ValueError):
                    continue
        return out

    def write(self, rec):
        jsonio.write_atomic(self.path(rec["id"]), rec, indent=1, mode=0o600)

    def bridges(self):
        try:
            with open(os.path.join(self.dir, "bridges.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def write_bridges(self, b):
        p = os.path.join(self.dir, "bridges.json")
        if b:
            jsonio.write_atomic(p, b, indent=1, mode=0o600)
        elif os.path.exists(p):
            os.unlink(p)
