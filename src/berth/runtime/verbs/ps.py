"""`ps`: processes of the container, from its cgroup; -f json prints pids,
otherwise the host's `ps` output filtered to them (as runc does)."""
import os

from berth.oci import jsonio
from berth.runtime.container import Container


def main(ctx, opts, args):
    c = Container.load(ctx.root, args[0])
    # a stopped container has no processes left: an empty list, as runc
    # gives, not an error
    pids = c.pids() if c.status() != "stopped" else []
    if opts.get("format") == "json":
        os.write(1, (jsonio.dumps(pids) + "\n").encode())
        return 0
    import subprocess
    out = subprocess.run(["ps"] + (args[1:] or ["-ef"]), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    header = out[0].split()
    col = header.index("PID")
    keep = set(pids)
    lines = [out[0]] + [ln for ln in out[1:] if int(ln.split()[col]) in keep]
    os.write(1, ("\n".join(lines) + "\n").encode())
    return 0
