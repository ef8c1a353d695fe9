"""`spec`: write a default config.json into the bundle, like `runc spec`."""
import os

from berth.errors import Conflict
from berth.oci import jsonio
from berth.oci.defaults import default_spec


def main(ctx, opts, args):
    path = os.path.join(opts.get("bundle") or ".", "config.json")
    if os.path.exists(path):
        raise Conflict(f"file {path} exists", hint="remove it first")
    with open(path, "w") as f:
        f.write(jsonio.dumps(default_spec(rootless=bool(opts.get("rootless"))), indent=2) + "\n")
    return 0
