"""/_ping, /version, /info, /events."""
import os
import platform
import queue
import time

from berth import __version__ as VERSION   # one version for berthd and berth
from berth.api.app import API_VERSION, MIN_API_VERSION
from berth.api.http import Response, json_response, json_stream
from berth.api import filters as F
from berth.engine.containers.record import now_rfc3339


def register(router, engine):
    def ping(req):
        return Response(200, b"OK", content_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": "no-cache, no-store, must-revalidate",
                                 "Pragma": "no-cache"})

    def version(req):
        u = os.uname()
        return json_response({
            "Platform": {"Name": "berth"},
            "Components": [{"Name": "Engine", "Version": VERSION,
                            "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                        "Os": "linux", "Arch": _arch(), "KernelVersion": u.release,
                                        "GitCommit": "", "BuildTime": "", "Experimental": "false",
                                        "GoVersion": "python" + platform.python_version()}}],
            "Version": VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "", "GoVersion": "python" + platform.python_version(),
            "Os": "linux", "Arch": _arch(), "KernelVersion": u.release, "BuildTime": ""})

    def info(req):
        return json_response(system_info(engine))

    def events(req):
        since = _time_ns(req.q("since"))
        until = _time_ns(req.q("until"))
        filt = F.parse(req.q("filters"))
        past, q = engine.events.subscribe(since if since is not None else None)

        def gen():
            try:
                for ev in past:
                    if until is not None and ev["timeNano"] > until:
                        return
                    if F.event_matches(filt, ev):
                        yield ev
                while True:
                    timeout = None
                    if until is not None:
                        timeout = (until - time.time_ns()) / 1e9
                        if timeout <= 0:
                            return
                    try:
                        ev = q.get(timeout=timeout if timeout is not None else 1.0)
                    except queue.Empty:
                        if until is None:
                            yield None   # lets the server notice a client that left
                            continue
                        return
                    if until is not None and ev["timeNano"] > until:
                        return
                    if F.event_matches(filt, ev):
                        yield ev
            finally:
                engine.events.unsubscribe(q)
        return Response(200, json_stream(gen()))

    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    router.add("GET", "/events", events)


def _arch():
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _time_ns(v):
    if not v:
        return None
    try:
        return int(float(v) * 1e9)
    except ValueError:
        from berth.api.errors import BadRequest
        raise BadRequest(f"query parameter since/until: {v!r} is not a unix timestamp")


def system_info(engine):
    cs = engine.containers.list(all=True)
    running = sum(1 for c in cs if c.state["Running"] and not c.state["Paused"])
    paused = sum(1 for c in cs if c.state["Paused"])
    u = os.uname()
    cgv = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    sec = ["name=seccomp,profile=builtin", "name=no-new-privileges"]
    if os.path.isdir("/sys/kernel/security/apparmor"):
        sec.insert(0, "name=apparmor")
    if os.path.exists("/sys/fs/selinux/enforce"):
        sec.append("name=selinux")
    if cgv == "2":
        sec.append("name=cgroupns")
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    cfg = engine.config
    limits = not cfg.rootless   # no cgroup is delegated to a rootless daemon here
    warnings = []
    if not getattr(cfg, "monitor", None):
        warnings.append("WARNING: berth-monitor is not in use: each container is monitored "
                        "by a Python berth-shim (~2.5 MB each)")
    if cfg.rootless:
        sec.append("name=rootless")
        warnings.append("WARNING: rootless mode: no cgroup delegation on this host, so no "
                        "memory, cpu or pids limits")
    return {
        "ID": _machine_id(), "Containers": len(cs), "ContainersRunning": running,
        "ContainersPaused": paused, "ContainersStopped": len(cs) - running - paused,
        "Images": len(engine.store.images()), "Driver": engine.driver.name,
        "DriverStatus": [["Backing Filesystem", "extfs"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"],
                    "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": limits, "SwapLimit": limits, "CpuCfsPeriod": limits,
        "CpuCfsQuota": limits, "CPUShares": limits, "CPUSet": limits, "PidsLimit": limits,
        "KernelMemory": False, "KernelMemoryTCP": False, "OomKillDisable": limits,
        "IPv4Forwarding": True, "BridgeNfIptables": True, "BridgeNfIp6tables": True,
        "Debug": False, "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0, "SystemTime": now_rfc3339(),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": cgv,
        "NEventsListener": 0, "KernelVersion": u.release, "OperatingSystem": _os_name(),
        "OSVersion": "", "OSType": "linux", "Architecture": u.machine,
        "NCPU": os.cpu_count(), "MemTotal": mem, "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [],
                           "AllowNondistributableArtifactsHostnames": [],
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": [],
                           "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": [],
                                                          "Secure": True, "Official": True}}},
        "GenericResources": None,
        "DockerRootDir": engine.paths.root, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Name": u.nodename,
        # which monitor holds each container, as a daemon label: `docker info`
        # prints those, and /info keeps dockerd's fields and no others
        "Labels": ["berth.monitor=" + (getattr(cfg, "monitor", None) or "berth-shim (Python)")], "ExperimentalBuild": False, "ServerVersion": VERSION,
        "Runtimes": {name: {"path": path} for name, path in sorted(cfg.runtimes.items())},
        "DefaultRuntime": cfg.default_runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": cfg.init_path or "",
        # the versions a dockerd reports of its containerd, runc and init
        "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": sec, "Warnings": warnings or None,
    }


def _machine_id():
    try:
        with open("/etc/machine-id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"
