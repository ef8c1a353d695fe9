"""`berth audit`: CIS-Docker-Benchmark-style checks of the daemon's
configuration, its images and its running containers.

    run(engine, options) -> {"Score": 0-100, "Summary": {...}, "Checks": [check, ...]}
    check = {"ID": "5.4", "Title": ..., "Level": "daemon|image|container",
             "Target": name or id, "Result": "PASS|WARN|FAIL|INFO",
             "Detail": what was found, "Fix": the flag or command that fixes it}

IDs follow the numbering of the CIS Docker Benchmark v1.2.0 (BENCHMARK)
where it has the item (2.x daemon, 3.x files, 4.x images, 5.x containers);
B.x are berth's own (B.0 image unreadable, B.1 data root permissions, B.2
world-writable files/devices/private keys in an image, B.3 container runs
as root on the host, B.4 API audit log, B.5 default runtime). A check that
does not pass is titled by what was found ("Container is privileged"), one
that passes by what holds ("Container is not privileged"); a check that
does not apply (a restart cap without a restart policy, TLS without a TCP
listener, interfaces without published ports) is left out rather than
passed. INFO results are not scored; Score = PASS / (PASS + WARN + FAIL) *
100, rounded down, over the checks of the levels asked for.

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

# the checks' results and the workloads' checks are re-exported: callers
# and tests know them as audit.*
from berth.engine.audit_result import (BENCHMARK, FAIL, INFO, PASS, WARN, check,  # noqa: F401
                                       score, summary)
from berth.engine.audit_workloads import _bundle_spec, container_checks, image_checks  # noqa: F401

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
                     "sets this at start)",
                     finding="Daemon socket lets others connect" if m & 0o007
                     else "Daemon socket is not owned by root")
    if m & 0o117 or st.st_gid not in (0, want_gid):
        return check(t, title, "daemon", path, WARN, detail,
                     f"chown root:{group} {path} && chmod 0660 {path}",
                     finding="Daemon socket's group or mode is looser than root:berth 0660")
    return check(t, title, "daemon", path, PASS, detail)


def check_tcp(hosts, opts):
    t, title = "2.6", "TCP listener requires mutual TLS"
    tcp = [h for h in hosts if h.startswith("tcp://")]
    if not tcp:
        return None   # does not apply: no TCP listener
    target = ", ".join(tcp)
    if opts.get("tlsverify") and opts.get("tlscacert"):
        return check(t, title, "daemon", target, PASS, "TCP with --tlsverify and a client CA")
    if opts.get("tlsverify") or opts.get("tlscacert"):
        return check(t, title, "daemon", target, WARN, "TLS without verified client certificates",
                     "berthd --tlsverify --tlscacert ca.pem --tlscert server.pem --tlskey server-key.pem",
                     finding="TCP listener does not verify client certificates")
    return check(t, title, "daemon", target, FAIL,
                 "TCP without TLS: whoever reaches the port is root on this host",
                 finding="TCP listener has no TLS",
                 fix="remove -H tcp://... or add --tlsverify --tlscacert ca.pem --tlscert server.pem "
                 "--tlskey server-key.pem (port 2376)")


def check_authz(path):
    t, title = "2.11", "An authorization policy guards the API"
    if path and os.path.isfile(path):
        st = os.stat(path)
        if st.st_uid != 0 or _mode(st) & 0o022:
            return check(t, title, "daemon", path, WARN,
                         f"policy present but mode {_mode(st):04o} owner {st.st_uid}: others may edit it",
                         f"chown root:root {path} && chmod 0644 {path}",
                         finding="The authorization policy can be edited by others")
        return check(t, title, "daemon", path, PASS, "policy present")
    return check(t, title, "daemon", path or "-", WARN,
                 "no authorization policy: every socket user may do everything",
                 f"write a policy to {path} (or berthd --authz-policy FILE), e.g. deny "
                 "privileged containers and host binds for non-root users",
                 finding="No authorization policy: every socket user may do everything")


def check_audit_log(path):
    t, title = "B.4", "API audit log is on and readable by root only"
    if not path:
        return check(t, title, "daemon", "-", WARN, "no audit log path",
                     "berthd --audit-log /var/lib/berth/audit.log", finding="API audit log is off")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if os.path.isdir(parent):
            return check(t, title, "daemon", path, INFO,
                         "audit log on; the file is created (0600) at the first state-changing "
                         "request", "")
        return check(t, title, "daemon", path, WARN, f"{parent} does not exist",
                     f"mkdir -m 0700 -p {parent}", finding="API audit log's directory is missing")
    m = _mode(st)
    if m & 0o077 or st.st_uid != 0:
        return check(t, title, "daemon", path, FAIL,
                     f"mode {m:04o}, owner {st.st_uid}: others can read who did what",
                     f"chown root:root {path} && chmod 0600 {path}",
                     finding="API audit log is readable by others")
    return check(t, title, "daemon", path, PASS, f"mode {m:04o}, owner root")


def check_trust(path):
    t, title = "4.5", "A signature policy decides which images run"
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
                     f"chmod 0710 {path}", finding="Others may list the data root")
    return check(t, title, "daemon", path, PASS, f"mode {m:04o}, owner root")


def check_runtime(config):
    t, title = "B.5", "Default runtime is a known OCI runtime that exists"
    name = getattr(config, "default_runtime", None) or "berth"
    runtimes = getattr(config, "runtimes", {}) or {}
    path = runtimes.get(name, name)
    import shutil
    found = path if os.path.isabs(path) and os.access(path, os.X_OK) else shutil.which(path)
    if not found:
        return check(t, title, "daemon", name, FAIL, f"{name} -> {path}: not found",
                     f"berthd --default-runtime berth (or install {path})")
    if name not in ("berth", "runc", "crun"):
        return check(t, title, "daemon", name, INFO, f"{name} -> {found} (not one berth tests)",
                     finding="Default runtime is one berth does not test")
    return check(t, title, "daemon", name, PASS, f"{name} -> {found}")


def check_icc(engine):
    t, title = "2.1", "Containers on the default bridge cannot reach each other (icc off)"
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
    t, title = "2.8", "Containers run in remapped user namespaces"
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
    out.append(check_tcp(hosts, opts))   # None when there is no TCP listener
    out.append(check_authz(opts.get("authz_policy") or paths.authz_policy))
    out.append(check_audit_log(opts.get("audit_log") or paths.audit_log))
    out.append(check_trust(getattr(engine.config, "trust_policy", None) or paths.trust_policy))
    out.append(check_data_root(paths.root))
    out.append(check_runtime(engine.config))
    out.append(check_icc(engine))
    out.append(check_userns(engine.config))
    return [c for c in out if c is not None]


# -- everything ------------------------------------------------------------------

def run(engine, opts=None, scan_images=True, all_containers=False, scan_cache=None, levels=None):
    """The whole audit, or the checks of `levels` (daemon, image,
    container) and their score. scan_cache: {image_id: scan result} kept by
    the caller (images never change, so their scans can be reused)."""
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
                                f"berth rmi {target} and load it again"))
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
    if levels:
        checks = [c for c in checks if c["Level"] in levels]
    return {"Score": score(checks), "Summary": summary(checks), "Checks": checks,
            "Benchmark": BENCHMARK}
