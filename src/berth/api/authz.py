"""Authorization policy: which API requests berthd refuses, and for whom.

The policy is a JSON file (default /etc/berth/authz.json, or
--authz-policy); docs/authz.md describes its format. Policy.check(req)
runs after the route lookup and before the handler, and raises Forbidden
(HTTP 403) naming the policy file, the rule and the offending value.

What it looks at:
- method and path of every request (the generic "deny" rules), the path
  both as sent and normalised (repeated slashes collapsed, '.' and '..'
  resolved, trailing slash dropped), so '//images/x' or '/images/x/' do
  not slip past '^/images/';
- the JSON body of exactly three endpoints: POST /containers/create,
  POST /containers/{id}/update and POST /containers/{id}/exec. It reads
  them with req.json(), which keeps the bytes for the handler. It never
  touches any other body (image loads are gigabytes), and reads these
  only when a rule that needs them is on;
- the query of POST /build (networkmode=host).

Keys of the body are matched case-insensitively, as Docker's Go decoder
does, so {"hostconfig": {"privileged": true}} is judged like the
canonical spelling. A field of the wrong type is refused rather than
guessed at (fail closed).
"""
import json
import os
import posixpath
import re
import stat

from berth.api.errors import Forbidden
from berth.errors import ConfigError

NAMESPACES = {
    "pid": "PidMode",
    "ipc": "IpcMode",
    "uts": "UTSMode",
    "network": "NetworkMode",
    "userns": "UsernsMode",
    "cgroup": "CgroupnsMode",
}

# Docker's default capability set: HostConfig.Capabilities (API 1.40+)
# replaces the default set, so only entries beyond it are additions.
DEFAULT_CAPS = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})

BOOL_RULES = ("deny_privileged", "deny_devices", "deny_security_opt_unconfined",
              "deny_exec_privileged", "deny_exec_root")
RULES = BOOL_RULES + ("allowed_bind_paths", "deny_host_namespaces", "allowed_capabilities",
                      "deny")
TOP_FIELDS = ("version", "description", "users") + RULES
USER_FIELDS = ("description", "unrestricted") + RULES
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")

_CREATE = re.compile(r"^/containers/create$")
_UPDATE = re.compile(r"^/containers/[^/]+/update$")
_EXEC = re.compile(r"^/containers/[^/]+/exec$")
_BUILD = re.compile(r"^/build$")
_CAP = re.compile(r"^[A-Z][A-Z0-9_]*$")


def normalize_path(path):
    """'//containers//create/' -> '/containers/create'; '/a/./b/../c' -> '/a/c'."""
    path = re.sub(r"/+", "/", "/" + (path or ""))
    return posixpath.normpath(path) if path != "/" else "/"


def _norm_host_path(p):
    return posixpath.normpath(re.sub(r"/+", "/", p))


def _cap(name):
    n = str(name).strip().upper()
    return n[4:] if n.startswith("CAP_") else n


def load(path, required=False):
    """The policy in path, or None if there is no file there and none was
    asked for. Raises ConfigError naming the file and the field."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"authz policy {path}: no such file",
                              hint="--authz-policy must name an existing JSON file")
        return None
    except OSError as e:
        raise ConfigError(f"authz policy {path}: cannot stat", errno=e.errno)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"authz policy {path}: not a regular file")
    if st.st_mode & 0o022:
        raise ConfigError(f"authz policy {path}: writable by group or others "
                          f"(mode {stat.S_IMODE(st.st_mode):04o})",
                          hint=f"chmod go-w {path}: whoever can edit it can lift every rule")
    if st.st_uid not in (0, os.geteuid()):
        raise ConfigError(f"authz policy {path}: owned by uid {st.st_uid}, not root",
                          hint=f"chown root {path}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"authz policy {path}: cannot read", errno=e.errno)
    except UnicodeDecodeError as e:
        raise ConfigError(f"authz policy {path}: not UTF-8 text: {e}")
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"authz policy {path}: malformed JSON: {e}")
    return Policy.from_dict(doc, path)


class _Rules:
    """One resolved set of rules (the defaults, or a user's with their
    overrides applied)."""

    def __init__(self, values, unrestricted=False):
        self.unrestricted = unrestricted
        self.deny_privileged = values.get("deny_privileged", False)
        self.deny_devices = values.get("deny_devices", False)
        self.deny_security_opt_unconfined = values.get("deny_security_opt_unconfined", False)
        self.deny_exec_privileged = values.get("deny_exec_privileged", False)
        self.deny_exec_root = values.get("deny_exec_root", False)
        self.allowed_bind_paths = values.get("allowed_bind_paths")      # None: any
        self.deny_host_namespaces = values.get("deny_host_namespaces", ())
        self.allowed_capabilities = values.get("allowed_capabilities")  # None: any
        self.deny = values.get("deny", ())

    def reads_create(self):
        return (self.deny_privileged or self.deny_devices or self.deny_security_opt_unconfined
                or self.allowed_bind_paths is not None or bool(self.deny_host_namespaces)
                or self.allowed_capabilities is not None)

    def reads_exec(self):
        return self.deny_exec_privileged or self.deny_exec_root


class Policy:
    def __init__(self, path, defaults, users):
        self.path = path
        self.defaults = defaults     # _Rules
        self.users = users           # {("uid", 0) | ("cn", "name"): _Rules}

    # -- loading ------------------------------------------------------
    @classmethod
    def from_dict(cls, doc, path="<policy>"):
        def bad(field, why, hint=None):
            raise ConfigError(f"authz policy {path}: field {field}: {why}", hint=hint)

        if not isinstance(doc, dict):
            raise ConfigError(f"authz policy {path}: expected a JSON object at the top")
        version = doc.get("version", 1)
        if version != 1 or isinstance(version, bool):
            bad("version", f"unsupported version {version!r}", hint="this berthd reads version 1")
        if "description" in doc and not isinstance(doc["description"], str):
            bad("description", "expected a string")
        top = _parse_rules(doc, "", TOP_FIELDS, bad)
        users = {}
        raw_users = doc.get("users", {})
        if not isinstance(raw_users, dict):
            bad("users", "expected an object of {\"uid:N\" | \"cn:NAME\": {rules}}")
        for key, entry in raw_users.items():
            who = _user_key(key)
            if who is None:
                bad(f"users.{key}", "expected \"uid:<number>\", \"cn:<certificate CN>\", "
                                    "a bare uid number or a bare CN")
            if who in users:
                bad(f"users.{key}", f"names {who[0]} {who[1]} a second time")
            if not isinstance(entry, dict):
                bad(f"users.{key}", "expected an object of rule overrides")
            over = _parse_rules(entry, f"users.{key}.", USER_FIELDS, bad)
            unrestricted = entry.get("unrestricted", False)
            if not isinstance(unrestricted, bool):
                bad(f"users.{key}.unrestricted", "expected true or false")
            if "description" in entry and not isinstance(entry["description"], str):
                bad(f"users.{key}.description", "expected a string")
            users[who] = _Rules({**top, **over}, unrestricted)
        return cls(path, _Rules(top), users)

    # -- checking -----------------------------------------------------
    def rules_for(self, peer):
        """TLS clients are matched by certificate CN only, Unix-socket
        clients by uid only: a certificate whose CN is "0" is not root."""
        if peer is None:
            return self.defaults
        subject = getattr(peer, "cert_subject", None)
        if subject:
            return self.users.get(("cn", subject), self.defaults)
        uid = getattr(peer, "uid", None)
        if uid is not None:
            return self.users.get(("uid", int(uid)), self.defaults)
        return self.defaults

    def check(self, req):
        rules = self.rules_for(getattr(req, "peer", None))
        if rules.unrestricted:
            return
        method = (req.method or "").upper()
        raw = req.path or "/"
        norm = normalize_path(raw)
        paths = (raw,) if norm == raw else (raw, norm)

        for i, (methods, rx, message) in enumerate(rules.deny):
            if methods and method not in methods and not (method == "HEAD" and "GET" in methods):
                continue
            if any(rx.search(p) for p in paths):
                what = message or f"{method} {raw} is not allowed"
                self._deny(f"deny[{i}] ({'|'.join(methods) or '*'} {rx.pattern})", what)

        if method != "POST":
            return

        def hit(rx):
            return any(rx.match(p) for p in paths)

        if hit(_CREATE) and rules.reads_create():
            self._check_create(rules, req.json(default={}))
        elif hit(_UPDATE) and rules.deny_devices:
            self._check_devices(req.json(default={}), "")
        elif hit(_EXEC) and rules.reads_exec():
            self._check_exec(rules, req.json(default={}))
        elif hit(_BUILD) and "network" in rules.deny_host_namespaces:
            query = getattr(req, "query", None) or {}
            for v in query.get("networkmode", ()):
                if str(v).strip().lower() == "host":
                    self._deny("deny_host_namespaces",
                               "build with networkmode=host (the host's network namespace) "
                               "is not allowed")

    def _deny(self, rule, message):
        raise Forbidden(f"authorization denied by policy {self.path}: rule {rule}: {message}")

    def _check_create(self, rules, body):
        for hc in _all(body, "HostConfig"):
            self._check_host_config(rules, _obj(hc, "HostConfig", self._deny))

    def _check_host_config(self, rules, hc):
        if rules.deny_privileged:
            for v in _all(hc, "Privileged"):
                if v:
                    self._deny("deny_privileged", "privileged containers are not allowed")
        for ns in rules.deny_host_namespaces:
            field = NAMESPACES[ns]
            for v in _all(hc, field):
                if isinstance(v, str) and v.strip().lower() == "host":
                    self._deny("deny_host_namespaces",
                               f"HostConfig.{field}=host (the host's {ns} namespace) "
                               "is not allowed")
                elif v is not None and not isinstance(v, str):
                    self._deny("deny_host_namespaces", f"HostConfig.{field} is not a string")
        if rules.allowed_bind_paths is not None:
            self._check_binds(rules.allowed_bind_paths, hc)
        if rules.allowed_capabilities is not None:
            self._check_caps(rules.allowed_capabilities, hc)
        if rules.deny_devices:
            self._check_devices(hc, "HostConfig.")
        if rules.deny_security_opt_unconfined:
            self._check_security_opt(hc)

    def _check_binds(self, allowed, hc):
        def check(source, where):
            if not isinstance(source, str) or not source:
                self._deny("allowed_bind_paths", f"{where}: bind source is not a path")
            if not source.startswith("/"):
                self._deny("allowed_bind_paths",
                           f"{where}: bind source {source!r} is not an absolute path")
            norm = _norm_host_path(source)
            # the kernel follows symlinks when it mounts: judge where the
            # path leads now, too (against where the allowed paths lead)
            real = os.path.realpath(norm)
            real_allowed = allowed + [os.path.realpath(p) for p in allowed]
            for candidate, within in ((norm, allowed), (real, real_allowed)):
                if not any(candidate == p or candidate.startswith(p.rstrip("/") + "/")
                           for p in within):
                    via = "" if candidate == norm else f" (via symlink {norm})"
                    self._deny("allowed_bind_paths",
                               f"bind mount of {candidate}{via} from {where} is outside the "
                               f"allowed paths {', '.join(allowed) or '(none)'}")

        for binds in _all(hc, "Binds"):
            if binds is None:
                continue
            if not isinstance(binds, list):
                self._deny("allowed_bind_paths", "HostConfig.Binds is not a list")
            for b in binds:
                if not isinstance(b, str):
                    self._deny("allowed_bind_paths", "HostConfig.Binds: entry is not a string")
                source = b.split(":", 1)[0]
                # a bare name is a named volume; anything path-like is the host's
                if source.startswith("/") or "/" in source or source.startswith((".", "~")):
                    check(source, "HostConfig.Binds")
        for mounts in _all(hc, "Mounts"):
            if mounts is None:
                continue
            if not isinstance(mounts, list):
                self._deny("allowed_bind_paths", "HostConfig.Mounts is not a list")
            for m in mounts:
                if not isinstance(m, dict):
                    self._deny("allowed_bind_paths", "HostConfig.Mounts: entry is not an object")
                kinds = [k.lower() if isinstance(k, str) else k for k in _all(m, "Type")]
                if kinds and all(k in ("volume", "tmpfs", "npipe", "cluster", "image")
                                 for k in kinds):
                    # the local driver's o=bind device=/path is a bind mount too
                    for vo in _all(m, "VolumeOptions"):
                        for dc in _all(vo, "DriverConfig"):
                            for opts in _all(dc, "Options"):
                                for dev in _all(opts, "device"):
                                    check(dev, "HostConfig.Mounts (volume device option)")
                    continue
                for src in _all(m, "Source") or [None]:
                    check(src, "HostConfig.Mounts")

    def _check_caps(self, allowed, hc):
        everything = "ALL" in allowed
        for field, base in (("CapAdd", frozenset()), ("Capabilities", DEFAULT_CAPS)):
            for caps in _all(hc, field):
                if caps is None:
                    continue
                if not isinstance(caps, list):
                    self._deny("allowed_capabilities", f"HostConfig.{field} is not a list")
                for c in caps:
                    if not isinstance(c, str):
                        self._deny("allowed_capabilities",
                                   f"HostConfig.{field}: entry is not a string")
                    name = _cap(c)
                    if everything or name in base or name in allowed:
                        continue
                    what = ("all capabilities (ALL)" if name == "ALL"
                            else f"capability {name}")
                    self._deny("allowed_capabilities",
                               f"HostConfig.{field}: {what} is not in the allowed list "
                               f"({', '.join(sorted(allowed)) or 'none'})")

    def _check_devices(self, obj, prefix):
        obj = _obj(obj, prefix.rstrip(".") or "body", self._deny)
        for field in ("Devices", "DeviceCgroupRules", "DeviceRequests"):
            for v in _all(obj, field):
                if v:
                    self._deny("deny_devices", f"{prefix}{field}: access to host devices "
                                               "is not allowed")

    def _check_security_opt(self, hc):
        for opts in _all(hc, "SecurityOpt"):
            if opts is None:
                continue
            if not isinstance(opts, list):
                self._deny("deny_security_opt_unconfined", "HostConfig.SecurityOpt is not a list")
            for o in opts:
                if not isinstance(o, str):
                    self._deny("deny_security_opt_unconfined",
                               "HostConfig.SecurityOpt: entry is not a string")
                m = re.match(r"^\s*([^=:]+?)\s*(?:[=:]\s*(.*?))?\s*$", o, re.S)
                key = (m.group(1) if m else o).lower()
                value = ((m.group(2) if m else None) or "").lower()
                weak = ((key in ("seccomp", "apparmor") and value == "unconfined")
                        or (key == "label" and value == "disable")
                        or (key == "no-new-privileges" and value == "false")
                        or (key == "systempaths" and value == "unconfined"))
                if weak:
                    self._deny("deny_security_opt_unconfined",
                               f"security option {o.strip()!r} is not allowed")
        for field in ("MaskedPaths", "ReadonlyPaths"):
            for v in _all(hc, field):
                if v is not None:
                    self._deny("deny_security_opt_unconfined",
                               f"HostConfig.{field} replaces the default masked /proc and /sys "
                               "paths (systempaths=unconfined) and is not allowed")

    def _check_exec(self, rules, body):
        if rules.deny_exec_privileged:
            for v in _all(body, "Privileged"):
                if v:
                    self._deny("deny_exec_privileged", "privileged exec is not allowed")
        if rules.deny_exec_root:
            for v in _all(body, "User"):
                if v is None:
                    continue
                if not isinstance(v, str):
                    self._deny("deny_exec_root", "User is not a string")
                user = v.split(":", 1)[0].strip()
                if user in ("root", "0") or (user.isdigit() and int(user) == 0):
                    self._deny("deny_exec_root", f"exec as user {v!r} (root) is not allowed")


# -- helpers -----------------------------------------------------------

def _all(obj, key):
    """Every value whose key equals key ignoring case (Go's decoder takes
    any of them)."""
    if not isinstance(obj, dict):
        return []
    k = key.lower()
    return [v for name, v in obj.items() if isinstance(name, str) and name.lower() == k]


def _obj(value, where, deny):
    if value is None:
        return {}
    if not isinstance(value, dict):
        deny("policy", f"{where} is not a JSON object")
    return value


def _user_key(key):
    if not isinstance(key, str) or not key:
        return None
    kind, sep, rest = key.partition(":")
    if sep and kind == "uid":
        return ("uid", int(rest)) if rest.isdigit() else None
    if sep and kind == "cn":
        return ("cn", rest) if rest else None
    if key.isdigit():
        return ("uid", int(key))
    return ("cn", key)


def _parse_rules(doc, prefix, known, bad):
    out = {}
    for key in doc:
        if key not in known:
            bad(f"{prefix}{key}", "unknown field",
                hint="known fields: " + ", ".join(k for k in known))
    for key in BOOL_RULES:
        if key in doc:
            if not isinstance(doc[key], bool):
                bad(f"{prefix}{key}", "expected true or false")
            out[key] = doc[key]
    if "allowed_bind_paths" in doc:
        v = doc["allowed_bind_paths"]
        if v is not None:
            if not isinstance(v, list):
                bad(f"{prefix}allowed_bind_paths", "expected a list of absolute host paths or null")
            paths = []
            for i, p in enumerate(v):
                if not isinstance(p, str) or not p.startswith("/"):
                    bad(f"{prefix}allowed_bind_paths[{i}]", f"{p!r} is not an absolute path")
                paths.append(_norm_host_path(p))
            v = paths
        out["allowed_bind_paths"] = v
    if "deny_host_namespaces" in doc:
        v = doc["deny_host_namespaces"]
        if not isinstance(v, list):
            bad(f"{prefix}deny_host_namespaces", "expected a list")
        for i, ns in enumerate(v):
            if ns not in NAMESPACES:
                bad(f"{prefix}deny_host_namespaces[{i}]", f"unknown namespace {ns!r}",
                    hint="one of " + ", ".join(NAMESPACES))
        out["deny_host_namespaces"] = tuple(v)
    if "allowed_capabilities" in doc:
        v = doc["allowed_capabilities"]
        if v is not None:
            if not isinstance(v, list):
                bad(f"{prefix}allowed_capabilities", "expected a list of capability names or null")
            caps = set()
            for i, c in enumerate(v):
                if not isinstance(c, str) or not _CAP.match(_cap(c)):
                    bad(f"{prefix}allowed_capabilities[{i}]", f"{c!r} is not a capability name")
                caps.add(_cap(c))
            v = frozenset(caps)
        out["allowed_capabilities"] = v
    if "deny" in doc:
        v = doc["deny"]
        if not isinstance(v, list):
            bad(f"{prefix}deny", "expected a list of {\"method\": ..., \"path\": regex} objects")
        rules = []
        for i, r in enumerate(v):
            where = f"{prefix}deny[{i}]"
            if not isinstance(r, dict):
                bad(where, "expected an object")
            for k in r:
                if k not in ("method", "path", "message"):
                    bad(f"{where}.{k}", "unknown field", hint="known fields: method, path, message")
            methods = r.get("method")
            if methods is None:
                methods = ()
            elif isinstance(methods, str):
                methods = (methods,)
            elif isinstance(methods, list) and all(isinstance(m, str) for m in methods):
                methods = tuple(methods)
            else:
                bad(f"{where}.method", "expected a method name or a list of them")
            methods = tuple(m.upper() for m in methods)
            for m in methods:
                if m not in METHODS:
                    bad(f"{where}.method", f"unknown method {m!r}", hint=", ".join(METHODS))
            pattern = r.get("path")
            if not isinstance(pattern, str) or not pattern:
                bad(f"{where}.path", "expected a regular expression")
            try:
                rx = re.compile(pattern)
            except re.error as e:
                bad(f"{where}.path", f"invalid regular expression {pattern!r}: {e}")
            message = r.get("message")
            if message is not None and not isinstance(message, str):
                bad(f"{where}.message", "expected a string")
            rules.append((methods, rx, message))
        out["deny"] = tuple(rules)
    return out
