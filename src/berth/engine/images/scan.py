"""Image scanning without running the image: what its files and its config
would hand a container.

The layers are read where the snapshot driver unpacked them
(storage.layers.ensure_layers + driver.layer_path). With the overlay
driver each layer dir holds only its own changes, so the merged view is
computed here, walking the layers top-down: a path seen in an upper layer
hides the same path below; a whiteout (a 0:0 character device) hides the
path and everything under it; an opaque dir (the overlay.opaque xattr)
hides what lower layers have under it; a non-directory in an upper layer
hides a lower directory of that name. With vfs the top layer already is
the whole tree.

Findings (dicts in the API's spelling):
    {"Severity": "HIGH|MEDIUM|LOW|INFO", "Kind": "...", "Path": "/usr/bin/x",
     "Detail": "...", "Fix": "...", "Layer": "<diff id>"}

Kinds: setuid, setgid, world-writable, world-writable-dir, device,
private-key (files); root-user, secret-env, privileged-port, no-healthcheck
(config). Secret values are never returned: only their name and length.

Severity: HIGH is what a CI gate should stop on (secrets and private keys
baked into the image, a setuid program anyone can rewrite); setuid root
programs are MEDIUM (base images ship su/passwd/mount; CIS 4.8 asks for a
review, not an outright failure)."""
import os
import re
import stat

SEVERITIES = ("HIGH", "MEDIUM", "LOW", "INFO")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")

# parts of an environment variable name that mark a secret
_SECRET_WORDS = re.compile(
    r"(^|_)(PASSWORD|PASSWD|PASS|PWD|SECRET|SECRETS|TOKEN|TOKENS|KEY|APIKEY|ACCESSKEY|"
    r"CREDENTIAL|CREDENTIALS|PRIVATE)(_|$)", re.I)
# well-known names that match but hold public data
_NOT_SECRET = frozenset(("PWD", "OLDPWD", "GPG_KEY", "GPG_KEYS", "PGP_KEY", "KEY_ID"))

_PRIVATE_KEY = re.compile(rb"-----BEGIN ((RSA|EC|DSA|OPENSSH|ENCRYPTED) )?PRIVATE KEY-----")
_KEY_NAMES = re.compile(r"(^id_(rsa|dsa|ecdsa|ed25519)$)|(\.(pem|key|p8|ppk)$)|(_key$)")
_KEY_DIRS = ("etc/ssh/", "root/", "home/", "etc/ssl/private/", "app/", "srv/", "opt/")
KEY_FILE_MAX = 64 << 10

# where a writable file lets anyone change what every user runs
_SYSTEM_DIRS = ("bin/", "sbin/", "usr/", "lib/", "lib64/", "etc/")


def finding(severity, kind, detail, fix, path=None, layer=None):
    f = {"Severity": severity, "Kind": kind}
    if path is not None:
        f["Path"] = path
    f["Detail"] = detail
    f["Fix"] = fix
    if layer is not None:
        f["Layer"] = layer
    return f


# -- the merged view of the layers ---------------------------------------

def _is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path):
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _hidden(rel, blocked):
    """Is rel under (or at) a path an upper layer removed, replaced by a
    non-directory, or made opaque?"""
    p = rel
    while True:
        p = os.path.dirname(p)
        if not p:
            return False
        if p in blocked:
            return True


def merged_files(layers, overlay=True):
    """The merged view of an image's layers.

    layers: [(layer_id, directory)], bottom first. overlay=False: the
    directories are full trees (vfs) and only the top one is read.
    Yields (relpath, full path, os.stat_result, layer_id), topmost version of
    each path only, whiteouts left out. Symlinks are never followed."""
    layers = list(layers)
    if not overlay:
        layers = layers[-1:]
    seen = set()       # paths an upper layer decided (present or whited out)
    blocked = set()    # nothing below these comes through from lower layers
    for layer_id, top in reversed(layers):
        if not os.path.isdir(top):
            continue
        new_blocked = set()
        for cur, dirs, files in os.walk(top):
            rel_dir = os.path.relpath(cur, top)
            rel_dir = "" if rel_dir == "." else rel_dir
            keep = []
            for name in dirs + files:
                rel = os.path.join(rel_dir, name)
                full = os.path.join(cur, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if rel in blocked or _hidden(rel, blocked):
                    continue
                if _is_whiteout(st):
                    if rel not in seen:
                        seen.add(rel)
                        new_blocked.add(rel)
                    continue
                if is_dir:
                    keep.append(name)
                    if overlay and _is_opaque(full):
                        new_blocked.add(rel)
                else:
                    new_blocked.add(rel)   # a file hides a lower dir of that name
                if rel in seen:
                    continue
                seen.add(rel)
                yield rel, full, st, layer_id
            dirs[:] = [d for d in dirs if d in keep]
        blocked |= new_blocked


# -- file findings ----------------------------------------------------------

def _file_findings(rel, full, st, layer, read_keys=True):
    path = "/" + rel
    mode = st.st_mode
    perm = stat.S_IMODE(mode)
    out = []
    if stat.S_ISREG(mode):
        ww = bool(perm & 0o002)
        if perm & stat.S_ISUID:
            owner = "root" if st.st_uid == 0 else f"uid {st.st_uid}"
            sev = "HIGH" if ww or perm & 0o020 else ("MEDIUM" if st.st_uid == 0 else "LOW")
            out.append(finding(
                sev, "setuid", f"setuid {owner}, mode {perm:04o}"
                + (", writable by others" if ww or perm & 0o020 else ""),
                f"RUN chmod u-s {path} (or remove it) in the Dockerfile; run containers with "
                "--security-opt no-new-privileges (berth's default) so it cannot raise privileges",
                path, layer))
        if perm & stat.S_ISGID and perm & 0o010:
            sev = "HIGH" if ww else "LOW"
            out.append(finding(
                sev, "setgid", f"setgid gid {st.st_gid}, mode {perm:04o}",
                f"RUN chmod g-s {path} in the Dockerfile", path, layer))
        if ww:
            system = rel.startswith(_SYSTEM_DIRS)
            out.append(finding(
                "HIGH" if system else "MEDIUM", "world-writable",
                f"file writable by every user, mode {perm:04o}"
                + (" (in a system directory)" if system else ""),
                f"RUN chmod o-w {path} in the Dockerfile", path, layer))
        if read_keys and st.st_size <= KEY_FILE_MAX and st.st_size > 0 and (
                _KEY_NAMES.search(os.path.basename(rel)) or rel.startswith(_KEY_DIRS)):
            if _has_private_key(full):
                out.append(finding(
                    "HIGH", "private-key", "a private key is stored in the image "
                    "(anyone who can pull the image has it)",
                    f"remove {path} from every layer (a later RUN rm does not remove it from "
                    "the layer that added it: rebuild, and mount secrets at run time with "
                    "-v or a build secret)", path, layer))
    elif stat.S_ISDIR(mode):
        if perm & 0o002 and not perm & stat.S_ISVTX:
            out.append(finding(
                "MEDIUM", "world-writable-dir",
                f"directory writable by every user without the sticky bit, mode {perm:04o}: "
                "anyone can delete or replace others' files in it",
                f"RUN chmod +t {path} (or chmod o-w {path}) in the Dockerfile", path, layer))
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "character" if stat.S_ISCHR(mode) else "block"
        out.append(finding(
            "MEDIUM", "device", f"{kind} device {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} "
            "in the image (the engine provides /dev)",
            f"remove {path} from the image", path, layer))
    return out


def _has_private_key(full):
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        data = os.read(fd, KEY_FILE_MAX)
    except OSError:
        return False
    finally:
        os.close(fd)
    return bool(_PRIVATE_KEY.search(data))


def scan_tree(layers, overlay=True, read_keys=True):
    """Findings for the files of the merged layers -> (findings, files seen)."""
    out = []
    n = 0
    for rel, full, st, layer in merged_files(layers, overlay):
        n += 1
        out.extend(_file_findings(rel, full, st, layer, read_keys))
    return out, n


# -- config findings ---------------------------------------------------------

def is_root_user(user):
    """Config.User: empty, 0, root, 0:x or root:x run as root."""
    name = (user or "").split(":", 1)[0].strip()
    return name in ("", "0", "root")


def secret_name(name):
    return name.upper() not in _NOT_SECRET and bool(_SECRET_WORDS.search(name))


def mask(value):
    """What may be shown of a secret: its length, never a character of it."""
    return f"<masked, {len(value)} characters>"


def scan_config(config):
    """Findings for an image's config (the image JSON's "config" object:
    User, Env, ExposedPorts, Healthcheck)."""
    config = config or {}
    out = []
    user = config.get("User") or ""
    if is_root_user(user):
        out.append(finding(
            "MEDIUM", "root-user",
            "runs as root (Config.User is " + (repr(user) if user else "empty") + ")",
            "add a user and `USER <name>` in the Dockerfile, or run with --user 1000:1000 "
            "(or --userns-remap on the daemon)"))
    for item in config.get("Env") or []:
        name, eq, value = item.partition("=")
        if eq and value and secret_name(name):
            out.append(finding(
                "HIGH", "secret-env",
                f"environment variable {name}={mask(value)} is stored in the image config "
                "(visible to anyone who can pull or inspect it)",
                f"remove ENV {name} from the Dockerfile; pass it at run time "
                f"(docker run -e {name} or --env-file) or mount it as a secret file"))
    for port in sorted((config.get("ExposedPorts") or {})):
        num, _, proto = port.partition("/")
        if num.isdigit() and 0 < int(num) < 1024:
            out.append(finding(
                "LOW", "privileged-port",
                f"exposes privileged port {port} (needs CAP_NET_BIND_SERVICE or root)",
                f"listen on a port >= 1024 in the image and publish it with -p {num}:<port>"))
    hc = config.get("Healthcheck") or {}
    if not hc.get("Test") or hc.get("Test") == ["NONE"]:
        out.append(finding(
            "INFO", "no-healthcheck", "no HEALTHCHECK instruction",
            "add HEALTHCHECK CMD <probe> to the Dockerfile (or --health-cmd at run time)"))
    return out


# -- the whole image ---------------------------------------------------------

def summarize(findings, files=None, layers=None):
    s = {sev: 0 for sev in SEVERITIES}
    for f in findings:
        s[f["Severity"]] = s.get(f["Severity"], 0) + 1
    if files is not None:
        s["Files"] = files
    if layers is not None:
        s["Layers"] = layers
    return s


def sort_findings(findings):
    return sorted(findings, key=lambda f: (_RANK.get(f["Severity"], 9), f["Kind"],
                                           f.get("Path", "")))


def layer_dirs(store, driver, image_id):
    """[(diff id, unpacked dir)] bottom first; unpacks missing layers."""
    from berth.errors import Conflict
    from berth.engine.storage.layers import ensure_layers
    for attempt in range(3):
        try:
            with store:
                chains = ensure_layers(store, driver, image_id)
            break
        except Conflict:   # a container create unpacked the same layer meanwhile
            if attempt == 2:
                raise
    diff_ids = store.config(image_id)["rootfs"]["diff_ids"]
    return [(d, driver.layer_path(c)) for d, c in zip(diff_ids, chains)]


def scan_image(store, driver, ref, read_keys=True):
    """-> {"Image": id, "RepoTags": [...], "Findings": [...], "Summary": {...}}"""
    image_id = store.resolve(ref)
    cfg = store.config(image_id)
    layers = layer_dirs(store, driver, image_id)
    files, n = scan_tree(layers, overlay=getattr(driver, "name", "overlay") != "vfs",
                         read_keys=read_keys)
    findings = sort_findings(scan_config(cfg.get("config") or {}) + files)
    try:
        from berth.engine.images import names
        tags = [names.parse(t).familiar() for t in store.tags_of(image_id)]
    except Exception:  # noqa: BLE001 - tags are decoration
        tags = []
    return {"Image": image_id, "RepoTags": list(tags or []), "Findings": findings,
            "Summary": summarize(findings, n, len(layers))}


def worst(findings):
    """The highest severity among findings, or None."""
    ranks = [_RANK[f["Severity"]] for f in findings if f["Severity"] in _RANK]
    return SEVERITIES[min(ranks)] if ranks else None
