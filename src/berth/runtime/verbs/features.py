"""`features`: what this runtime supports, in the OCI features format."""
import os

from berth.oci import jsonio
from berth.runtime.features import features


def main(ctx, opts, args):
    os.write(1, (jsonio.dumps(features(), indent=4) + "\n").encode())
    return 0
