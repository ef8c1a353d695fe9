"""/images through the real docker CLI and raw HTTP: load, ls with filters,
inspect, history, tag, rmi, save (streamed) and load again, import, prune,
pull and push against Debian's docker-registry on loopback, events,
system df, and bad input that must leave the store as it was."""
import base64
import io
import json
import os
import shutil
import tarfile
import time
from urllib.parse import quote

import pytest

from shared_dir import FIXTURES

IMAGES = FIXTURES / "images"
need_docker = pytest.mark.skipif(shutil.which("docker") is None,
                                 reason="the docker CLI is not installed")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root"),
    pytest.mark.skipif(not (IMAGES / "alpine-3.20.tar").exists(), reason="image fixtures missing"),
]

ALPINE = "sha256:d8a8a713bd790215faf84cfce48e0a8b0bdf1ee5fac3af2f3e2b4bb61d35463c"
BUSYBOX = "sha256:c6348fa86ba0fb2108c9334f5fe913ddc6d853313e655891f133a0127c30099f"


def flt(obj):
    return quote(json.dumps(obj))


def tags(d):
    return sorted(t for i in d.json("GET", "/images/json") for t in i["RepoTags"])


def store_files(d):
    root = d.data_root / "images"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "lock"}


def message(data):
    return json.loads(data)["message"]


def stream_error(data):
    """The error of a JSON progress stream's last line, if it has one."""
    last = json.loads(data.strip().splitlines()[-1])
    return last.get("error") and last["errorDetail"]["message"] == last["error"]


@need_docker
def test_load_ls_inspect_history(berthd):
    r = berthd.docker("load", "-i", IMAGES / "alpine-3.20.tar", check=True)
    assert r.stdout.strip() == "Loaded image: alpine:latest"
    out = berthd.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", check=True).stdout
    assert out.split() == ["alpine:latest", ALPINE[7:19]]
    imgs = berthd.json("GET", "/images/json")
    assert len(imgs) == 1
    i = imgs[0]
    assert i["Id"] == ALPINE and i["RepoTags"] == ["alpine:latest"] and i["RepoDigests"] is None
    assert isinstance(i["Created"], int) and i["Created"] > 0
    assert i["Size"] == i["VirtualSize"] > 1000000
    assert i["SharedSize"] == -1 and i["Containers"] == -1 and i["ParentId"] == ""
    assert i["Labels"] == {} or i["Labels"] is None or isinstance(i["Labels"], dict)

    info = json.loads(berthd.docker("image", "inspect", "alpine", check=True).stdout)[0]
    assert info["Id"] == ALPINE and info["RepoTags"] == ["alpine:latest"]
    assert info["Config"]["Cmd"] == ["/bin/sh"] and info["Os"] == "linux"
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 1
    assert info["GraphDriver"]["Name"] and "Metadata" in info
    assert berthd.json("GET", f"/images/{ALPINE[7:19]}/json")["Id"] == ALPINE
    assert berthd.json("GET", f"/images/{ALPINE}/json")["Id"] == ALPINE
    assert berthd.json("GET", "/images/docker.io/library/alpine:latest/json")["Id"] == ALPINE

    hist = berthd.json("GET", "/images/alpine/history")
    assert hist[0]["Id"] == ALPINE and hist[0]["Tags"] == ["alpine:latest"]
    assert sum(h["Size"] for h in hist) == i["Size"]
    r = berthd.docker("history", "--no-trunc", "--format", "{{.ID}}", "alpine", check=True)
    assert r.stdout.split()[0] == ALPINE


@need_docker
def test_list_filters(berthd):
    for name in ("alpine-3.20", "alpine-3.10", "busybox-1.38"):
        berthd.load(name)
    all_tags = tags(berthd)
    assert "alpine:latest" in all_tags and "busybox:latest" in all_tags and len(all_tags) == 3

    def q(f):
        return sorted(t for i in berthd.json("GET", "/images/json?filters=" + flt(f))
                      for t in i["RepoTags"] or [i["Id"]])
    assert q({"reference": ["busybox"]}) == ["busybox:latest"]
    assert q({"reference": ["alp*"]}) == sorted(t for t in all_tags if t.startswith("alpine"))
    assert q({"reference": ["alpine:latest"]}) == ["alpine:latest"]
    assert q({"dangling": ["true"]}) == []
    assert len(q({"dangling": ["false"]})) == 3
    assert q({"label": ["no.such.label"]}) == []
    # before/since compare creation times
    imgs = berthd.json("GET", "/images/json")
    oldest = min(imgs, key=lambda i: i["Created"])
    newest = max(imgs, key=lambda i: i["Created"])
    assert oldest["Id"] not in [i["Id"] for i in berthd.json(
        "GET", "/images/json?filters=" + flt({"since": [oldest["Id"]]}))]
    assert [i["Id"] for i in berthd.json(
        "GET", "/images/json?filters=" + flt({"before": [newest["Id"]]}))] == [
        i["Id"] for i in imgs if i["Created"] < newest["Created"]]
    out = berthd.docker("images", "-q", "--filter", "reference=busybox", check=True).stdout.split()
    assert out == [BUSYBOX[7:19]]
    status, _, data = berthd.api("GET", "/images/json?filters=" + flt({"colour": ["red"]}))
    assert status == 400 and "invalid filter" in message(data)


@need_docker
def test_tag_rmi(berthd):
    t0 = int(time.time()) - 1
    berthd.load("alpine-3.20")
    berthd.docker("tag", "alpine", "example.com/team/app:v1", check=True)
    berthd.docker("tag", "alpine", "mine", check=True)
    assert tags(berthd) == ["alpine:latest", "example.com/team/app:v1", "mine:latest"]
    # by id with several names: must be forced
    r = berthd.docker("rmi", ALPINE[7:19])
    assert r.returncode != 0 and "must be forced" in r.stderr
    r = berthd.docker("rmi", "mine", check=True)
    assert r.stdout.strip() == "Untagged: mine:latest"
    r = berthd.docker("rmi", "-f", ALPINE[7:19], check=True)
    assert sorted(r.stdout.splitlines()) == sorted([
        "Untagged: alpine:latest", "Untagged: example.com/team/app:v1", f"Deleted: {ALPINE}"])
    assert berthd.json("GET", "/images/json") == []
    assert [f for f in store_files(berthd) if f.startswith("blobs/")] == []
    evs = [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in berthd.events(t0)
           if e["Type"] == "image"]
    assert ("load", "alpine:latest") in evs and ("tag", "mine:latest") in evs
    assert ("untag", "mine:latest") in evs and ("delete", ALPINE) in evs
    # tag onto a bad name, or without a repo
    berthd.load("alpine-3.20")
    status, _, data = berthd.api("POST", "/images/alpine/tag?repo=UPPER&tag=x")
    assert status == 400 and "invalid reference format" in message(data)
    status, _, data = berthd.api("POST", "/images/alpine/tag")
    assert status == 400
    status, _, data = berthd.api("POST", "/images/alpine/tag?repo=good&tag=-bad")
    assert status == 400


@need_docker
def test_save_and_load_again(berthd, tmp_path):
    berthd.load("alpine-3.20")
    berthd.load("busybox-1.38")
    out = tmp_path / "alpine.tar"
    berthd.docker("save", "-o", out, "alpine", check=True)
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
    assert [m["RepoTags"] for m in manifest] == [["alpine:latest"]]
    berthd.docker("rmi", "alpine", check=True)
    assert tags(berthd) == ["busybox:latest"]
    r = berthd.docker("load", "-i", out, check=True)
    assert r.stdout.strip() == "Loaded image: alpine:latest"
    assert berthd.json("GET", "/images/alpine/json")["Id"] == ALPINE
    # several names in one archive, over the API; and by id: no tags in the archive
    status, headers, data = berthd.api("GET", "/images/get?names=alpine&names=busybox")
    assert status == 200 and headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
    assert sorted(t for m in manifest for t in m["RepoTags"]) == ["alpine:latest", "busybox:latest"]
    status, _, data = berthd.api("GET", f"/images/{BUSYBOX}/get")
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] is None and manifest[0]["Config"] == BUSYBOX[7:] + ".json"
    # docker save to stdout streams too
    r = berthd.docker("save", "busybox", input=b"")
    assert r.returncode == 0 and len(r.stdout) > 1000000
    status, _, data = berthd.api("GET", "/images/get?names=alpine&names=nothere")
    assert status == 404 and message(data) == "No such image: nothere:latest"
    status, _, data = berthd.api("GET", "/images/get")
    assert status == 400


def test_load_of_a_truncated_archive_changes_nothing(berthd):
    berthd.load("busybox-1.38")
    before_files = store_files(berthd)
    before = berthd.json("GET", "/images/json")
    data = (IMAGES / "alpine-3.20.tar").read_bytes()
    for cut in (len(data) // 2, 700, len(data) - 1024 * 3):
        status, _, body = berthd.api("POST", "/images/load", data[:cut],
                                     {"Content-Type": "application/x-tar"})
        assert status == 200 and stream_error(body), body   # in the stream, as dockerd
        assert berthd.json("GET", "/images/json") == before
        assert store_files(berthd) == before_files
    status, _, body = berthd.api("POST", "/images/load", b"not a tar at all" * 100)
    assert status == 200 and stream_error(body), body
    assert store_files(berthd) == before_files
    # the daemon is still fine and loads a whole archive after that
    berthd.load("alpine-3.20")
    assert "alpine:latest" in tags(berthd)


def test_unknown_images_are_404_with_dockers_message(berthd):
    for method, path in (("GET", "/images/nothere/json"), ("GET", "/images/nothere/history"),
                         ("DELETE", "/images/nothere"), ("POST", "/images/nothere/tag?repo=x"),
                         ("GET", "/images/nothere/get"), ("POST", "/images/nothere/push"),
                         ("GET", "/images/nothere:1.0/json")):
        status, _, data = berthd.api(method, path)
        assert status == 404, (path, data)
        want = "No such image: nothere:1.0" if ":1.0" in path else "No such image: nothere:latest"
        assert message(data) == want, path
    status, _, data = berthd.api("GET", "/images/" + "ab" * 6 + "/json")
    assert status == 404 and message(data) == "No such image: " + "ab" * 6
    status, _, data = berthd.api("GET", "/images/search?term=alpine")
    assert status == 501 and "not supported" in message(data)
    status, _, data = berthd.api("POST", "/images/create")
    assert status == 400
    status, _, data = berthd.api("POST", "/images/create?fromImage=Bad/UPPER")
    assert status == 400 and "invalid reference format" in message(data)
    status, _, data = berthd.api("POST", "/images/create?fromSrc=http://example.com/x.tar")
    assert status == 501


@need_docker
def test_import_with_changes(berthd, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tf:
        ti = tarfile.TarInfo("hello.txt")
        body = b"hi\n"
        ti.size = len(body)
        tf.addfile(ti, io.BytesIO(body))
    r = berthd.docker("import", "-c", 'CMD ["/bin/cat", "/hello.txt"]', "-c", "ENV A=b",
                      "-c", "WORKDIR /srv", "-c", "EXPOSE 8080", "-m", "made here",
                      rootfs, "imp:1", check=True)
    image_id = r.stdout.strip()
    assert image_id.startswith("sha256:")
    info = berthd.json("GET", "/images/imp:1/json")
    assert info["Id"] == image_id
    cfg = info["Config"]
    assert cfg["Cmd"] == ["/bin/cat", "/hello.txt"] and cfg["WorkingDir"] == "/srv"
    assert "A=b" in cfg["Env"] and any(e.startswith("PATH=") for e in cfg["Env"])
    assert cfg["ExposedPorts"] == {"8080/tcp": {}}
    assert berthd.json("GET", "/images/imp:1/history")[0]["Comment"] == "made here"
    # from stdin, no name
    r = berthd.docker("import", "-", input=rootfs.read_bytes(), check=True)
    assert r.stdout.strip().decode().startswith("sha256:")
    status, _, data = berthd.api("POST", "/images/create?fromSrc=-&repo=x&changes=" +
                                 quote("RUN rm -rf /"), rootfs.read_bytes())
    assert status == 400 and "not a valid change command" in message(data)
    status, _, data = berthd.api("POST", "/images/create?fromSrc=-&repo=broken",
                                 b"\x1f\x8bnot really gzip")
    assert 400 <= status < 600


@need_docker
def test_prune(berthd, tmp_path):
    berthd.load("alpine-3.20")
    berthd.load("busybox-1.38")
    berthd.docker("tag", "busybox", "bb:keep", check=True)
    rootfs = tmp_path / "r.tar"
    with tarfile.open(rootfs, "w") as tf:
        tf.addfile(tarfile.TarInfo("empty"), io.BytesIO(b""))
    dangling = berthd.docker("import", rootfs, check=True).stdout.strip()
    assert berthd.json("GET", "/images/json?filters=" + flt({"dangling": ["true"]}))[0]["Id"] \
        == dangling
    r = berthd.docker("image", "prune", "-f", check=True)
    assert dangling in r.stdout
    assert tags(berthd) == ["alpine:latest", "bb:keep", "busybox:latest"]
    res = berthd.json("POST", "/images/prune")
    assert res["ImagesDeleted"] is None and res["SpaceReclaimed"] == 0
    r = berthd.docker("image", "prune", "-a", "-f", check=True)
    assert "Total reclaimed space" in r.stdout
    assert berthd.json("GET", "/images/json") == []


@need_docker
def test_pull_push_round_trip(berthd, registry):
    t0 = int(time.time()) - 1
    berthd.load("busybox-1.38")
    ref = f"{registry.host}/test/busybox:1.38"
    berthd.docker("tag", "busybox", ref, check=True)
    r = berthd.docker("push", ref, check=True)
    assert f"The push refers to repository [{registry.host}/test/busybox]" in r.stdout
    assert "1.38: digest: sha256:" in r.stdout
    digest = r.stdout.split("digest: ")[1].split()[0]
    berthd.docker("rmi", ref, "busybox", check=True)
    assert berthd.json("GET", "/images/json") == []

    r = berthd.docker("pull", ref, check=True)
    assert f"Status: Downloaded newer image for {ref}" in r.stdout
    assert f"Digest: {digest}" in r.stdout
    info = berthd.json("GET", f"/images/{ref}/json")
    assert info["Id"] == BUSYBOX and info["RepoDigests"] == [f"{registry.host}/test/busybox@{digest}"]
    r = berthd.docker("pull", ref, check=True)
    assert "Image is up to date" in r.stdout

    # the raw stream: Docker's progress lines, then the final status
    berthd.docker("rmi", ref, check=True)
    auth = base64.urlsafe_b64encode(json.dumps({"username": "", "password": ""}).encode()).decode()
    status, headers, data = berthd.api(
        "POST", f"/images/create?fromImage={registry.host}/test/busybox&tag=1.38",
        headers={"X-Registry-Auth": auth})
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    lines = [json.loads(x) for x in data.splitlines()]
    layer = [x for x in lines if x.get("status") == "Pulling fs layer"]
    assert layer and len(layer[0]["id"]) == 12
    down = [x for x in lines if x.get("status") == "Downloading"]
    assert down and set(down[-1]["progressDetail"]) == {"current", "total"}
    assert lines[-1] == {"status": f"Status: Downloaded newer image for {ref}"}
    # by digest
    status, _, data = berthd.api(
        "POST", f"/images/create?fromImage={registry.host}/test/busybox&tag={digest}")
    assert status == 200 and b"errorDetail" not in data

    # what is not there: a plain HTTP error, as dockerd answers before streaming
    r = berthd.docker("pull", f"{registry.host}/test/nothere:1")
    assert r.returncode != 0 and "manifest unknown" in r.stderr
    status, _, data = berthd.api("POST", f"/images/create?fromImage={registry.host}/test/nothere&tag=1")
    assert status == 404, data
    status, _, data = berthd.api("POST", "/images/create?fromImage=127.0.0.1:1/x/y&tag=1")
    assert status >= 400 and "refused" in message(data)
    status, _, data = berthd.api("POST", f"/images/create?fromImage={registry.host}/x&tag=1",
                                 headers={"X-Registry-Auth": "%%%not base64"})
    assert status == 400
    status, _, data = berthd.api("POST", f"/images/{registry.host}/test/busybox/push?tag=nope")
    assert status == 404 and message(data) == f"No such image: {registry.host}/test/busybox:nope"

    evs = [(e["Action"], e["Actor"]["ID"]) for e in berthd.events(t0) if e["Type"] == "image"]
    assert ("push", ref) in evs and ("pull", ref) in evs


@need_docker
def test_image_in_use_needs_force(berthd):
    berthd.load("busybox-1.38")
    r = berthd.docker("create", "--name", "user1", "busybox", "true")
    if r.returncode != 0:
        pytest.skip(f"containers cannot be created yet: {r.stderr.strip()}")
    cid = r.stdout.strip()
    status, _, data = berthd.api("DELETE", f"/images/{BUSYBOX}")
    assert status == 409
    assert message(data) == (f"conflict: unable to delete {BUSYBOX[7:19]} (must be forced) - "
                             f"image is being used by stopped container {cid[:12]}")
    r = berthd.docker("rmi", "busybox")
    assert r.returncode != 0 and "must force" in r.stderr
    # forced: the name goes, the image stays for its container
    r = berthd.docker("rmi", "-f", "busybox", check=True)
    assert r.stdout.strip() == "Untagged: busybox:latest"
    assert [i["Id"] for i in berthd.json("GET", "/images/json")] == [BUSYBOX]
    # prune keeps what a container uses
    berthd.json("POST", "/images/prune?filters=" + flt({"dangling": ["false"]}))
    assert [i["Id"] for i in berthd.json("GET", "/images/json")] == [BUSYBOX]
    df = berthd.json("GET", "/system/df")
    c = [x for x in df["Containers"] if x["Id"] == cid][0]
    assert c["ImageID"] == BUSYBOX and c["Names"] == ["/user1"] and c["State"] == "created"
    assert df["Images"][0]["Containers"] == 1


@need_docker
def test_system_df(berthd):
    berthd.load("alpine-3.20")
    berthd.load("alpine-3.10")
    v = berthd.json("POST", "/volumes/create", {"Name": "dfvol"}, expect=201)
    with open(os.path.join(v["Mountpoint"], "f"), "wb") as f:
        f.write(b"q" * 10000)
    df = berthd.json("GET", "/system/df")
    assert set(df) >= {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"}
    assert df["BuildCache"] is None and df["Containers"] == []   # null, as dockerd
    assert df["LayersSize"] == sum(i["Size"] for i in df["Images"]) > 0 or df["LayersSize"] > 0
    assert sorted(t for i in df["Images"] for t in i["RepoTags"])[0].startswith("alpine")
    assert all(i["Containers"] == 0 for i in df["Images"])
    assert df["Volumes"][0]["Name"] == "dfvol"
    assert df["Volumes"][0]["UsageData"] == {"Size": 10000, "RefCount": 0}
    r = berthd.docker("system", "df", check=True)
    assert "Images" in r.stdout and "Local Volumes" in r.stdout
    r = berthd.docker("system", "df", "-v", check=True)
    assert "dfvol" in r.stdout
    assert berthd.json("POST", "/build/prune") == {"CachesDeleted": None, "SpaceReclaimed": 0}


def test_save_streams_and_survives_a_client_that_goes_away(berthd):
    berthd.load("alpine-3.20")
    fds = lambda: len(os.listdir(f"/proc/{berthd.proc.pid}/fd"))  # noqa: E731
    before = fds()
    for _ in range(3):
        conn = berthd.connect(timeout=30)
        conn.request("GET", "/images/get?names=alpine")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
        assert len(resp.read(10000)) == 10000
        conn.close()
    deadline = time.monotonic() + 10
    while fds() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fds() <= before, "the save pipes of aborted downloads stay open"
    status, _, data = berthd.api("GET", "/images/alpine/get")
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert "manifest.json" in tf.getnames()


DOCKER_PY_SCRIPT = r'''
import sys, docker
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
with open(sys.argv[2], "rb") as f:
    assert [i.tags for i in c.images.load(f.read())] == [["alpine:latest"]]
im = c.images.get("alpine")
im.tag("foo/bar", "t1")
assert sorted(c.images.get("foo/bar:t1").tags) == ["alpine:latest", "foo/bar:t1"]
assert im.history()[0]["Id"] == im.id
assert len(b"".join(im.save())) > 1000000
c.images.remove("foo/bar:t1")
try:
    c.images.get("nosuch")
    raise AssertionError("found nosuch")
except docker.errors.ImageNotFound as e:
    assert "No such image: nosuch:latest" in str(e)
v = c.volumes.create("pyvol", labels={"a": "b"})
assert [x.name for x in c.volumes.list(filters={"label": "a=b"})] == ["pyvol"]
v.remove()
n = c.networks.create("pynet", labels={"x": "y"})
assert c.networks.get(n.id[:12]).name == "pynet"
assert n.attrs["IPAM"]["Config"][0]["Subnet"].startswith("172.30.")
n.remove()
assert set(c.df()) >= {"Images", "Volumes", "Containers", "LayersSize"}
res = c.images.prune(filters={"dangling": False})
assert {"Deleted": im.id} in res["ImagesDeleted"]
try:
    c.volumes.create("x")
    raise AssertionError("volume x was created")
except docker.errors.APIError as e:
    assert e.status_code == 400
print("ok")
'''


def _python_with_docker_py():
    import subprocess
    import sys
    for py in (sys.executable, shutil.which("python3")):
        if py and subprocess.run([py, "-c", "import docker"], capture_output=True).returncode == 0:
            return py
    return None


def test_docker_py_client(berthd):
    import subprocess
    py = _python_with_docker_py()
    if py is None:
        pytest.skip("docker-py (the docker package) is not installed")
    r = subprocess.run([py, "-c", DOCKER_PY_SCRIPT, berthd.sock, str(IMAGES / "alpine-3.20.tar")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr + "\n" + berthd.log()
