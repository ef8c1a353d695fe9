"""The `berth` CLI end to end against a real berthd (tests/api/conftest.py):
Docker's verbs, flags, output formats and exit codes."""
import os
import subprocess
import time
from pathlib import Path

import pytest

import registry_proc
from procutil import stop

REPO = Path(__file__).resolve().parents[2]
BERTH = str(REPO / "bin" / "berth")


@pytest.fixture
def berth(berthd):
    if not os.access(BERTH, os.X_OK):
        pytest.skip(f"{BERTH} is missing: run make build")
    env = dict(berthd.env)
    env.pop("BERTH_HOST", None)  # the fixture's DOCKER_HOST must win

    def run(*args, input=None, timeout=120):
        return subprocess.run([BERTH, *map(str, args)], env=env, capture_output=True, text=True,
                              input=input, timeout=timeout)

    def ok(*args, **kw):
        r = run(*args, **kw)
        assert r.returncode == 0, f"berth {' '.join(map(str, args))} -> {r.returncode}\n" \
                                  f"stdout: {r.stdout}\nstderr: {r.stderr}\nberthd log:\n{berthd.log()}"
        return r.stdout
    run.ok = ok
    run.daemon = berthd
    return run


def load_alpine(berth, fixture_image):
    out = berth.ok("load", "-i", fixture_image("alpine-3.20"))
    assert "Loaded image: alpine:latest" in out


def test_images_volumes_networks_and_system(berth, fixture_image):
    load_alpine(berth, fixture_image)
    lines = berth.ok("images").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[0].index("TAG") == lines[1].index("latest")
    assert lines[1].split()[:2] == ["alpine", "latest"]
    image_id = berth.daemon.json("GET", "/images/alpine/json")["Id"]
    assert berth.ok("images", "-q").split() == [image_id[7:19]]
    assert berth.ok("images", "--format", "{{.Repository}}:{{.Tag}}") == "alpine:latest\n"
    assert berth.ok("image", "inspect", "-f", "{{.Id}}", "alpine") == image_id + "\n"
    assert berth.ok("inspect", "--type", "image", "-f", "{{json .Config.Cmd}}", "alpine") == '["/bin/sh"]\n'
    assert "IMAGE" in berth.ok("history", "alpine").splitlines()[0]
    berth.ok("tag", "alpine", "mine/alp:1")
    assert "mine/alp:1" in berth.ok("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert berth.ok("rmi", "mine/alp:1") == "Untagged: mine/alp:1\n"
    r = berth("rmi", "nope")
    assert r.returncode == 1 and r.stderr.startswith("berth: Error response from daemon: ")
    # save -> load round trip through a pipe
    saved = subprocess.run([BERTH, "save", "alpine"], env=dict(berth.daemon.env), capture_output=True)
    assert saved.returncode == 0 and len(saved.stdout) > 1_000_000

    assert berth.ok("volume", "create", "v1") == "v1\n"
    assert berth.ok("volume", "create", "--label", "a=b", "v2") == "v2\n"
    lines = berth.ok("volume", "ls").splitlines()
    assert lines[0] == "DRIVER    VOLUME NAME" and "local     v1" in lines
    assert berth.ok("volume", "ls", "-q").split() == ["v1", "v2"]
    assert berth.ok("volume", "inspect", "-f", "{{.Name}} {{.Labels.a}}", "v2") == "v2 b\n"
    assert berth.ok("volume", "rm", "v1", "v2") == "v1\nv2\n"
    r = berth("volume", "rm", "v1")
    assert r.returncode == 1 and "v1" in r.stderr

    assert berth.ok("network", "ls", "--format", "{{.Name}}").split() >= ["bridge"]
    net_id = berth.ok("network", "create", "n1").strip()
    assert berth.ok("network", "inspect", "-f", "{{.Id}}", "n1").strip() == net_id
    assert berth.ok("network", "rm", "n1") == "n1\n"

    assert "Server: berth" in berth.ok("version")
    assert "Images: 1" in berth.ok("info")
    assert berth.ok("system", "df").splitlines()[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    r = berth("login")
    assert r.returncode == 1 and "needs a user name and a password" in r.stderr
    r = berth("frobnicate")
    assert r.returncode == 1 and "is not a berth command" in r.stderr
    r = berth("ps", "--bogus")
    assert r.returncode == 125 and "unknown flag: --bogus" in r.stderr


def test_run_exit_codes_and_output(berth, fixture_image):
    load_alpine(berth, fixture_image)
    r = berth("run", "--rm", "alpine", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    r = berth("run", "alpine", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = berth("run", "--rm", "-i", "alpine", "sh", input="echo from-stdin\n")
    assert (r.returncode, r.stdout) == (0, "from-stdin\n")
    r = berth("run", "--pull", "never", "no-such-image")
    assert r.returncode == 125 and "berth: Error response from daemon:" in r.stderr
    r = berth("run", "--rm", "--restart", "always", "alpine")
    assert r.returncode == 125 and "conflicting options" in r.stderr
    # --rm removed its container; the exit-3 one stays
    assert berth.ok("ps", "-a", "--format", "{{.Command}} {{.State}}").splitlines() == \
        ['"sh -c echo out; ech…" exited']


def test_run_missing_binary(berth, fixture_image):
    load_alpine(berth, fixture_image)
    r = berth("run", "alpine", "no-such-binary")
    assert r.returncode == 127 and "berth: Error response from daemon:" in r.stderr
    berth.ok("rm", "-f", berth.ok("ps", "-aq").strip())


def test_run_rm_missing_binary_leaves_nothing(berth, fixture_image):
    load_alpine(berth, fixture_image)
    r = berth("run", "--rm", "alpine", "no-such-binary")
    assert r.returncode == 127
    time.sleep(1)
    assert berth.ok("ps", "-aq") == ""


def test_detached_container_lifecycle(berth, fixture_image):
    load_alpine(berth, fixture_image)
    cid = berth.ok("run", "-d", "--network", "none", "--name", "web", "-e", "A=1", "-l", "k=v", "alpine",
                   "sh", "-c", "echo started; exec sleep 100").strip()
    assert len(cid) == 64
    lines = berth.ok("ps").splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert lines[1].startswith(cid[:12]) and lines[1].endswith("web")
    assert lines[0].index("NAMES") == lines[1].index("web")
    assert berth.ok("ps", "-q") == cid[:12] + "\n"
    assert berth.ok("ps", "--no-trunc", "-q") == cid + "\n"
    assert berth.ok("ps", "-f", "label=k=v", "--format", "{{.Names}} {{.Labels}}") == "web k=v\n"
    assert berth.ok("inspect", "-f", "{{.State.Status}}", "web") == "running\n"
    assert berth.ok("container", "inspect", "-f", "{{.Name}} {{index .Config.Env 1}}", "web") == "/web A=1\n"
    assert berth.ok("exec", "web", "cat", "/etc/alpine-release").startswith("3.20")
    r = berth("exec", "web", "sh", "-c", "echo oops >&2; exit 5")
    assert (r.returncode, r.stderr) == (5, "oops\n")
    assert berth.ok("exec", "-i", "web", "cat", input="piped\n") == "piped\n"
    assert berth.ok("exec", "-e", "X=y", "-w", "/tmp", "web", "sh", "-c", "echo $X $PWD") == "y /tmp\n"
    for _ in range(50):
        if berth.ok("logs", "web") == "started\n":
            break
        time.sleep(0.1)
    assert berth.ok("logs", "web") == "started\n"
    assert "sleep 100" in berth.ok("top", "web")
    stats = berth.ok("stats", "--no-stream", "web").splitlines()
    assert stats[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"] and "web" in stats[1]
    assert berth.ok("pause", "web") == "web\n"
    assert berth.ok("inspect", "-f", "{{.State.Paused}}", "web") == "true\n"
    assert berth.ok("unpause", "web") == "web\n"
    assert berth.ok("update", "--memory", "256m", "--pids-limit", "50", "web") == "web\n"
    assert berth.ok("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}", "web") == \
        f"{256 * 2**20} 50\n"
    assert berth.ok("rename", "web", "web2") == ""
    assert berth.ok("stop", "-t", "1", "web2") == "web2\n"
    assert berth.ok("wait", "web2").strip() in ("137", "143")
    assert berth.ok("inspect", "-f", "{{.State.Status}}", "web2") == "exited\n"
    assert berth.ok("rm", "web2") == "web2\n"
    r = berth("rm", "web2")
    assert r.returncode == 1 and "No such container" in r.stderr
    assert berth.ok("ps", "-a", "-q") == ""


def test_create_start_attach_and_prune(berth, fixture_image):
    load_alpine(berth, fixture_image)
    cid = berth.ok("create", "--network", "none", "--name", "c1", "alpine", "sh", "-c", "echo attached; exit 4").strip()
    assert berth.ok("inspect", "-f", "{{.State.Status}}", cid) == "created\n"
    r = berth("start", "-a", "c1")
    assert (r.returncode, r.stdout) == (4, "attached\n")
    berth.ok("create", "--net=none", "alpine", "true")
    out = berth.ok("container", "prune", "-f")
    assert out.startswith("Deleted Containers:\n") and cid in out
    assert berth.ok("ps", "-a", "-q") == ""


def test_cp_out_of_a_container(berth, fixture_image, tmp_path):
    load_alpine(berth, fixture_image)
    berth.ok("run", "-d", "--network", "none", "--name", "box", "alpine", "sleep", "100")
    berth.ok("cp", "box:/etc/apk", str(tmp_path / "apk"))
    assert (tmp_path / "apk" / "arch").is_file()
    berth.ok("cp", "box:/etc/alpine-release", str(tmp_path))
    assert (tmp_path / "alpine-release").read_text().startswith("3.20")


def test_cp_into_a_container(berth, fixture_image, tmp_path):
    load_alpine(berth, fixture_image)
    berth.ok("run", "-d", "--network", "none", "--name", "box", "alpine", "sleep", "100")
    (tmp_path / "f.txt").write_text("data\n")
    berth.ok("cp", str(tmp_path / "f.txt"), "box:/tmp/", timeout=30)
    berth.ok("cp", str(tmp_path / "f.txt"), "box:/tmp/renamed.txt", timeout=30)
    assert berth.ok("exec", "box", "cat", "/tmp/f.txt", "/tmp/renamed.txt") == "data\ndata\n"


def test_events_and_volume_in_use(berth, fixture_image):
    load_alpine(berth, fixture_image)
    berth.ok("volume", "create", "data")
    berth.ok("run", "--rm", "--network=none", "-v", "data:/data", "alpine", "sh", "-c", "echo x > /data/f")
    assert berth.ok("run", "--rm", "--network=none", "-v", "data:/data", "alpine", "cat", "/data/f") == "x\n"
    out = berth.ok("events", "--since", "5m", "--until", "0s", "-f", "type=volume")
    assert " volume create data" in out
    out = berth.ok("events", "--since", "5m", "--until", "0s", "--format", "{{.Type}} {{.Action}}",
                   "-f", "type=container", "-f", "event=start")
    assert out.splitlines() == ["container start"] * 2
    assert berth.ok("volume", "rm", "data") == "data\n"


def test_image_sign_and_verify(berth, fixture_image, tmp_path):
    from berth.engine.images import trust
    load_alpine(berth, fixture_image)
    key = tmp_path / "me.key"
    mine, others = tmp_path / "mine", tmp_path / "others"
    mine.mkdir()
    others.mkdir()
    os.rename(trust.generate_key(str(key)), mine / "me.pub")
    os.rename(trust.generate_key(str(tmp_path / "other.key")), others / "other.pub")
    assert berth.ok("image", "sign", "--key", key, "--signer", "me", "alpine").startswith("Signed alpine as me")
    assert berth.ok("image", "verify", "--keys", mine, "alpine") == "Verified alpine: signed by me\n"
    r = berth("image", "verify", "--keys", others, "alpine")
    assert r.returncode == 1 and "no valid signature" in r.stderr
    r = berth("image", "sign", "alpine")
    assert r.returncode == 125 and "--key is required" in r.stderr


def test_push_pull_and_run_pulls_a_missing_image(berth, fixture_image, registry):
    registry = registry.host   # the conftest fixture's docker-registry
    berth.ok("load", "-i", fixture_image("busybox-1.38"))
    ref = f"{registry}/bb:1"
    berth.ok("tag", "busybox", ref)
    out = berth.ok("push", ref)
    assert out.startswith(f"The push refers to repository [{registry}/bb]") and "1: digest: sha256:" in out
    berth.ok("rmi", ref)
    out = berth.ok("pull", ref)
    assert "Pulling from" in out and out.endswith(f"\n{ref}\n")
    assert berth.ok("pull", "-q", ref) == ref + "\n"
    berth.ok("rmi", ref)
    r = berth("run", "--rm", "--network", "none", ref, "echo", "ran")
    assert (r.returncode, r.stdout) == (0, "ran\n"), r.stderr
    assert r.stderr.startswith(f"Unable to find image '{ref}' locally\n")
    r = berth("pull", f"{registry}/nothing:here")
    assert r.returncode == 1 and r.stderr.startswith("berth: ")


def test_login_push_pull_logout(berth, fixture_image, tmp_path):
    """berth login keeps credentials in the docker CLI's config.json (the
    fixture's private DOCKER_CONFIG) and sends them with push and pull."""
    if not registry_proc.installed():
        pytest.skip("docker-registry is not installed")
    d = tmp_path / "locked"
    d.mkdir()
    with registry_proc.running(d, login=("ann", "s3cret")) as reg:
        r = berth("login", "-u", "ann", "--password-stdin", reg.host, input="wrong\n")
        assert r.returncode == 1 and "401 Unauthorized" in r.stderr, r.stderr
        assert berth.ok("login", "-u", "ann", "--password-stdin", reg.host,
                        input="s3cret\n") == "Login Succeeded\n"
        berth.ok("load", "-i", fixture_image("busybox-1.38"))
        ref = f"{reg.host}/bb:1"
        berth.ok("tag", "busybox", ref)
        berth.ok("push", ref)
        berth.ok("rmi", ref)
        berth.ok("pull", ref)
        assert berth.ok("logout", reg.host) == f"Removing login credentials for {reg.host}\n"
        r = berth("pull", ref)
        assert r.returncode == 1 and "wants credentials" in r.stderr, r.stderr


def _pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    now = datetime.datetime.now(datetime.timezone.utc)

    def make(cn, issuer_key=None, issuer=None, ca=False, usage=None, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = b.sign(issuer_key or key, hashes.SHA256())
        (d / f"{cn}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / f"{cn}-key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return key, name
    ca_key, ca_name = make("ca", ca=True)
    make("server", ca_key, ca_name, usage=ExtendedKeyUsageOID.SERVER_AUTH,
         san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    make("client", ca_key, ca_name, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return {n: str(d / f"{n}.pem") for n in ("ca", "server", "client")}


def test_berth_over_tcp_with_mutual_tls(tmp_path):
    import shutil
    import socket
    berthd = REPO / "bin" / "berthd"
    if not os.access(berthd, os.X_OK) or not os.access(BERTH, os.X_OK):
        pytest.skip("bin/berthd or bin/berth is missing: run make build")
    pki = _pki(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = Path(os.path.realpath(tmp_path)) / "d"
    (base / "etc").mkdir(parents=True)
    log = open(tmp_path / "berthd.log", "wb")
    proc = subprocess.Popen([str(berthd), "-H", f"tcp://127.0.0.1:{port}", "--tlsverify",
                             "--tlscacert", pki["ca"], "--tlscert", pki["server"],
                             "--tlskey", pki["server"][:-4] + "-key.pem",
                             "--data-root", base / "lib", "--exec-root", base / "run",
                             "--config-dir", base / "etc", "--group", "root"],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "BERTH_"))}
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "berthd.log").read_text()
                time.sleep(0.05)
        tls = ["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", pki["ca"]]
        mine = ["--tlscert", pki["client"], "--tlskey", pki["client"][:-4] + "-key.pem"]

        def berth(*args):
            return subprocess.run([BERTH, *args], env=env, capture_output=True, text=True, timeout=60)
        r = berth(*tls, *mine, "version", "--format", "{{.Server.ApiVersion}}")
        assert (r.returncode, r.stdout) == (0, "1.43\n"), r.stderr
        assert berth(*tls, *mine, "ps", "-q").returncode == 0
        r = berth(*tls, "ps")  # no client certificate: refused at the handshake
        assert r.returncode == 1 and r.stderr.startswith("berth: ") and "Traceback" not in r.stderr
        env.update(DOCKER_HOST=f"tcp://127.0.0.1:{port}", DOCKER_TLS_VERIFY="1",
                   DOCKER_CERT_PATH=str(tmp_path / "certs"))
        (tmp_path / "certs").mkdir()
        for src, dst in ((pki["ca"], "ca.pem"), (pki["client"], "cert.pem"),
                         (pki["client"][:-4] + "-key.pem", "key.pem")):
            shutil.copy(src, tmp_path / "certs" / dst)
        assert berth("images", "-q").returncode == 0
    finally:
        stop(proc, 10)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def test_follow_logs_kill_restart_export_diff(berth, fixture_image, tmp_path):
    load_alpine(berth, fixture_image)
    berth.ok("run", "-d", "--network", "none", "--name", "talk", "alpine",
             "sh", "-c", "echo a; sleep 1; echo b >&2")
    r = berth("logs", "-f", "talk", timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "a\n", "b\n")
    assert berth.ok("wait", "talk") == "0\n"
    berth.ok("run", "-d", "--network", "none", "--name", "svc", "alpine",
             "sh", "-c", "touch /made; exec sleep 100")
    for _ in range(50):
        if "A /made" in berth.ok("diff", "svc"):
            break
        time.sleep(0.1)
    assert "A /made" in berth.ok("diff", "svc").splitlines()
    assert berth.ok("restart", "-t", "1", "svc") == "svc\n"
    assert berth.ok("inspect", "-f", "{{.State.Running}} {{.RestartCount}}", "svc").startswith("true")
    assert berth.ok("kill", "-s", "KILL", "svc") == "svc\n"
    assert berth.ok("wait", "svc") == "137\n"
    berth.ok("export", "-o", tmp_path / "fs.tar", "svc")
    import tarfile
    with tarfile.open(tmp_path / "fs.tar") as t:
        names = set(t.getnames())
    assert {"etc/alpine-release", "made"} <= {n.lstrip("./") for n in names}
    r = berth("exec", "svc", "true")
    assert r.returncode == 1 and "berth: Error response from daemon:" in r.stderr
