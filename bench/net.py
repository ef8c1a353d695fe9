"""Published-port throughput against the direct path, berth against Docker.

    bench/net.py [--quick] [--time S] [--rounds N]

An iperf3 server (Debian's iperf3 and its shared libraries, copied into a
rootfs and brought in with `docker import`) runs in a container of each
engine with one port published on 127.0.0.1; the iperf3 client runs on the
host, one TCP stream, and measures in turn

  published  127.0.0.1:<host port>  berth: nftables DNAT into the bridge;
                                    Docker: docker-proxy copies (userland proxy)
  direct     <container address>:5201  over the bridge, no NAT, no proxy

both ways (host -> container, and -R: container -> host), the engines and
paths interleaved round after round; the table has the median of the rounds
and, per engine, the median of the per-round ratios published/direct.
The goal (issue 6) is published >= 0.95x direct for berth.

The engines: a berthd of our own (temporary data root, default bridge) and
a dockerd of our own (bench/image_load.py's Dockerd) on a bridge this bench
makes (10.214.0.1/24, or the first free 10.214.x.0/24), --iptables=false and
--userland-proxy=true, so Docker writes no firewall rule and its published
ports go through docker-proxy.

On a loaded machine: an iperf3 run the server refuses (busy with a
lingering test) or that fails is tried again; a daemon slow to start gets a
second, longer try; an engine that still cannot serve, or a run that keeps
failing, leaves its figures out ('-', the reason under the table) and the
table is written with the rest. Names (bridge, cgroups) carry this run's
PID, so two runs on one machine do not collide.

Network safety: traffic only to 127.0.0.1 and to the two containers'
addresses. Everything started (daemons, containers, the Docker bridge, the
berth bridge and nft tables, /run entries, cgroups, ip_forward) is removed
or put back at the end, also on failure or SIGINT/SIGTERM."""
import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path[:0] = [str(HERE)]
from image_load import Dockerd, _read_ip_forward, _IP_FORWARD  # noqa: E402
from engines import (BerthEngine, remove_cgroup, all_pids, cmdline,  # noqa: E402
                     kill_pids, unmount_under)
from procutil import alive  # noqa: E402
from retry import second_try  # noqa: E402

IMAGE = "bench-iperf3:latest"
PORT = 5201
BERTH_CGROUP = f"/berth-bench-net-{os.getpid()}"
DOCKER_CGROUP = f"/berth-bench-net-{os.getpid()}-docker"
DOCKER_BRIDGE = f"bbn{os.getpid()}"[:15]
RUN_TRIES = 4   # an iperf3 run the server refuses or that fails: tried again
PATHS = ["published", "direct"]
DIRS = [("->", "host -> container", []), ("<-", "container -> host (-R)", ["-R"])]


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


def sh(*argv, check=False, env=None, timeout=120):
    r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}...: {(r.stderr or r.stdout).strip()[-400:]}")
    return r


# -- the iperf3 image ---------------------------------------------------------

def iperf3_rootfs_tar(path):
    """A tar of a rootfs holding the host's iperf3, the libraries ldd names,
    the glibc loader and a /tmp (iperf3 makes its buffer file there)."""
    binary = shutil.which("iperf3")
    if not binary:
        raise RuntimeError("iperf3 is not installed (apt-get install iperf3)")
    binary = os.path.realpath(binary)
    files = [binary]
    for line in sh("ldd", binary, check=True).stdout.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) > parts.index("=>") + 1 and parts[parts.index("=>") + 1].startswith("/"):
            files.append(parts[parts.index("=>") + 1])
        elif parts and parts[0].startswith("/"):
            files.append(parts[0])     # the loader, /lib64/ld-linux-x86-64.so.2
    with tarfile.open(path, "w") as tf:
        dirs = set()
        for f in files:
            d = os.path.dirname(f)
            while d not in ("/", "") and d not in dirs:
                dirs.add(d)
                d = os.path.dirname(d)
        for d in sorted(dirs) + ["/tmp", "/etc"]:
            ti = tarfile.TarInfo(d.lstrip("/"))
            ti.type, ti.mode = tarfile.DIRTYPE, 0o1777 if d == "/tmp" else 0o755
            tf.addfile(ti)
        for f in files:
            real = os.path.realpath(f)     # the file itself, under the name ldd gave
            ti = tf.gettarinfo(real, arcname=f.lstrip("/"))
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            with open(real, "rb") as fh:
                tf.addfile(ti, fh)
        for name, text in (("etc/passwd", "root:x:0:0:root:/:/usr/bin/iperf3\n"),
                           ("etc/group", "root:x:0:\n")):
            data = text.encode()
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
    return binary


# -- the engines --------------------------------------------------------------

class Engine:
    name = "?"
    env = None

    def docker(self, *args, check=False, timeout=120):
        return sh("docker", *args, check=check, env=self.env, timeout=timeout)

    def serve(self, tar, host_port):
        """Import the image, start the server, return its address."""
        self.docker("import", str(tar), IMAGE, check=True, timeout=300)
        self.docker("run", "-d", "--name", "bench-iperf3", "-p", f"127.0.0.1:{host_port}:{PORT}",
                    IMAGE, "/usr/bin/iperf3", "-s", "-p", str(PORT), check=True)
        info = json.loads(self.docker("inspect", "bench-iperf3", check=True).stdout)[0]
        ns = info["NetworkSettings"]
        ip = ns.get("IPAddress") or next(iter(ns["Networks"].values()))["IPAddress"]
        if not ip:
            raise RuntimeError(f"{self.name}: the container has no address")
        return ip

    def remove_containers(self):
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, timeout=120)


class Berth(Engine):
    """bench/engine.py's berthd (in our cgroup parent), driven as this bench's
    Engine; stop() also checks that its bridge and nft tables are gone."""
    name = "berth"

    def __init__(self, work):
        self.d = BerthEngine(work, cgroup_parent=BERTH_CGROUP)
        self.env = self.d.env
        data_root = self.d.work / "lib"   # berthd's --data-root
        self.tag = hashlib.sha256(os.path.abspath(str(data_root)).encode()).hexdigest()[:6]
        self.bridge = f"berth0-{self.tag}"
        self.table = f"berth_{self.tag}"

    def start(self, timeout=60):
        self.d.start(timeout=timeout)

    def version(self):
        return self.docker("version", "--format", "{{.Server.Version}}").stdout.strip()

    def stop(self):
        if self.d.proc is not None and self.d.proc.poll() is None:
            self.remove_containers()
        self.d.stop()
        # berthd is gone: every berth-shim under its exec root is left over
        kill_pids(self.d.shim_pids())
        # what berthd's close() removes when no container is left: check it did
        if self.bridge in links():
            sh("ip", "link", "del", self.bridge)
        for fam in ("ip", "bridge"):
            if sh("nft", "list", "table", fam, self.table).returncode == 0:
                sh("nft", "delete", "table", fam, self.table)


class Docker(Engine):
    name = "docker"

    def __init__(self, work, bridge, cidr):
        self.bridge, self.cidr = bridge, cidr
        self.made_bridge = False
        self.d = Dockerd(work, extra_args=[
            # the last of a repeated flag wins: these override Dockerd's
            # --bridge=none and --userland-proxy=false; --iptables=false and
            # --ip-forward=false stay
            f"--bridge={bridge}", "--userland-proxy=true", "--cgroup-parent", DOCKER_CGROUP])
        self.env = dict(self.d.env, DOCKER_HOST=f"unix://{self.d.sock}")
        for k in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            self.env.pop(k, None)

    def start(self, timeout=60):
        # dockerd uses a bridge given with -b as it finds it (it only makes
        # docker0 itself), so the bench makes it and removes it again
        if not self.made_bridge:
            sh("ip", "link", "add", self.bridge, "type", "bridge", check=True)
        self.made_bridge = True
        sh("ip", "addr", "add", self.cidr, "dev", self.bridge, check=True)
        sh("ip", "link", "set", self.bridge, "up", check=True)
        self.d.start(timeout=timeout)

    def version(self):
        return self.d.versions().get("server") or "?"

    def proxies(self):
        return [pid for pid in all_pids()
                if cmdline(pid)[:1] and cmdline(pid)[0].endswith("docker-proxy")
                and alive(pid) and str(self.host_port) in cmdline(pid)]

    def stop(self):
        try:
            if self.d.proc is not None and self.d.proc.poll() is None:
                self.remove_containers()
        finally:
            self.d.stop()     # dockerd, its containerd, mounts under work, /run dirs, ip_forward
            if self.made_bridge and self.bridge in links():
                sh("ip", "link", "del", self.bridge)
            self.made_bridge = False


def links():
    out = sh("ip", "-o", "link", "show").stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def free_cidr():
    routes = sh("ip", "-4", "route", "show", "table", "all").stdout
    for k in range(256):
        net = f"10.214.{k}."
        if net not in routes:
            return f"10.214.{k}.1/24"
    raise RuntimeError("no free /24 in 10.214.0.0/16 for Docker's bridge")


# -- measuring ----------------------------------------------------------------

def iperf3_once(host, port, seconds, extra, omit=1):
    """Gbit/s the receiver saw, one TCP stream."""
    r = sh("iperf3", "-c", host, "-p", str(port), "-t", str(seconds), "-O", str(omit), "-J",
           "-P", "1", "--connect-timeout", "3000", *extra, timeout=seconds + omit + 30)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise RuntimeError(f"iperf3 to {host}:{port}: {(r.stderr or r.stdout).strip()[-300:]}")
    if out.get("error"):
        raise RuntimeError(f"iperf3 to {host}:{port}: {out['error']}")
    return out["end"]["sum_received"]["bits_per_second"] / 1e9


def iperf3(host, port, seconds, extra, omit=1, tries=RUN_TRIES):
    """iperf3_once, again after a refusal or a failure: a server still busy
    with the last test ("the server is busy running a test"), or a run the
    loaded host cut short. Raises the last error."""
    for i in range(tries):
        try:
            return iperf3_once(host, port, seconds, extra, omit)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            if i == tries - 1:
                raise
            print(f"  iperf3 to {host}:{port}: {str(e)[-200:]}; again", flush=True)
            time.sleep(1 + i)


def wait_serving(host, port, timeout=15):
    """A 1 s run succeeds (the server listens and the path works)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            return iperf3_once(host, port, 1, [], omit=0)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            last = e
            time.sleep(0.3)
    raise RuntimeError(f"no iperf3 server at {host}:{port}: {last}")


def measure(targets, seconds, rounds, failures):
    """targets: {engine: {path: (host, port)}} -> {(engine, path, dir): [Gbit/s]};
    a run that fails every try is left out and noted in failures."""
    res = {}
    for rnd in range(rounds):
        for eng, paths in targets.items():
            # which path goes first alternates, so a drift in the host's load
            # does not favour one of them
            for path in (PATHS if rnd % 2 == 0 else PATHS[::-1]):
                host, port = paths[path]
                for d, _, extra in DIRS:
                    try:
                        v = iperf3(host, port, seconds, extra)
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        failures.append(f"{eng} {path} {d} round {rnd + 1}: {str(e)[-200:]}")
                        continue
                    res.setdefault((eng, path, d), []).append(v)
                    print(f"  round {rnd + 1}/{rounds} {eng:6} {path:9} {d} {v:7.2f} Gbit/s",
                          flush=True)
    return res


def _cell(v, fmt="15.2f"):
    return format(v, fmt) if v is not None else f"{'-':>15}"


def report(res, engines, args, info):
    med = {k: statistics.median(v) for k, v in res.items() if v}
    lines = [f"published port vs direct, iperf3 {info['iperf3']}, 1 TCP stream, "
             f"{args.time} s x {args.rounds} rounds (median), "
             f"{time.strftime('%Y-%m-%d %H:%M')}, kernel {platform.release()}, "
             f"{os.cpu_count()} CPUs",
             f"berth: {info.get('berth', '?')} (nftables DNAT from 127.0.0.1, no proxy); "
             f"docker: {info.get('docker', '?')} (docker-proxy, --iptables=false)", ""]
    head = f"{'path':34}" + "".join(f"{e + ' Gbit/s':>15}" for e in engines)
    lines += [head, "-" * len(head)]
    for d, label, _ in DIRS:
        for path in PATHS:
            lines.append(f"{path + ' ' + label:34}" +
                         "".join(_cell(med.get((e, path, d))) for e in engines))
    lines.append("-" * len(head))
    ok = True
    for d, label, _ in DIRS:
        row = f"{'published/direct ' + d:34}"
        for e in engines:
            # per round (the two paths measured a few seconds apart), then
            # the median: steadier than a ratio of medians on a busy host
            pairs = [p / q for p, q in zip(res.get((e, "published", d), []),
                                           res.get((e, "direct", d), [])) if q]
            r = statistics.median(pairs) if pairs else None
            row += _cell(r)
            if e == "berth" and (r is None or r < 0.95):
                ok = False
        lines.append(row)
    lines += ["", f"goal: berth published/direct >= 0.95 both ways: {'met' if ok else 'NOT met'}",
              "", "every run (Gbit/s):"]
    for (e, path, d), v in sorted(res.items()):
        lines.append(f"  {e:6} {path:9} {d}  " + " ".join(f"{x:.2f}" for x in v))
    missing = [f"{n}: not measured: {why}" for n, why in info.get("missing", {}).items()]
    missing += info.get("failures", [])
    if missing:
        lines += ["", "missing figures:"] + [f"  {x}" for x in missing]
    return lines, ok


def serving(e, tar):
    """Start engine e (a second try after a slow start), run the iperf3
    server in it, wait until both paths answer -> {path: (host, port)}."""
    second_try(f"bench/net.py: {e.name}", e.start, e.stop)
    hp = free_port()
    e.host_port = hp
    ip = e.serve(tar, hp)
    target = {"published": ("127.0.0.1", hp), "direct": (ip, PORT)}
    for path in PATHS:
        wait_serving(*target[path], timeout=60)
    if e.name == "docker" and not e.proxies():
        raise RuntimeError("no docker-proxy for the published port: not the path meant")
    print(f"{e.name}: container {ip}, published 127.0.0.1:{hp}", flush=True)
    return target


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 s runs, 1 round")
    p.add_argument("--time", type=int, default=None, help="seconds per iperf3 run (5)")
    p.add_argument("--rounds", type=int, default=None, help="rounds, median kept (5)")
    p.add_argument("--engines", default="berth,docker")
    args = p.parse_args(argv)
    args.time = args.time or (2 if args.quick else 5)
    args.rounds = args.rounds or (1 if args.quick else 5)
    names = [n for n in args.engines.split(",") if n]
    if os.geteuid() != 0:
        print("bench/net.py needs root (namespaces, bridges, nftables)", file=sys.stderr)
        return 2
    if not shutil.which("iperf3"):
        print("iperf3 is not installed: apt-get install iperf3", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    work = Path(tempfile.mkdtemp(prefix="berth-bench-net-"))
    ip_forward = _read_ip_forward()
    cgroups_before = {c: any(os.path.isdir(os.path.join("/sys/fs/cgroup", h, c.strip("/")))
                             for h in os.listdir("/sys/fs/cgroup"))
                      for c in (BERTH_CGROUP, DOCKER_CGROUP)}
    engines = []
    info = {"iperf3": sh("iperf3", "--version").stdout.split("\n")[0].split()[1]}
    rc = 1
    try:
        tar = work / "iperf3-rootfs.tar"
        iperf3_rootfs_tar(tar)
        targets, info["missing"], info["failures"] = {}, {}, []
        for n in names:
            if n == "berth":
                e = Berth(work / "berth")
            elif n == "docker":
                e = Docker(work / "docker", DOCKER_BRIDGE, free_cidr())
            else:
                raise RuntimeError(f"unknown engine {n!r}")
            engines.append(e)
            try:
                targets[n] = serving(e, tar)
                info[n] = e.version()
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
                # one peer missing is one column of '-', not the end of the bench
                info["missing"][n] = str(err)[:300]
                print(f"bench/net.py: {n} not measured: {err}", file=sys.stderr, flush=True)
        res = measure(targets, args.time, args.rounds, info["failures"]) if targets else {}
        lines, ok = report(res, names, args, info)
        print("\n".join(lines))
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"net-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        path.write_text("\n".join(lines) + "\n")
        print(f"results: {path}")
        # 3: the table is written, some figures are missing (bench/all.py)
        rc = 0 if targets and not info["missing"] and not info["failures"] else 3 if targets else 1
    except (RuntimeError, Interrupted, subprocess.TimeoutExpired) as e:
        print(f"bench/net.py: {e}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for e in reversed(engines):
            try:
                e.stop()
            except Exception as ex:  # noqa: BLE001 - clean up the others anyway
                print(f"cleanup of {e.name}: {ex}", file=sys.stderr)
        for cg, existed in cgroups_before.items():
            if not existed:
                try:
                    remove_cgroup(cg)
                except Exception as ex:  # noqa: BLE001
                    print(f"cleanup of cgroup {cg}: {ex}", file=sys.stderr)
        # berthd puts ip_forward back itself when no other berth daemon holds
        # it (their marks are under /run/berth-net): only then is it ours to fix
        if (ip_forward is not None and _read_ip_forward() != ip_forward
                and not os.path.exists("/run/berth-net")):
            with open(_IP_FORWARD, "w") as f:
                f.write(ip_forward)
        unmount_under(str(work))
        shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
