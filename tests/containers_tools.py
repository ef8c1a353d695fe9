"""Debian's skopeo (1.9) kept off the host's containers state, for the
zstd and image-trust interop tests.

Each run gets its own policy.json, registries.d and tmp dir under the
test's work dir, an empty auth file, and HOME there too. containers/image
writes its blob-info cache to /var/lib/containers/cache whatever it is
told, so skopeo runs in a private mount namespace with a tmpfs there (as
bench/podman_isolation.py does for `podman load`)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

ACCEPT_ALL = {"default": [{"type": "insecureAcceptAnything"}]}


def installed():
    return shutil.which("skopeo") is not None and shutil.which("unshare") is not None


def _private(argv):
    target = "/var/lib/containers" if os.path.isdir("/var/lib/containers") else "/var/lib"
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o size=64m skopeo-blob-cache "$0" && exec "$@"', target, *argv]


class Skopeo:
    """skopeo with everything it reads or writes under work."""

    def __init__(self, work, policy=None):
        self.work = Path(work)
        for d in ("tmp", "home", "registries.d"):
            (self.work / d).mkdir(parents=True, exist_ok=True)
        (self.work / "auth.json").write_text('{"auths": {}}\n')
        self.set_policy(policy or ACCEPT_ALL)

    def set_policy(self, doc):
        self.policy = self.work / "policy.json"
        self.policy.write_text(json.dumps(doc))

    def use_sigstore_attachments(self, registry_host):
        (self.work / "registries.d" / "berth-test.yaml").write_text(
            f"docker:\n  {registry_host}:\n    use-sigstore-attachments: true\n")

    def run(self, *args, timeout=120):
        sub, rest = args[0], list(args[1:])
        argv = ["skopeo", "--policy", str(self.policy), "--registries.d",
                str(self.work / "registries.d"), "--tmpdir", str(self.work / "tmp"), sub]
        if sub in ("copy", "inspect"):
            argv += ["--authfile", str(self.work / "auth.json")]
        env = dict(os.environ, HOME=str(self.work / "home"), TMPDIR=str(self.work / "tmp"),
                   REGISTRY_AUTH_FILE=str(self.work / "auth.json"))
        return subprocess.run(_private(argv + rest), capture_output=True, text=True,
                              timeout=timeout, env=env)

    def ok(self, *args, timeout=120):
        r = self.run(*args, timeout=timeout)
        assert r.returncode == 0, f"skopeo {' '.join(map(str, args))}: {r.stderr}"
        return r.stdout
