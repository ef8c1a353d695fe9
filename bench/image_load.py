"""Image load time of berth against `docker load`, measured in the same run.

Two scenarios, each loading a docker-archive (`docker save` format):
  alpine-3.20     the alpine fixture from ../shared/fixtures/images (~8 MB, 1 layer)
  generated-200mb a generated 8-layer image of ~200 MB, part incompressible,
                  part compressible, from a fixed seed

berth loads into a fresh temporary Store every iteration, through a tiny
script started with `python -IS` so the interpreter's start-up is counted as
a user of `berth load` would pay it. docker loads with `docker load -i` into
a dockerd the bench starts with every directory under a temporary one (no
bridge, no iptables), and the image is removed with `docker rmi` (untimed)
between iterations. Prints a table (mean ms per engine and the ratio
berth/docker) and writes bench/results/image_load-<time>.json. See
bench/README.md.
"""
import argparse
import hashlib
import io
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
PYTHON = REPO / ".venv" / "bin" / "python"
sys.path[:0] = [str(HERE), str(REPO / "tests")]
from shared_dir import FIXTURES  # noqa: E402
from stats import summary  # noqa: E402
from procutil import stop  # noqa: E402

ALPINE = FIXTURES / "images" / "alpine-3.20.tar"
GENERATED_TAG = "berth-bench/layers:200mb"
SCENARIOS = ["alpine-3.20", "generated-200mb"]
ENGINES = ["docker", "berth"]

# run by PYTHON -IS: no site, no cwd on sys.path, so the package is named here
LOADER = """\
import sys
sys.path.insert(0, {src!r})
from berth.engine.images import archive
from berth.engine.images.store import Store
with open(sys.argv[2], "rb") as f:
    ids = archive.load(Store(sys.argv[1]), f)
for i in ids:
    print("Loaded image ID:", i)
"""


# the generated image

_WORDS = (b"alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu "
          b"xi omicron pi rho sigma tau upsilon phi chi psi omega container layer "
          b"image config digest manifest rootfs overlay snapshot mount").split()


def _tarinfo(name, size=0, kind=tarfile.REGTYPE, mode=0o644, link=""):
    ti = tarfile.TarInfo(name)
    ti.size, ti.type, ti.mode, ti.linkname = size, kind, mode, link
    ti.mtime = 1700000000  # fixed, so the same seed gives the same bytes
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def _add(tf, name, data, mode=0o644):
    tf.addfile(_tarinfo(name, len(data), mode=mode), io.BytesIO(data))


def _text(rng, size):
    """Log- or source-like bytes: compress ~5-10x, unlike random bytes."""
    lines = [b" ".join(rng.choices(_WORDS, k=rng.randint(4, 14))) + b"\n"
             for _ in range(48)]
    out = b"".join(rng.choices(lines, k=size // 40 + 1))
    return out[:size]


def layer_tar(seed, index, size):
    """One layer as uncompressed tar bytes of about `size` bytes: 60% random
    binary-like files (256 KB-4 MB), 40% text files (1-64 KB) in a few
    directories. Layers after the first also delete a file of the one below
    with a whiteout, so an unpacking loader has real work to do."""
    rng = random.Random(f"{seed}:{index}")
    buf = io.BytesIO()
    top = f"opt/layer{index}"
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("opt", top, f"{top}/bin", f"{top}/share"):
            tf.addfile(_tarinfo(d + "/", kind=tarfile.DIRTYPE, mode=0o755))
        binary, text = size * 6 // 10, size * 4 // 10
        n = 0
        while binary > 0:
            chunk = min(binary, rng.randint(256 << 10, 4 << 20))
            _add(tf, f"{top}/bin/blob{n:03d}.bin", rng.randbytes(chunk), 0o755)
            binary -= chunk
            n += 1
        n = 0
        while text > 0:
            chunk = min(text, rng.randint(1 << 10, 64 << 10))
            _add(tf, f"{top}/share/doc{n:04d}.txt", _text(rng, chunk))
            text -= chunk
            n += 1
        tf.addfile(_tarinfo(f"{top}/current", kind=tarfile.SYMTYPE, mode=0o777,
                            link="bin/blob000.bin"))
        if index > 0:
            tf.addfile(_tarinfo(f"opt/layer{index - 1}/share/.wh.doc0000.txt"))
    return buf.getvalue()


def make_image(path, *, layers=8, size=200 << 20, seed=1, tag=GENERATED_TAG):
    """Write a docker-archive of `layers` layers totalling about `size` bytes
    to path, in the layout `docker save` of docker 20.10 writes: config
    <id>.json, <v1 id>/{layer.tar,json,VERSION}, manifest.json and
    repositories. The same arguments give the same bytes. Returns what a
    loader must end up with: {"id", "diff_ids", "tag", "bytes", "files"}."""
    repo, _, tagname = tag.rpartition(":")
    diff_ids, v1_ids, blobs, files = [], [], [], 0
    for i in range(layers):
        data = layer_tar(seed, i, size // layers)
        diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
        blobs.append(data)
    config = {
        "architecture": "amd64", "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2026-01-01T00:00:00Z",
                     "created_by": f"bench layer {i} (seed {seed})"} for i in range(layers)],
    }
    cfg = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    image_id = "sha256:" + hashlib.sha256(cfg).hexdigest()
    parent = ""
    for i, diff_id in enumerate(diff_ids):
        last = i == layers - 1
        v1 = hashlib.sha256(f"{parent}\n{diff_id}\n{image_id if last else ''}".encode()).hexdigest()
        v1_ids.append(v1)
        parent = v1
    with open(path, "wb") as out, tarfile.open(fileobj=out, mode="w",
                                               format=tarfile.PAX_FORMAT) as tf:
        for i, (v1, data) in enumerate(zip(v1_ids, blobs)):
            tf.addfile(_tarinfo(v1 + "/", kind=tarfile.DIRTYPE, mode=0o755))
            _add(tf, f"{v1}/VERSION", b"1.0")
            meta = {"id": v1, "created": "2026-01-01T00:00:00Z", "os": "linux"}
            if i:
                meta["parent"] = v1_ids[i - 1]
            _add(tf, f"{v1}/json", json.dumps(meta).encode())
            _add(tf, f"{v1}/layer.tar", data)
            files += sum(1 for m in tarfile.open(fileobj=io.BytesIO(data)) if m.isreg())
        _add(tf, image_id[7:] + ".json", cfg)
        manifest = [{"Config": image_id[7:] + ".json", "RepoTags": [tag],
                     "Layers": [f"{v}/layer.tar" for v in v1_ids]}]
        _add(tf, "manifest.json", json.dumps(manifest).encode())
        _add(tf, "repositories", json.dumps({repo: {tagname: v1_ids[-1]}}).encode())
    return {"id": image_id, "diff_ids": diff_ids, "tag": tag,
            "bytes": os.path.getsize(path), "files": files}


def archive_id(path):
    """The image id (config digest) the first manifest entry names."""
    with tarfile.open(path) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        cfg = tf.extractfile(manifest[0]["Config"]).read()
        return "sha256:" + hashlib.sha256(cfg).hexdigest()


# numbers

def ratios(results):
    return {s: r["berth"]["mean_ms"] / r["docker"]["mean_ms"]
            for s, r in results.items() if "berth" in r and "docker" in r}


def table(results, scenarios=SCENARIOS):
    """The printed table: mean ± stddev per engine and berth/docker, with
    "skipped" where an engine was not timed."""
    head = f"{'scenario':<18}" + "".join(f"{e + ' ms':>16}" for e in ENGINES) + f"{'berth/docker':>14}"
    lines = [head, "-" * len(head)]
    rs = ratios(results)
    for scenario in scenarios:
        row = f"{scenario:<18}"
        for engine in ENGINES:
            s = results.get(scenario, {}).get(engine)
            row += f"{s['mean_ms']:>9.1f} ±{s['stddev_ms']:>5.1f}" if s else f"{'skipped':>16}"
        row += f"{rs[scenario]:>14.2f}" if scenario in rs else f"{'-':>14}"
        lines.append(row)
    return "\n".join(lines)


# docker

_IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def _read_ip_forward():
    try:
        with open(_IP_FORWARD) as f:
            return f.read().strip()
    except OSError:
        return None


class Dockerd:
    """A dockerd of our own: data, exec root, socket, pid file, config and
    trust key under `work`; no bridge, no iptables, so it touches no network.
    With netns=True it runs in a network namespace of its own with only
    loopback: its default bridge collides with nothing and no pull can leave
    the machine (the namespace goes away with its last process)."""

    def __init__(self, work, extra_args=(), netns=False):
        self.work = Path(work)
        self.extra_args = list(extra_args)  # e.g. --add-runtime for drop-in tests
        self.netns = netns
        self.sock = self.work / "docker.sock"
        self.log = self.work / "dockerd.log"
        self.proc = None
        self.env = dict(os.environ, DOCKER_CONFIG=str(self.work / "cli"))
        self.cli = shutil.which("docker") or "docker"

    def start(self, timeout=60):
        """Start and wait until it answers; raises RuntimeError saying why not."""
        if not shutil.which("dockerd"):
            raise RuntimeError("dockerd is not installed")
        for d in ("data", "exec", "cli"):
            (self.work / d).mkdir(parents=True, exist_ok=True)
        # without deprecated-key-path dockerd 20.10 writes /etc/docker/key.json
        conf = self.work / "daemon.json"
        conf.write_text(json.dumps({"deprecated-key-path": str(self.work / "key.json")}))
        argv = ["dockerd", "--config-file", str(conf),
                "--data-root", str(self.work / "data"),
                "--exec-root", str(self.work / "exec"),
                "--pidfile", str(self.work / "docker.pid"),
                "-H", f"unix://{self.sock}",
                "--iptables=false", "--ip6tables=false",
                "--ip-masq=false", "--userland-proxy=false",
                # dockerd turns the host's IP forwarding on unless told not to
                "--ip-forward=false", *self.extra_args]
        if self.netns:
            argv = [*NETNS_WRAP, *argv]
        else:
            argv.insert(1, "--bridge=none")
        self.ip_forward = _read_ip_forward()
        # dockerd makes its plugin dir, and its containerd its fifos and shim
        # sockets, under /run whatever --exec-root says
        self.run_dirs = [d for d in ("/run/docker/plugins", "/run/docker", "/run/containerd")
                         if not os.path.exists(d)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with status {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            if self.sock.exists() and self.docker("version").returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"dockerd did not answer within {timeout}s: {self.log_tail()}")

    def log_tail(self, n=3):
        try:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "(no log)"
        errs = [ln for ln in lines if "level=error" in ln or "level=fatal" in ln or
                "failed" in ln.lower()]
        return " | ".join((errs or lines)[-n:])[-600:] or "(empty log)"

    def docker(self, *args):
        return subprocess.run([self.cli, "-H", f"unix://{self.sock}", *args],
                              stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, env=self.env)

    def versions(self):
        r = self.docker("version", "--format", "{{.Client.Version}} {{.Server.Version}}")
        client, _, server = r.stdout.strip().partition(" ")
        return {"client": client or None, "server": server or None, "cli": self.cli}

    def stop(self):
        """Stop dockerd and its containerd, undo any mount left under work,
        and put the host's IP forwarding back as it was."""
        if self.proc is None:
            return
        if getattr(self, "ip_forward", None) is not None and _read_ip_forward() != self.ip_forward:
            with open(_IP_FORWARD, "w") as f:
                f.write(self.ip_forward)
        ctr_pid = None
        try:
            ctr_pid = int((self.work / "exec" / "containerd" / "containerd.pid").read_text())
        except (OSError, ValueError):
            pass
        stop(self.proc, 20)
        if ctr_pid is not None:
            _kill_pid(ctr_pid, "containerd")
        _unmount_under(self.work)
        for d in getattr(self, "run_dirs", ()):  # ours: they were not there at start
            if d == "/run/containerd":
                shutil.rmtree(d, ignore_errors=True)  # its daemon and shims are gone now
                continue
            try:
                os.rmdir(d)
            except OSError:
                pass
        self.proc = None


# a fresh network namespace with loopback up, then exec: the pid stays the daemon's
NETNS_WRAP = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']


def _kill_pid(pid, comm):
    """Kill pid if it still runs `comm` (dockerd stops it itself when it can)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() != comm:
                return
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass


def _unmount_under(path):
    prefix = str(Path(path).resolve())
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def install_docker():
    """Debian's docker.io when dockerd is missing; returns an error or None."""
    if shutil.which("dockerd"):
        return None
    if not shutil.which("apt-get"):
        return "dockerd is not installed and there is no apt-get to install docker.io"
    print("dockerd not found: apt-get install -y docker.io", flush=True)
    r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "docker.io"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if r.returncode != 0 or not shutil.which("dockerd"):
        tail = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
        return f"apt-get install docker.io failed: {tail[:300]}"
    return None


# timing

def timed(argv, env=None):
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
        raise RuntimeError(last[:300])
    return elapsed, r.stdout


class Berth:
    def __init__(self, work):
        self.work = Path(work)
        self.loader = self.work / "berth_load.py"
        self.loader.write_text(LOADER.format(src=str(REPO / "src")))
        self.n = 0

    def load(self, archive, expect_id):
        """Seconds for one load into a fresh Store; the store is removed after."""
        self.n += 1
        root = self.work / f"store-{self.n}"
        try:
            elapsed, out = timed([str(PYTHON), "-IS", str(self.loader), str(root), str(archive)])
            if expect_id not in out:
                raise RuntimeError(f"berth loaded {out.strip()!r}, expected {expect_id}")
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return elapsed


def docker_load(dockerd, archive, expect_id):
    argv = [dockerd.cli, "-H", f"unix://{dockerd.sock}", "load", "-i", str(archive)]
    try:
        elapsed, _ = timed(argv, dockerd.env)
        r = dockerd.docker("image", "inspect", "--format", "{{.Id}}", expect_id)
        if r.stdout.strip() != expect_id:
            raise RuntimeError(f"docker has no image {expect_id} after load: {r.stderr.strip()}")
    finally:
        dockerd.docker("rmi", "-f", expect_id)
    return elapsed


def run(scenarios, berth, dockerd, runs, warmup):
    """{scenario: {engine: [seconds]}} and {"engine scenario": error}. The
    engines alternate within each iteration so both see the same load."""
    times, errors = {}, {}
    for scenario, (archive, expect_id) in scenarios.items():
        engines = {"berth": lambda: berth.load(archive, expect_id)}
        if dockerd is not None:
            engines = {"docker": lambda: docker_load(dockerd, archive, expect_id), **engines}
        for i in range(warmup + runs):
            for engine, load in engines.items():
                key = f"{engine} {scenario}"
                if key in errors:
                    continue
                try:
                    t = load()
                except RuntimeError as e:
                    errors[key] = str(e)
                    continue
                if i >= warmup:
                    times.setdefault(scenario, {}).setdefault(engine, []).append(t)
    return times, errors


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-docker", action="store_true", help="time berth only")
    p.add_argument("--size-mb", type=int, default=200, help="size of the generated image")
    p.add_argument("--layers", type=int, default=8, help="layers of the generated image")
    p.add_argument("--no-save", action="store_true", help="do not write JSON")
    args = p.parse_args(argv)

    # bench/all.py's time limit sends SIGTERM: leave through the clean-up below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="bil-"))  # short: unix socket paths are limited
    dockerd, note, docker_info = None, None, {}
    image = {}
    try:
        t0 = time.perf_counter()
        generated = work / "generated.tar"
        image = make_image(generated, layers=args.layers, size=args.size_mb << 20)
        print(f"generated {image['bytes'] / 1e6:.0f} MB, {args.layers} layers, "
              f"{image['files']} files in {time.perf_counter() - t0:.1f}s", flush=True)
        scenarios = {"alpine-3.20": (ALPINE, archive_id(ALPINE)),
                     f"generated-{args.size_mb}mb": (generated, image["id"])}
        if args.no_docker:
            note = "docker not timed: --no-docker"
        else:
            note = install_docker()
            if note is None:
                dockerd = Dockerd(work / "d")
                try:
                    from retry import second_try
                    second_try("image_load.py: dockerd", lambda t: dockerd.start(timeout=t),
                               dockerd.stop)
                    docker_info = dockerd.versions()
                except (RuntimeError, OSError) as e:
                    note = f"docker not timed: {e}"
                    dockerd.stop()
                    dockerd = None
            else:
                note = f"docker not timed: {note}"
        if note:
            print(note, flush=True)
        times, errors = run(scenarios, Berth(work), dockerd, args.runs, args.warmup)
    finally:
        if dockerd is not None:
            dockerd.stop()
        shutil.rmtree(work, ignore_errors=True)

    results = {s: {e: summary(t) for e, t in by.items()} for s, by in times.items()}
    print(f"image load, fresh store each time, {args.runs} runs after {args.warmup} warm-up")
    print(table(results, list(scenarios)))
    for key, err in sorted(errors.items()):
        print(f"{key} failed: {err}")
    if note:
        print(note)

    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        doc = {
            "benchmark": "image_load",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runs": args.runs, "warmup": args.warmup,
            "host": {"kernel": platform.release(), "machine": platform.machine(),
                     "cpus": os.cpu_count()},
            "docker": docker_info or None, "note": note,
            "berth": {"python": str(PYTHON), "flags": "-IS"},
            "images": {"alpine-3.20": {"path": str(ALPINE), "bytes": ALPINE.stat().st_size},
                       f"generated-{args.size_mb}mb": {k: image.get(k) for k in ("id", "bytes", "files")}
                       | {"layers": args.layers}},
            "results": results,
            "ratio_berth_over_docker": ratios(results),
            "errors": errors,
        }
        path = RESULTS / f"image_load-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results: {path.relative_to(REPO)}")
    return 3 if errors else 0   # 3: table written, figures missing (bench/all.py)


if __name__ == "__main__":
    sys.exit(main())
