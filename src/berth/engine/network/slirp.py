"""The rootless network driver: one slirp4netns per container.

slirp4netns runs a user-mode TCP/IP stack (libslirp) on the host side of a
tap device it makes in the container's namespace, so nothing on the host
needs privileges: no bridge, no veth, no nftables. The container sees
10.0.2.100/24, gateway 10.0.2.2 and a DNS forwarder on 10.0.2.3; published
ports are host sockets that slirp4netns itself listens on (add_hostfwd on
its API socket), so a host port below net.ipv4.ip_unprivileged_port_start
needs the privileges to bind it.

Each slirp4netns runs in a session of its own and outlives berthd. Records,
under <data-root>/network/slirp/:
  <container id>.json  the slirp4netns pid (null until it is known), its
                       API socket and the published ports; written BEFORE
                       the process starts, so a crash leaves nothing that
                       restore() or teardown() cannot find
  <container id>.sock  the API socket (slirp4netns makes it)
  <container id>.log   slirp4netns's stderr, the only place it says why
                       it failed"""
import errno
import fcntl
import json
import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import threading

from berth.errors import BerthError, ConfigError, Conflict
from berth.oci import jsonio
from berth.engine.network import hosts, ipam, ports, settings
from berth.sys import libc

SLIRP = "slirp4netns"
IP = "10.0.2.100"
PREFIXLEN = 24
GATEWAY = "10.0.2.2"
DNS = "10.0.2.3"
MAC = ipam.mac_for(IP)
MTU = 65520     # the largest slirp4netns takes minus one: fewer, bigger packets to copy
TAP = "tap0"
READY_TIMEOUT = 15
STOP_TIMEOUT = 3
UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def lo_up(pid):
    """Bring up lo in /proc/<pid>/ns/net. setns changes only the calling
    thread, and berthd has many: a thread of its own enters the namespace,
    makes a socket there (a socket keeps the namespace it was made in) and
    ends, so no thread of the daemon is ever left in a container's. (It
    could not come back: a rootless daemon may not setns into the host's
    network namespace, which its own user namespace does not own.)"""
    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise BerthError(f"network namespace of pid {pid}", errno=e.errno) from None
    out = {}

    def enter():
        try:
            libc.setns(fd, libc.CLONE_NEWNET, f"network namespace of pid {pid}")
            out["sock"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["error"] = e

    t = threading.Thread(target=enter, name=f"lo-up-{pid}")
    t.start()
    t.join()
    os.close(fd)
    if "error" in out:
        raise out["error"]
    with out["sock"] as s:
        ifr = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))
        flags = struct.unpack("16sH", ifr[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _is_slirp(pid, sock):
    """pid is a slirp4netns serving this API socket (and not some process
    that got a recycled pid)."""
    argv = _cmdline(pid)
    return (bool(argv) and os.path.basename(argv[0]) == SLIRP.encode()
            and f"--api-socket={os.path.basename(sock)}".encode() in argv)


def _unprivileged_start():
    try:
        with open(UNPRIVILEGED_PORT_START) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024


def _refusal(ip, port, proto, detail=""):
    """Why the host port cannot be had: slirp4netns's own error says only
    "slirp_add_hostfwd failed", so ask the kernel the same question."""
    where = f"cannot publish {ip}:{port}/{proto}"
    err = ports.bind_errno(ip, port, proto)
    if err == errno.EACCES:
        start = _unprivileged_start()
        return BerthError(f"{where}: ports below {start} need privileges a rootless "
                          "daemon does not have",
                          hint=f"publish on a port >= {start}, or lower "
                               f"net.ipv4.ip_unprivileged_port_start to {port} or less")
    if err == errno.EADDRINUSE:
        return Conflict(f"{where}: the port is already in use on the host")
    if err is not None:
        return BerthError(f"{where}", errno=err)
    return BerthError(f"{where}: {detail or 'slirp4netns refused it'}")


class SlirpDriver:
    def __init__(self, engine):
        self.e = engine
        self.dir = os.path.join(engine.paths.root, "network", "slirp")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.lock = threading.RLock()
        # 10.0.2.2 reaching the host's 127.0.0.1 is opt-in (berthd
        # --rootless-host-loopback): loopback services trust their callers
        self.host_loopback = bool(getattr(engine.config, "host_loopback", False))

    # -- records ----------------------------------------------------------

    def _path(self, cid, ext):
        return os.path.join(self.dir, f"{cid}.{ext}")

    def _records(self):
        out = {}
        for n in sorted(os.listdir(self.dir)):
            if n.endswith(".json"):
                rec = self._read(n[:-5])
                if rec is not None:
                    out[n[:-5]] = rec
        return out

    def _read(self, cid):
        try:
            with open(self._path(cid, "json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # a torn record still names the socket, which finds the process
            return {"id": cid, "pid": None, "socket": self._path(cid, "sock"), "ports": []}

    def _write(self, rec):
        jsonio.write_atomic(self._path(rec["id"], "json"), rec, indent=1, mode=0o600)

    def _forget(self, cid):
        for ext in ("sock", "log", "json"):
            try:
                os.unlink(self._path(cid, ext))
            except FileNotFoundError:
                pass

    # -- the slirp4netns process ---------------------------------------------

    def _pid(self, rec):
        """The live slirp4netns of a record, or None."""
        pid = rec.get("pid")
        if pid and _is_slirp(pid, rec["socket"]):
            return pid
        if pid is None:
            # killed between starting it and recording its pid
            for n in os.listdir("/proc"):
                if n.isdigit() and _is_slirp(int(n), rec["socket"]):
                    return int(n)
        return None

    def _start(self, rec, target):
        r, w = os.pipe()
        try:
            with open(self._path(rec["id"], "log"), "ab") as log:
                # the socket name is relative (cwd is the records directory):
                # a unix socket path is limited to 107 bytes, a data root is not
                p = subprocess.Popen(
                    [SLIRP, "--configure", f"--mtu={MTU}", f"--macaddress={MAC}",
                     *([] if self.host_loopback else ["--disable-host-loopback"]),
                     "--enable-sandbox", "--enable-seccomp",
                     f"--api-socket={os.path.basename(rec['socket'])}", f"--ready-fd={w}",
                     str(target), TAP],
                    cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    pass_fds=(w,), start_new_session=True)
        except OSError as e:
            os.close(r)
            raise BerthError(f"cannot run {SLIRP}", errno=e.errno,
                             hint="install slirp4netns (1.x)") from None
        finally:
            os.close(w)
        # a child nobody waits for would stay a zombie while berthd lives
        threading.Thread(target=p.wait, name=f"slirp-reaper-{p.pid}", daemon=True).start()
        rec["pid"] = p.pid
        try:
            self._write(rec)
            ready, _, _ = select.select([r], [], [], READY_TIMEOUT)
            got = os.read(r, 1) if ready else b""
        finally:
            os.close(r)
        if got != b"1":
            why = "did not get ready in time" if not ready else "exited"
            try:
                with open(self._path(rec["id"], "log"), errors="replace") as f:
                    tail = f.read()[-500:].strip()
            except OSError:
                tail = ""
            raise BerthError(f"network setup of {rec['id'][:12]}: {SLIRP} {why}"
                             + (f": {tail}" if tail else ""))

    def _api(self, rec, request):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        d = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            s.settimeout(READY_TIMEOUT)
            s.connect(f"/proc/self/fd/{d}/{os.path.basename(rec['socket'])}")
            s.sendall(json.dumps(request).encode())
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        except OSError as e:
            raise BerthError(f"{SLIRP} api socket {rec['socket']}", errno=e.errno) from None
        finally:
            os.close(d)
            s.close()
        try:
            return json.loads(data)
        except ValueError:
            raise BerthError(f"{SLIRP} api: unreadable answer {data[:200]!r}") from None

    def _forward(self, rec):
        for m in rec["ports"]:
            if m["proto"] not in ("tcp", "udp"):
                raise ConfigError(f"port {m['port']}/{m['proto']}: rootless networking "
                                  "forwards tcp and udp only")
            answer = self._api(rec, {"execute": "add_hostfwd", "arguments": {
                "proto": m["proto"], "host_addr": m["host_ip"], "host_port": m["host_port"],
                "guest_addr": IP, "guest_port": m["port"]}})
            if "error" in answer:
                raise _refusal(m["host_ip"], m["host_port"], m["proto"],
                               (answer["error"] or {}).get("desc", ""))

    def _stop(self, rec):
        """End the record's slirp4netns, if it still runs; through a pidfd,
        so the signal cannot reach a process that got its pid since."""
        pid = self._pid(rec)
        if pid is None:
            return
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            if not _is_slirp(pid, rec["socket"]):
                return
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    signal.pidfd_send_signal(fd, sig)
                except ProcessLookupError:
                    return
                # readable once it has exited
                if select.select([fd], [], [], STOP_TIMEOUT)[0]:
                    return
            raise BerthError(f"{SLIRP} pid {pid} did not exit")
        finally:
            os.close(fd)

    # -- the hooks --------------------------------------------------------

    def setup(self, c, pid):
        mode = c.host_config.get("NetworkMode") or "bridge"
        if mode == "host" or mode.startswith("container:"):
            return
        if mode == "none":
            lo_up(pid)
            return
        with self.lock:
            others = [m for cid, r in self._records().items() if cid != c.id
                      for m in r.get("ports", [])]
            try:
                mappings = ports.plan(c.host_config, c.config, others)
            except Conflict as e:
                # plan reports a port it may not bind as "allocated"
                for m in self._wanted(c.host_config):
                    if ports.bind_errno(*m) == errno.EACCES:
                        raise _refusal(*m) from None
                raise e from None
            old = self._read(c.id)
            if old is not None:
                # a record left by a start that never got to teardown
                self._stop(old)
                self._forget(c.id)
            rec = {"id": c.id, "name": c.name.lstrip("/"), "pid": None, "target": pid,
                   "socket": self._path(c.id, "sock"), "ports": mappings,
                   "network": "bridge" if mode in ("bridge", "default") else mode,
                   "endpoint_id": secrets.token_hex(32)}
            self._write(rec)
        try:
            self._start(rec, pid)
            self._forward(rec)
        except BaseException:
            try:
                self._stop(rec)
            finally:
                self._forget(c.id)
            raise
        if c.data.get("ResolvConfPath") and not c.host_config.get("Dns"):
            hosts.write_in_place(c.data["ResolvConfPath"], f"nameserver {DNS}\n")
        self._fill(c, rec, pid)

    @staticmethod
    def _wanted(host_config):
        """The fixed host ports asked for, as (ip, port, proto)."""
        for key, binds in (host_config.get("PortBindings") or {}).items():
            proto = str(key).partition("/")[2] or "tcp"
            for b in binds or []:
                hp = str((b or {}).get("HostPort") or "")
                if hp.isdigit():
                    yield (b.get("HostIp") or "0.0.0.0", int(hp), proto)

    def _fill(self, c, rec, pid):
        with c.cond:
            ns = c.data.setdefault("NetworkSettings", {})
            d = ns.setdefault("Networks", {}).setdefault(rec["network"], {})
            d.update({"IPAddress": IP, "IPPrefixLen": PREFIXLEN, "Gateway": GATEWAY,
                      "MacAddress": MAC, "EndpointID": rec["endpoint_id"]})
            ns.update({"IPAddress": IP, "IPPrefixLen": PREFIXLEN, "Gateway": GATEWAY,
                       "MacAddress": MAC, "EndpointID": rec["endpoint_id"], "Bridge": "",
                       "SandboxKey": f"/proc/{pid}/ns/net", "SandboxID": c.id,
                       "Ports": ports.shown(rec["ports"], c.config)})
            c.save()

    def teardown(self, c):
        with self.lock:
            rec = self._read(c.id)
            if rec is not None:
                self._stop(rec)
                self._forget(c.id)
        settings.clear(c)

    def restore(self, running):
        """After a daemon restart: the slirp4netns of a container that is
        gone is ended and its record removed; a running container whose
        slirp4netns died gets a new one with the same ports. If that fails
        (its pid is unknown, a port was taken meanwhile) the container stays
        without network and its record stays, with no pid, for teardown."""
        live = {c.id: c for c in running}
        with self.lock:
            for cid, rec in self._records().items():
                c = live.get(cid)
                if c is None:
                    self._stop(rec)
                    self._forget(cid)
                    continue
                if self._pid(rec) is not None:
                    continue
                target = (getattr(c, "state", None) or {}).get("Pid") or rec.get("target")
                rec["pid"] = None
                try:
                    os.unlink(rec["socket"])
                except FileNotFoundError:
                    pass
                try:
                    if not target or not os.path.exists(f"/proc/{target}/ns/net"):
                        raise BerthError(f"container {cid[:12]} has no process")
                    rec["target"] = target
                    self._write(rec)
                    self._start(rec, target)
                    self._forward(rec)
                except BerthError:
                    self._stop(rec)
                    rec["pid"] = None
                    self._write(rec)

    def _refuse(self, what):
        raise ConfigError(f"{what}: rootless mode has only the slirp4netns network, host "
                          "and none; user networks need a root daemon")

    def connect(self, c, network):
        self._refuse(f"cannot connect {c.name.lstrip('/')} to {network}")

    def disconnect(self, c, network_id):
        self._refuse(f"cannot disconnect {c.name.lstrip('/')} from {network_id}")

    def close(self):
        """Daemon stop: containers keep running, and so do their
        slirp4netns; the next restore() finds them by their records."""
