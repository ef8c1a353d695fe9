"""`berth audit`: CIS-Docker-Benchmark-style checks of the daemon's
configuration, its images and its running containers.

    run(engine, options) -> {"Score": 0-100, "Summary": {...}, "Checks": [check, ...]}
    check = {"ID": "5.4", "Title": ..., "Level": "daemon|image|container",
             "Target": name or id, "Result": "PASS|WARN|FAIL|INFO",
             "Detail": what was found, "Fix": the flag or command that fixes it}

IDs follow the CIS Docker Benchmark's numbering where a benchmark item
exists (2.x daemon, 3.x files, 4.x images, 5.x containers); B.x are
berth's own (B.0 image unreadable, B.1 data root permissions, B.2
world-writable files/devices/private keys in an image, B.3 container runs
as root on the host). INFO results are not scored; Score = PASS / (PASS +
WARN + FAIL) * 100, rounded down.

Containers are judged by what actually runs: the bundle's config.json
(capabilities, noNewPrivileges, seccomp, namespaces, user, read-only root)
where it exists, the container record (HostConfig) otherwise.

options: what the daemon was started with (berthd's argparse names):
host (list of -H), tlsverify, tlscacert, insecure_tcp, authz_policy,
audit_log, group. options_from_argv() reads them from berthd's argv when
the daemon does not hand them over."""
import grp
import os
import stat

from berth.engine.specgen.security import DEFAULT_CAPS

PASS, WARN, FAIL, INFO = "PASS", "WARN", "FAIL", "INFO"
SCORED = (PASS, WARN, FAIL)

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

_BOOL_OPTS = ("tlsverify", "insecure_tcp", "tls")
_VALUE_OPTS = ("tlscacert", "tlscert", "tlskey", "authz_policy", "audit_log", "group",
               "data_root", "exec_root", "config_dir", "trust_policy", "userns_remap",
               "default_runtime")


def options_from_argv(argv):
    """berthd's own options from its argv (exact long names, --x=v and
    --x v, -H); unknown words are skipped."""
    out = {"host": []}
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        name, eq, value = a.partition("=")
        if name in ("-H", "--host"):
            if not eq:
                if i >= len(argv):
                    break
                value, i = argv[i], i + 1
            out["host"].append(value)
            continue
        if name.startswith("-H") and len(name) > 2 and not eq:
            out["host"].append(name[2:])
            continue
        if not name.startswith("--"):
            continue
        key = name[2:].replace("-", "_")
        if key in _BOOL_OPTS:
            out[key] = value.lower() not in ("0", "false", "f") if eq else True
        elif key in _VALUE_OPTS:
            if not eq:
                if i >= len(argv):
                    break
                value, i = argv[i], i + 1
            out[key] = value
    return out


def check(id, title, level, target, result, detail, fix=""):
    return {"ID": id, "Title": title, "Level": level, "Target": target, "Result": result,
            "Detail": detail, "Fix": fix if result != PASS else ""}


def score(checks):
    scored = [c for c in checks if c["Result"] in SCORED]
    if not scored:
        return 100
    return sum(c["Result"] == PASS for c in scored) * 100 // len(scored)


def summary(checks):
    out = {r: 0 for r in (PASS, WARN, FAIL, INFO)}
    for c in checks:
        out[c["Result"]] = out.get(c["Result"], 0) + 1
    return out


# -- daemon ------------------------------------------------------------------

def _mode(st):
    return stat.S_IMODE(st.st_mode)


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_socket(path, group="berth"):
    t, title = "3.15", "Daemon socket is owned by root:berth and mode 0660 or stricter"
    try:
        st = os.stat(path)
    except OSError as e:
        return check(t, title, "daemon", path, INFO, f"{path}: {e.strerror}", "")
    m = _mode(st)
    owner = f"{st.st_uid}:{_group_name(st.st_gid)}"
    want_gid = None
    try:
        want_gid = grp.getgrnam(group).gr_gid
    except KeyError:
        pass
    detail = f"mode {m:04o}, owner {owner}"
    if st.st_uid != 0 or m & 0o007:
        return check(t, title, "daemon", path, FAIL,
                     detail + ": " + ("others may connect (root on the host)" if m & 0o007
                                      else "not owned by root"),
                     f"chown root:{group} {path} && chmod 0660 {path} (berthd --group {group} "
                     "sets this at start)")
    if m & 0o117 or st.st_gid not in (0, want_gid):
        return check(t, title, "daemon", path, WARN, detail,
                     f"chown root:{group} {path} && chmod 0660 {path}")
    return check(t, title, "daemon", path, PASS, detail)


def check_tcp(hosts, opts):
    t, title = "2.6", "TCP listener requires mutual TLS"
    tcp = [h for h in hosts if h.startswith("tcp://")]
    if not tcp:
        return check(t, title, "daemon", "-H", PASS, "no TCP listener (Unix socket only)")
    target = ", ".join(tcp)
    if opts.get("tlsverify") and opts.get("tlscacert"):
        return check(t, title, "daemon", target, PASS, "TCP with --tlsverify and a client CA")
    if opts.get("tlsverify") or opts.get("tlscacert"):
        return check(t, title, "daemon", target, WARN, "TLS without verified client certificates",
                     "berthd --tlsverify --tlscacert ca.pem --tlscert server.pem --tlskey server-key.pem")
    return check(t, title, "daemon", target, FAIL,
                 "TCP without TLS: whoever reaches the port is root on this host",
                 "remove -H tcp://... or add --tlsverify --tlscacert ca.pem --tlscert server.pem "
                 "--tlskey server-key.pem (port 2376)")


def check_authz(path):
    t, title = "2.11", "Authorization policy for the API"
    if path and os.path.isfile(path):
        st = os.stat(path)
        if st.st_uid != 0 or _mode(st) & 0o022:
            return check(t, title, "daemon", path, WARN,
                         f"policy present but mode {_mode(st):04o} owner {st.st_uid}: others may edit it",
                         f"chown root:root {path} && chmod 0644 {path}")
        return check(t, title, "daemon", path, PASS, "policy present")
    return check(t, title, "daemon", path or "-", WARN,
                 "no authorization policy: every socket user may do everything",
                 f"write a policy to {path} (or berthd --authz-policy FILE), e.g. deny "
                 "privileged containers and host binds for non-root users")


def check_audit_log(path):
    t, title = "2.13", "API audit log is on and readable by root only"
    if not path:
        return check(t, title, "daemon", "-", WARN, "no audit log path",
                     "berthd --audit-log /var/lib/berth/audit.log")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if os.path.isdir(parent):
            return check(t, title, "daemon", path, INFO,
                         "audit log on; the file is created (0600) at the first state-changing "
                         "request", "")
        return check(t, title, "daemon", path, WARN, f"{parent} does not exist",
                     f"mkdir -m 0700 -p {parent}")
    m = _mode(st)
    if m & 0o077 or st.st_uid != 0:
        return check(t, title, "daemon", path, FAIL,
                     f"mode {m:04o}, owner {st.st_uid}: others can read who did what",
                     f"chown root:root {path} && chmod 0600 {path}")
    return check(t, title, "daemon", path, PASS, f"mode {m:04o}, owner root")


def check_trust(path):
    t, title = "4.5", "Content trust: a signature policy for images"
    if path and os.path.isfile(path):
        return check(t, title, "daemon", path, PASS, "trust policy present (enforced at create)")
    return check(t, title, "daemon", path or "-", WARN, "no trust policy: unsigned images run",
                 f"write a policy to {path} (berthd --trust-policy FILE) and sign images with "
                 "`berth image sign`")


def check_data_root(path):
    t, title = "B.1", "Data root owned by root and not writable by others"
    try:
        st = os.stat(path)
    except OSError as e:
        return check(t, title, "daemon", path, INFO, e.strerror or str(e))
    m = _mode(st)
    if st.st_uid != 0 or m & 0o022:
        return check(t, title, "daemon", path, FAIL,
                     f"mode {m:04o}, owner {st.st_uid}: others may alter images and containers",
                     f"chown root:root {path} && chmod 0710 {path}")
    if m & 0o004:
        return check(t, title, "daemon", path, WARN, f"mode {m:04o}: others may list it",
                     f"chmod 0710 {path}")
    return check(t, title, "daemon", path, PASS, f"mode {m:04o}, owner root")


def check_runtime(config):
    t, title = "2.15", "Default runtime is a known OCI runtime that exists"
    name = getattr(config, "default_runtime", None) or "berth"
    runtimes = getattr(config, "runtimes", {}) or {}
    path = runtimes.get(name, name)
    import shutil
    found = path if os.path.isabs(path) and os.access(path, os.X_OK) else shutil.which(path)
    if not found:
        return check(t, title, "daemon", name, FAIL, f"{name} -> {path}: not found",
                     f"berthd --default-runtime berth (or install {path})")
    if name not in ("berth", "runc", "crun"):
        return check(t, title, "daemon", name, INFO, f"{name} -> {found} (not one berth tests)")
    return check(t, title, "daemon", name, PASS, f"{name} -> {found}")


def check_icc(engine):
    t, title = "2.1", "No traffic between containers on the default bridge (icc off)"
    icc = getattr(engine.config, "icc", None)
    if icc is None:
        icc = getattr(getattr(getattr(engine, "network", None), "cfg", None), "icc", None)
    if icc is None:
        return check(t, title, "daemon", "bridge", INFO,
                     "the daemon does not report icc (no network driver)", "")
    if icc:
        return check(t, title, "daemon", "bridge", WARN, "icc on: containers reach each other",
                     "start berthd without icc (berth's default), and use user-defined networks "
                     "for containers that must talk")
    return check(t, title, "daemon", "bridge", PASS, "icc off")


def check_userns(config):
    t, title = "2.8", "User namespace remapping"
    remap = getattr(config, "userns_remap", None)
    if getattr(config, "rootless", False):
        return check(t, title, "daemon", "rootless", PASS,
                     "rootless daemon: root in its user namespace is an ordinary user on the host")
    if remap:
        what = "a range per container" if remap == "auto" else "root maps to %s:%s (%s ids)" % tuple(remap)
        return check(t, title, "daemon", "--userns-remap", PASS, what)
    return check(t, title, "daemon", "--userns-remap", WARN,
                 "off: root in a container is root on the host",
                 "berthd --userns-remap auto (or run single containers with --userns auto)")


def daemon_checks(engine, opts):
    paths = engine.paths
    hosts = list(opts.get("host") or []) or ["unix://" + paths.socket]
    group = opts.get("group") or "berth"
    out = []
    for h in hosts:
        if h.startswith("unix://"):
            out.append(check_socket(h[len("unix://"):], group))
    out.append(check_tcp(hosts, opts))
    out.append(check_authz(opts.get("authz_policy") or paths.authz_policy))
    out.append(check_audit_log(opts.get("audit_log") or paths.audit_log))
    out.append(check_trust(getattr(engine.config, "trust_policy", None) or paths.trust_policy))
    out.append(check_data_root(paths.root))
    out.append(check_runtime(engine.config))
    out.append(check_icc(engine))
    out.append(check_userns(engine.config))
    return out


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
                         "(or docker run --health-cmd ...)"))
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
            f"or --device /dev/xyz (docker rm -f {name} && docker run ... )")
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
        add("5.12", "Root filesystem is read-only", INFO, "writable root filesystem",
            "recreate with --read-only (plus --tmpfs /tmp and volumes where it writes)")

    # 5.10 memory
    mem = hc.get("Memory") or 0
    if mem > 0:
        add("5.10", "Memory is limited", PASS, f"{mem} bytes")
    else:
        add("5.10", "Memory is limited", WARN, "no memory limit: can exhaust the host",
            f"docker update --memory 512m --memory-swap 512m {name} (or run with --memory)")

    # 5.28 pids
    pids = hc.get("PidsLimit") or 0
    if spec is not None:
        pids = ((lx.get("resources") or {}).get("pids") or {}).get("limit") or pids
    if pids and pids > 0:
        add("5.28", "PIDs are limited", PASS, f"pids limit {pids}")
    else:
        add("5.28", "PIDs are limited", WARN, "no pids limit: a fork bomb takes the host down",
            f"docker update --pids-limit 1024 {name} (or run with --pids-limit)")

    # 5.14 restart policy
    rp = hc.get("RestartPolicy") or {}
    pname, count = rp.get("Name") or "no", rp.get("MaximumRetryCount") or 0
    title = "Restart policy on-failure is capped at 5"
    if pname in ("", "no"):
        add("5.14", title, PASS, "no restart policy")
    elif pname == "on-failure" and 0 < count <= 5:
        add("5.14", title, PASS, f"on-failure:{count}")
    else:
        add("5.14", title, WARN,
            f"{pname}" + (f":{count}" if pname == "on-failure" else "")
            + ": restarts without bound",
            f"docker update --restart on-failure:5 {name}")

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
    if open_:
        first = open_[0].split("->")
        add("5.13", title, WARN, "on every interface: " + ", ".join(open_),
            f"recreate with -p 127.0.0.1:{first[0]}:{first[1].split('/')[0]} "
            "(or the one interface that must serve it)")
    else:
        add("5.13", title, PASS, "no port on 0.0.0.0")
    return out


# -- everything ------------------------------------------------------------------

def run(engine, opts=None, scan_images=True, all_containers=False, scan_cache=None):
    """The whole audit. scan_cache: {image_id: scan result} kept by the
    caller (images never change, so their scans can be reused)."""
    from berth.engine.images import scan as scanner
    opts = opts or {}
    checks = daemon_checks(engine, opts)
    cache = scan_cache if scan_cache is not None else {}
    for img in engine.store.images():
        image_id = img.get("Id") if isinstance(img, dict) else img
        tags = [t for t in (img.get("RepoTags") or []) if t != "<none>:<none>"] \
            if isinstance(img, dict) else []
        target = tags[0] if tags else image_id.removeprefix("sha256:")[:12]
        try:
            cfg = engine.store.config(image_id).get("config") or {}
        except Exception as e:  # noqa: BLE001 - one broken image must not end the audit
            checks.append(check("B.0", "Image is readable", "image", target, FAIL, str(e),
                                f"docker rmi {target} and load it again"))
            continue
        result = None
        if scan_images:
            result = cache.get(image_id)
            if result is None:
                try:
                    result = scanner.scan_image(engine.store, engine.driver, image_id)
                    cache[image_id] = result
                except Exception as e:  # noqa: BLE001
                    checks.append(check("B.0", "Image layers can be scanned", "image", target,
                                        INFO, str(e)))
        checks.extend(image_checks(target, cfg, result))
    sockets = tuple(h[len("unix://"):] for h in opts.get("host") or [] if h.startswith("unix://"))
    sockets += (engine.paths.socket,)
    for c in engine.containers.list(all=True):
        if not (all_containers or c.running):
            continue
        checks.extend(container_checks(c, _bundle_spec(c), sockets,
                                       rootless=getattr(engine.config, "rootless", False)))
    return {"Score": score(checks), "Summary": summary(checks), "Checks": checks}
