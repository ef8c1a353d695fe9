"""berthd's listeners and front door, end to end: TCP only with mutual TLS
(certificates made here with `cryptography`), plain TCP refused unless
forced, the Unix socket's owner and mode, and the authorization policy
and audit log wired into a running daemon.

Every daemon is started with its own --data-root/--exec-root/--config-dir
under tmp_path and stopped by PID in teardown."""
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from netutil import free_port

ROOT = Path(__file__).resolve().parents[2]
BERTHD = ROOT / "bin" / "berthd"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root"),
    pytest.mark.skipif(not BERTHD.exists(), reason="bin/berthd missing: run make build"),
]


# -- certificates -------------------------------------------------------------

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key, path):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


class CA:
    def __init__(self, cn):
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        pub = self.key.public_key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(pub).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
            .sign(self.key, hashes.SHA256()))

    def write(self, path):
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def issue(self, cn, directory, server=False):
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder()
             .subject_name(_name(cn)).issuer_name(self.cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                          crl_sign=False, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=True, encipher_only=False,
                                          decipher_only=False), critical=True)
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                 critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.key.public_key()), critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, directory / "key.pem")
        return str(directory / "cert.pem"), str(directory / "key.pem")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA("berth test CA"), CA("some other CA")
    out = {"ca": ca.write(d / "ca.pem"), "other_ca": other.write(d / "other-ca.pem")}
    out["server"] = ca.issue("localhost", d / "server", server=True)
    out["client"] = ca.issue("ci-client", d / "client")
    out["stranger"] = other.issue("ci-client", d / "stranger")   # same CN, wrong CA
    yield out
    shutil.rmtree(d, ignore_errors=True)


# -- daemons --------------------------------------------------------------------


class Daemon:
    def __init__(self, base, args):
        self.base = base
        self.sock = str(base / "berth.sock")
        self.errfile = base / "berthd.err"
        argv = [str(BERTHD), "-H", f"unix://{self.sock}",
                "--data-root", str(base / "lib"), "--exec-root", str(base / "run"),
                "--config-dir", str(base / "etc"), "--group", "root", *args]
        self.err = open(self.errfile, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.err)

    def stderr(self):
        return self.errfile.read_text(errors="replace")

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "listening on" in self.stderr():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"berthd exited {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.05)
        raise AssertionError(f"berthd not ready after {timeout}s: {self.stderr()}")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait(15)
        self.err.close()


@pytest.fixture
def daemons(tmp_path):
    started = []

    def start(*args, wait=True):
        base = tmp_path / f"d{len(started)}"
        base.mkdir()
        d = Daemon(base, list(args))
        started.append(d)
        if wait:
            d.wait_ready()
        return d
    yield start
    for d in started:
        d.stop()
    for d in started:
        shutil.rmtree(d.base, ignore_errors=True)


def tls_args(pki, port):
    cert, key = pki["server"]
    return ["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", pki["ca"],
            "--tlscert", cert, "--tlskey", key]


def client_context(ca, cert=None, max_tls12=False):
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(*cert)
    if max_tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def https(port, ctx, method="GET", path="/_ping", body=None):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=20)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def unix_request(sock, method, path, body=None):
    conn = UnixConnection(sock)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def docker(tmp_path, *args, env=None):
    cfg = tmp_path / "docker-config"
    cfg.mkdir(exist_ok=True)
    e = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    e["DOCKER_CONFIG"] = str(cfg)
    e.update(env or {})
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, env=e)


# -- TLS -------------------------------------------------------------------------

def test_mutual_tls_client_gets_ping(daemons, pki):
    port = free_port()
    daemons(*tls_args(pki, port))
    status, body = https(port, client_context(pki["ca"], pki["client"]))
    assert (status, body) == (200, b"OK")


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed")
def test_docker_cli_over_mutual_tls(daemons, pki, tmp_path):
    port = free_port()
    daemons(*tls_args(pki, port))
    cert, key = pki["client"]
    r = docker(tmp_path, "--tlsverify", "--tlscacert", pki["ca"], "--tlscert", cert,
               "--tlskey", key, "-H", f"tcp://127.0.0.1:{port}", "version",
               "--format", "{{.Server.APIVersion}}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("1."), r.stdout
    # the CLI without its certificate does not get in
    r = docker(tmp_path, "--tlsverify", "--tlscacert", pki["ca"],
               "-H", f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.APIVersion}}")
    assert r.returncode != 0 and not r.stdout.strip()
    # TLS 1.3 sends the refusal after the client's half of the handshake: the
    # CLI sees either the alert or its first write failing
    err = r.stderr.lower()
    assert any(w in err for w in ("certificate", "tls", "broken pipe", "connection reset",
                                  "eof")), r.stderr


def test_client_without_certificate_refused_at_handshake(daemons, pki):
    port = free_port()
    daemons(*tls_args(pki, port))
    # TLS 1.2: the server asks for a certificate inside the handshake
    ctx = client_context(pki["ca"], max_tls12=True)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="localhost")
    # TLS 1.3: the refusal arrives as an alert before any HTTP answer
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https(port, client_context(pki["ca"]))
    # the daemon still serves the next, proper client
    assert https(port, client_context(pki["ca"], pki["client"]))[0] == 200


def test_certificate_from_another_ca_refused(daemons, pki):
    port = free_port()
    daemons(*tls_args(pki, port))
    ctx = client_context(pki["ca"], pki["stranger"], max_tls12=True)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="localhost")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https(port, client_context(pki["ca"], pki["stranger"]))


def test_plain_client_against_tls_port_gets_nothing(daemons, pki):
    port = free_port()
    daemons(*tls_args(pki, port))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        with pytest.raises((http.client.HTTPException, ConnectionError, socket.timeout)):
            conn.request("GET", "/_ping")
            conn.getresponse().read()
    finally:
        conn.close()


def test_tls_peer_identity_in_audit_log(daemons, pki, tmp_path):
    port = free_port()
    log = tmp_path / "audit" / "audit.log"
    daemons(*tls_args(pki, port), "--audit-log", str(log))
    status, _ = https(port, client_context(pki["ca"], pki["client"]), "POST",
                      "/v1.43/containers/create", {})
    assert status == 400
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[-1]["cert_subject"] == "ci-client"
    assert lines[-1]["who"].startswith("tls:ci-client@")
    assert lines[-1]["status"] == 400


def test_tcp_without_tls_refused(daemons):
    d = daemons("-H", f"tcp://127.0.0.1:{free_port()}", wait=False)
    rc = d.proc.wait(30)
    assert rc != 0
    assert "--tlsverify" in d.stderr()


def test_refused_start_leaves_no_socket(daemons):
    d = daemons("-H", f"tcp://127.0.0.1:{free_port()}", wait=False)
    assert d.proc.wait(30) != 0
    assert not os.path.exists(d.sock)


def test_insecure_tcp_warns(daemons):
    port = free_port()
    d = daemons("-H", f"tcp://127.0.0.1:{port}", "--insecure-tcp")
    assert "WARNING" in d.stderr()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", "/_ping")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


# -- the Unix socket ---------------------------------------------------------------

def test_unix_socket_mode_and_owner(daemons):
    d = daemons()
    st = os.stat(d.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert unix_request(d.sock, "GET", "/_ping") == (200, b"OK")


# -- authorization + audit, end to end --------------------------------------------

@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "authz.json"
    p.write_text(json.dumps({
        "deny_privileged": True,
        "deny": [{"method": "DELETE", "path": "^/images/"}],
    }))
    os.chmod(p, 0o644)
    return p


def test_policy_denies_privileged_before_image_lookup(daemons, policy_file, tmp_path):
    log = tmp_path / "audit" / "audit.log"
    d = daemons("--authz-policy", str(policy_file), "--audit-log", str(log))
    body = {"Image": "no-such-image-berth-test", "Env": ["SECRET=hunter2"],
            "HostConfig": {"Privileged": True}}
    status, raw = unix_request(d.sock, "POST", "/v1.43/containers/create", body)
    assert status == 403, raw
    msg = json.loads(raw)["message"]
    assert msg == (f"authorization denied by policy {policy_file}: rule deny_privileged: "
                   "privileged containers are not allowed")
    # the same request, unprivileged, passes the policy and fails on the image
    body["HostConfig"]["Privileged"] = False
    status, raw = unix_request(d.sock, "POST", "/v1.43/containers/create", body)
    assert status == 404, raw
    # a smuggled path is no way round a deny rule
    status, raw = unix_request(d.sock, "DELETE", "/v1.43/images//busybox")
    assert status in (403, 404), raw
    status, raw = unix_request(d.sock, "DELETE", "/v1.43/images/busybox")
    assert status == 403 and "rule deny[0]" in json.loads(raw)["message"], raw

    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    text = log.read_text()
    assert "hunter2" not in text
    lines = [json.loads(x) for x in text.splitlines()]
    denied = [e for e in lines if e["path"] == "/containers/create" and e["status"] == 403]
    assert len(denied) == 1
    e = denied[0]
    assert e["method"] == "POST" and e["uid"] == 0
    assert "rule deny_privileged" in e["error"]
    assert e["body"]["privileged"] is True and e["body"]["env"] == ["SECRET"]
    assert any(x["path"] == "/images/busybox" and x["status"] == 403 for x in lines)


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed")
def test_docker_cli_sees_the_policy_message(daemons, policy_file, tmp_path):
    d = daemons("--authz-policy", str(policy_file), "--audit-log",
                str(tmp_path / "audit.log"))
    r = docker(tmp_path, "-H", f"unix://{d.sock}", "create", "--privileged",
               "no-such-image-berth-test")
    assert r.returncode != 0
    assert "rule deny_privileged" in r.stderr, r.stderr


def test_missing_or_bad_policy_stops_the_daemon(daemons, tmp_path):
    d = daemons("--authz-policy", str(tmp_path / "nope.json"), wait=False)
    assert d.proc.wait(30) != 0
    assert "nope.json" in d.stderr()
    bad = tmp_path / "bad.json"
    bad.write_text('{"deny_privilegd": true}')
    os.chmod(bad, 0o644)
    d = daemons("--authz-policy", str(bad), wait=False)
    assert d.proc.wait(30) != 0
    assert "deny_privilegd" in d.stderr() and "bad.json" in d.stderr()


def test_silent_client_does_not_stall_others(daemons, pki):
    port = free_port()
    daemons(*tls_args(pki, port))
    with socket.create_connection(("127.0.0.1", port), timeout=20):   # says nothing
        time.sleep(0.2)
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5,
                                           context=client_context(pki["ca"], pki["client"]))
        try:
            conn.request("GET", "/_ping")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
