"""The audit's checks of images and containers (berth.engine.audit runs
them with the daemon's)."""
import os

from berth.engine.audit_result import FAIL, INFO, PASS, WARN, check
from berth.engine.specgen.security import DEFAULT_CAPS

# Docker's 14 default capabilities (berth's defaults drop NET_RAW and MKNOD)
DOCKER_CAPS = frozenset("CAP_" + c for c in (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"))

# the ones that make a breakout easy: named first in a finding
DANGEROUS_CAPS = frozenset("CAP_" + c for c in (
    "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SYS_RAWIO", "DAC_READ_SEARCH", "NET_ADMIN",
    "BPF", "PERFMON", "SYS_BOOT", "SYS_TIME", "MAC_ADMIN", "MAC_OVERRIDE"))

# host paths a container must not get (prefix match for directories)
SENSITIVE_DIRS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/lib/modules", "/usr", "/root",
                  "/var/lib/berth", "/var/lib/docker", "/run/berth", "/var/run/berth")
DAEMON_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/berth/berth.sock",
                  "/var/run/berth/berth.sock", "/run/containerd/containerd.sock")


# -- images ------------------------------------------------------------------

def image_checks(target, config, scan=None):
    """config: the image JSON's "config" object; scan: berth.engine.images.scan's
    result for it (None: the file checks are skipped)."""
    from berth.engine.images import scan as scanner
    config = config or {}
    out = []
    user = config.get("User") or ""
    if scanner.is_root_user(user):
        out.append(check("4.1", "Image runs as a non-root user", "image", target, WARN,
                         "Config.User is " + (repr(user) if user else "empty") + ": runs as root",
                         "add `USER <name>` to the Dockerfile, or run with --user 1000:1000"))
    else:
        out.append(check("4.1", "Image runs as a non-root user", "image", target, PASS,
                         f"User {user}"))
    hc = (config.get("Healthcheck") or {}).get("Test")
    if hc and hc != ["NONE"]:
        out.append(check("4.6", "Image has a HEALTHCHECK", "image", target, PASS,
                         " ".join(hc)[:80]))
    else:
        out.append(check("4.6", "Image has a HEALTHCHECK", "image", target, WARN,
                         "no HEALTHCHECK", "add HEALTHCHECK CMD <probe> to the Dockerfile "
                         "(or berth run --health-cmd ...)"))
    secrets = [f for f in (scan or {}).get("Findings", []) if f["Kind"] == "secret-env"] \
        if scan else [f for f in scanner.scan_config(config) if f["Kind"] == "secret-env"]
    if secrets:
        names = ", ".join(f["Detail"].split("=", 1)[0].split()[-1] for f in secrets)
        out.append(check("4.10", "No secrets in the image's environment", "image", target, FAIL,
                         f"secret-looking variables with values: {names}",
                         "remove the ENV lines and pass them at run time (-e NAME, --env-file) "
                         "or as mounted secret files"))
    else:
        out.append(check("4.10", "No secrets in the image's environment", "image", target, PASS,
                         "none"))
    if scan is not None:
        suid = [f for f in scan.get("Findings", []) if f["Kind"] in ("setuid", "setgid")]
        if suid:
            paths = [f["Path"] for f in suid]
            shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
            out.append(check("4.8", "No setuid/setgid files in the image", "image", target, WARN,
                             f"{len(paths)} file(s): {shown}",
                             "RUN chmod a-s " + " ".join(paths[:5]) + " in the Dockerfile "
                             "(or find / -xdev -perm /6000 -type f -exec chmod a-s {} +); "
                             "no-new-privileges (berth's default) keeps them from raising "
                             "privileges"))
        else:
            out.append(check("4.8", "No setuid/setgid files in the image", "image", target, PASS,
                             "none"))
        bad = [f for f in scan.get("Findings", []) if f["Kind"] in ("world-writable",
                                                                    "world-writable-dir",
                                                                    "private-key", "device")]
        if bad:
            worst = FAIL if any(f["Severity"] == "HIGH" for f in bad) else WARN
            out.append(check("B.2", "No world-writable files, devices or private keys in the image",
                             "image", target, worst,
                             "; ".join(f"{f['Kind']} {f['Path']}" for f in bad[:5])
                             + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""),
                             f"`berth image scan {target}` lists them with a fix each"))
    return out


# -- containers -----------------------------------------------------------------

def _bundle_spec(c):
    from berth.oci import jsonio
    path = os.path.join(c.bundle, "config.json")
    try:
        return jsonio.load_file(path)
    except Exception:  # noqa: BLE001 - a missing or torn bundle: use the record
        return None


def _bind_sources(c):
    """[(host source, destination, read_only)] of the container's binds."""
    out = []
    for m in c.data.get("Mounts") or []:
        if m.get("Type") == "bind" and m.get("Source"):
            out.append((m["Source"], m.get("Destination", ""), not m.get("RW", True)))
    if out:
        return out
    hc = c.host_config
    for b in hc.get("Binds") or []:
        parts = b.split(":")
        if len(parts) >= 2 and parts[0].startswith("/"):
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    for m in hc.get("Mounts") or []:
        if m.get("Type") == "bind" and m.get("Source"):
            out.append((m["Source"], m.get("Target", ""), bool(m.get("ReadOnly"))))
    return out


def _sensitive(src, extra_sockets=()):
    s = os.path.normpath(src)
    if s == "/":
        return "the host's root"
    if s in DAEMON_SOCKETS or s in extra_sockets or s.endswith(("/docker.sock", "/berth.sock")):
        return "a container engine's socket"
    for d in SENSITIVE_DIRS:
        if s == d or s.startswith(d + "/"):
            return d
    return None


def _namespace_modes(c, spec):
    """{"pid": "host"|"private", ...} from the spec when there is one."""
    hc = c.host_config
    modes = {"pid": hc.get("PidMode") or "", "ipc": hc.get("IpcMode") or "",
             "uts": hc.get("UTSMode") or "", "network": hc.get("NetworkMode") or ""}
    if spec:
        have = {n.get("type"): n.get("path") for n in (spec.get("linux") or {}).get("namespaces") or []}
        for k in modes:
            if k not in have:
                modes[k] = "host"
            elif modes[k] == "host":
                modes[k] = "joined"   # the record says host, the spec joins a path: trust the spec
    return modes


def container_checks(c, spec=None, extra_sockets=(), rootless=False):
    name = c.name.lstrip("/") or c.id[:12]
    hc = c.host_config or {}
    cfg = c.config or {}
    proc = (spec or {}).get("process") or {}
    lx = (spec or {}).get("linux") or {}
    out = []

    def add(id, title, result, detail, fix=""):
        out.append(check(id, title, "container", name, result, detail, fix))

    # 5.4 privileged
    if hc.get("Privileged"):
        add("5.4", "Container is not privileged", FAIL,
            "privileged: every capability, all devices, no seccomp, writable /sys",
            f"recreate without --privileged; grant only what it needs, e.g. --cap-add NET_ADMIN "
            f"or --device /dev/xyz (berth rm -f {name} && berth run ...)")
    else:
        add("5.4", "Container is not privileged", PASS, "not privileged")

    # 5.3 capabilities
    caps = (proc.get("capabilities") or {}).get("bounding") if spec else None
    if caps is None:
        caps = list(DEFAULT_CAPS) + ["CAP_" + x.upper().removeprefix("CAP_")
                                     for x in hc.get("CapAdd") or []]
    extra = sorted(set(caps) - set(DEFAULT_CAPS))
    beyond_docker = sorted((x for x in extra if x not in DOCKER_CAPS),
                           key=lambda x: (x not in DANGEROUS_CAPS, x))
    title = "Only default capabilities"
    if beyond_docker:
        add("5.3", title, FAIL, "added: " + ", ".join(x[4:] for x in beyond_docker[:8])
            + (f" and {len(beyond_docker) - 8} more" if len(beyond_docker) > 8 else ""),
            "recreate with --cap-drop ALL --cap-add <only what it needs>"
            + ("" if hc.get("Privileged") else " instead of --cap-add "
               + " --cap-add ".join(x[4:] for x in beyond_docker[:3])))
    elif extra:
        add("5.3", title, WARN, "added: " + ", ".join(x[4:] for x in extra)
            + " (Docker's defaults, which berth drops)",
            "recreate without --cap-add " + " --cap-add ".join(x[4:] for x in extra))
    else:
        add("5.3", title, PASS, f"{len(caps)} capabilities, none beyond berth's defaults")

    # 5.25 no-new-privileges
    if spec is not None:
        nnp = bool(proc.get("noNewPrivileges"))
    else:
        nnp = not any(o.replace(":", "=") == "no-new-privileges=false"
                      for o in hc.get("SecurityOpt") or [])
    if nnp:
        add("5.25", "no-new-privileges is on", PASS, "setuid files cannot raise privileges")
    else:
        add("5.25", "no-new-privileges is on", WARN,
            "off: setuid programs in the container can raise privileges",
            "recreate without --security-opt no-new-privileges=false")

    # 5.21 seccomp
    if spec is not None:
        seccomp = bool(lx.get("seccomp"))
    else:
        seccomp = not hc.get("Privileged") and not any(
            o.replace(":", "=") == "seccomp=unconfined" for o in hc.get("SecurityOpt") or [])
    if seccomp:
        add("5.21", "Seccomp profile is applied", PASS, "seccomp filter loaded")
    else:
        add("5.21", "Seccomp profile is applied", FAIL, "unconfined: every system call allowed",
            "recreate without --security-opt seccomp=unconfined (and without --privileged)")

    # host namespaces
    modes = _namespace_modes(c, spec)
    for id, ns, flag, why in (
            ("5.15", "pid", "--pid host", "sees and can signal host processes"),
            ("5.16", "ipc", "--ipc host", "shares host shared memory"),
            ("5.20", "uts", "--uts host", "can change the host's hostname"),
            ("5.9", "network", "--network host", "shares the host's network stack")):
        title = f"Host {ns} namespace is not shared"
        if modes[ns] == "host":
            add(id, title, FAIL if ns in ("pid", "network") else WARN, f"{flag}: {why}",
                f"recreate without {flag}")
        else:
            add(id, title, PASS, f"own {ns} namespace")

    # 5.5 / 5.31 binds
    socks, dirs = [], []
    for src, dst, ro in _bind_sources(c):
        what = _sensitive(src, extra_sockets)
        if what == "a container engine's socket":
            socks.append(f"{src}:{dst}")
        elif what:
            dirs.append((f"{src}:{dst}" + (":ro" if ro else ""), ro))
    if socks:
        add("5.31", "No container engine socket is mounted", FAIL,
            "mounted: " + ", ".join(socks) + " (root on the host, read-only or not)",
            "recreate without -v " + " -v ".join(socks))
    else:
        add("5.31", "No container engine socket is mounted", PASS, "none")
    if dirs:
        res = WARN if all(ro for _, ro in dirs) else FAIL
        add("5.5", "No sensitive host directories are mounted", res,
            "mounted: " + ", ".join(d for d, _ in dirs),
            "recreate without those -v binds; mount a dedicated directory or a volume instead")
    else:
        add("5.5", "No sensitive host directories are mounted", PASS, "none")

    # 5.12 read-only root
    ro = (spec.get("root") or {}).get("readonly") if spec else hc.get("ReadonlyRootfs")
    if ro:
        add("5.12", "Root filesystem is read-only", PASS, "read-only")
    else:
        out.append(check("5.12", "Root filesystem is read-only", "container", name, INFO,
                         "writable root filesystem", "recreate with --read-only (plus --tmpfs "
                         "/tmp and volumes where it writes)", finding="Root filesystem is writable"))

    # 5.10 memory
    mem = hc.get("Memory") or 0
    if mem > 0:
        add("5.10", "Memory is limited", PASS, f"{mem} bytes")
    else:
        add("5.10", "Memory is limited", WARN, "no memory limit: can exhaust the host",
            f"berth update --memory 512m --memory-swap 512m {name} (or run with --memory)")

    # 5.28 pids
    pids = hc.get("PidsLimit") or 0
    if spec is not None:
        pids = ((lx.get("resources") or {}).get("pids") or {}).get("limit") or pids
    if pids and pids > 0:
        add("5.28", "PIDs are limited", PASS, f"pids limit {pids}")
    else:
        add("5.28", "PIDs are limited", WARN, "no pids limit: a fork bomb takes the host down",
            f"berth update --pids-limit 1024 {name} (or run with --pids-limit)")

    # 5.14 restart policy
    rp = hc.get("RestartPolicy") or {}
    pname, count = rp.get("Name") or "no", rp.get("MaximumRetryCount") or 0
    title = "Restart policy on-failure is capped at 5"
    if pname in ("", "no"):
        pass   # does not apply: nothing restarts
    elif pname == "on-failure" and 0 < count <= 5:
        add("5.14", title, PASS, f"on-failure:{count}")
    else:
        add("5.14", title, WARN,
            f"{pname}" + (f":{count}" if pname == "on-failure" else "")
            + ": restarts without bound",
            f"berth update --restart on-failure:5 {name}")

    # 5.32 user
    user = (proc.get("user") or {}).get("uid") if spec else None
    if user is None:
        from berth.engine.images.scan import is_root_user
        user = 0 if is_root_user(cfg.get("User")) else -1
    mapped = bool(lx.get("uidMappings")) or bool(c.data.get("IdMap"))
    if user != 0:
        add("B.3", "Container does not run as root", PASS, f"user {cfg.get('User') or user}")
    elif mapped or rootless:
        add("B.3", "Container does not run as root", PASS,
            "root inside a user namespace (not root on the host)")
    else:
        add("B.3", "Container does not run as root", WARN, "runs as root (uid 0 on the host)",
            "run with --user 1000:1000, or --userns auto (berthd --userns-remap auto)")

    # 5.13 published ports on every interface
    open_ = []
    for port, binds in sorted((hc.get("PortBindings") or {}).items()):
        for b in binds or []:
            if (b or {}).get("HostIp", "") in ("", "0.0.0.0", "::"):
                open_.append(f"{(b or {}).get('HostPort') or '?'}->{port}")
    ns_ports = (c.data.get("NetworkSettings") or {}).get("Ports") or {}
    for port, binds in sorted(ns_ports.items()):
        for b in binds or []:
            item = f"{(b or {}).get('HostPort') or '?'}->{port}"
            if (b or {}).get("HostIp", "") in ("", "0.0.0.0", "::") and item not in open_:
                open_.append(item)
    title = "Published ports bound to a specific host interface"
    published = bool(open_) or any(binds for binds in (hc.get("PortBindings") or {}).values()) \
        or any(binds for binds in ns_ports.values())
    if open_:
        first = open_[0].split("->")
        add("5.13", title, WARN, "on every interface: " + ", ".join(open_),
            f"recreate with -p 127.0.0.1:{first[0]}:{first[1].split('/')[0]} "
            "(or the one interface that must serve it)")
    elif published:
        add("5.13", title, PASS, "every published port on a specific interface")
    return out
