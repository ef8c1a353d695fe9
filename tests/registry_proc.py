"""Debian's docker-registry (distribution 2.8) on a free 127.0.0.1 port (plain
http is allowed on loopback only), its storage, config and log under a
test's tmp dir, killed when done: tests/api/conftest.py's `registry` fixture
and tests/engine/test_registry.py's `reg`.

    with running(tmp_path) as reg:      # a Registry, or a subclass: cls=
        status, headers, body = reg.raw("GET", "/v2/")
"""
import contextlib
import http.client
import os
import subprocess
import time

from netutil import free_port

REGISTRY_BIN = "/usr/bin/docker-registry"
START_TIMEOUT = 10


def installed():
    return os.access(REGISTRY_BIN, os.X_OK)


def _htpasswd(path, user, password):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt   # bcrypt through glibc's libcrypt, as htpasswd -B writes
    path.write_text(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")


class Registry:
    def __init__(self, root, port, proc):
        self.root = root
        self.port = port
        self.proc = proc
        self.host = f"127.0.0.1:{port}"

    def raw(self, method, path, body=None, headers=None):
        """(status, headers, body) of one plain request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()


@contextlib.contextmanager
def running(tmp_path, cls=Registry, login=None):
    """A docker-registry serving from tmp_path/registry until the block ends;
    raises RuntimeError (with its log) if it does not answer /v2/ in time.
    login=(user, password): basic auth (htpasswd) in front of everything."""
    port = free_port()
    root = tmp_path / "registry"
    root.mkdir()
    cfg = tmp_path / "registry.yml"
    cfg.write_text(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    if login:
        _htpasswd(tmp_path / "htpasswd", *login)
        with open(cfg, "a") as f:
            f.write(f"auth:\n  htpasswd:\n    realm: berth-test\n    path: {tmp_path / 'htpasswd'}\n")
    log = open(tmp_path / "registry.log", "wb")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    try:
        r = cls(str(root), port, proc)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if r.raw("GET", "/v2/")[0] in (200, 401):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not come up: "
                                   + (tmp_path / "registry.log").read_text())
            time.sleep(0.02)
        yield r
    finally:
        proc.kill()
        proc.wait()
        log.close()
