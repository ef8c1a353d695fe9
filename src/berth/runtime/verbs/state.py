"""`state`: the OCI state of one container as JSON."""
import os

from berth.oci import jsonio
from berth.runtime.container import Container


def main(ctx, opts, args):
    c = Container.load(ctx.root, args[0])
    os.write(1, (jsonio.dumps(c.oci_state(), indent=2) + "\n").encode())
    return 0
