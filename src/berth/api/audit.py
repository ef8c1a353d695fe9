"""The audit log: one JSON line per state-changing API request.

    {"time": "2026-11-24T17:18:20.123456789Z", "who": "uid=1000 gid=1000 pid=4242",
     "uid": 1000, "gid": 1000, "pid": 4242, "cert_subject": null, "address": null,
     "method": "POST", "path": "/containers/create", "query": {"name": "web"},
     "targets": {}, "body": {"Image": "alpine", "Cmd": ["sh"], "privileged": false,
     "binds": ["/srv/data:/data"], "cap_add": [], "env": ["PASSWORD"]},
     "status": 403, "error": "authorization denied by policy ..."}

The body is summarised only when someone (the policy or the handler)
already read it: the log never reads a body itself. Environment values,
build args and registry credentials are never written: they hold
secrets; only the variable names are kept.

The file is created 0600 (parents 0700), opened O_APPEND, written one
whole line per write() under a lock, and rotated at max_bytes into
path.1 .. path.<keep-1> (keep files in all, the current one included).
record() never raises: a failing audit log is reported on stderr and
the request goes on.
"""
import json
import os
import sys
import threading
import time

MAX_BYTES = 10 << 20
KEEP = 3
_MAX_SUMMARY_BODY = 1 << 20      # larger bodies are not parsed for the summary
_MAX_TEXT = 512                  # long strings are cut in the log
_SECRET_QUERY = ("buildargs", "registryconfig", "x-registry-auth", "auth", "password")


def rfc3339nano(ns=None):
    ns = time.time_ns() if ns is None else ns
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


class AuditLog:
    def __init__(self, path, max_bytes=MAX_BYTES, keep=KEEP):
        self.path = path
        self.max_bytes = max_bytes
        self.keep = max(1, int(keep))
        self._lock = threading.Lock()
        self._fd = None
        self._size = 0
        self._complained = False

    # -- the one entry point the dispatcher calls ----------------------
    def record(self, req, status, error=None):
        try:
            line = json.dumps(entry(req, status, error), separators=(",", ":"),
                              default=str, ensure_ascii=False) + "\n"
            self._write(line.encode("utf-8", "replace"))
        except Exception as e:  # noqa: BLE001 - never break the request path
            self._complain(e)

    def close(self):
        with self._lock:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
                self._fd = None

    # -- file handling -------------------------------------------------
    def _open(self):
        _makedirs(os.path.dirname(os.path.abspath(self.path)))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                     | os.O_NOFOLLOW, 0o600)
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o777 != 0o600:
                os.fchmod(fd, 0o600)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._size = st.st_size

    def _rotate(self):
        os.close(self._fd)
        self._fd = None
        for i in range(self.keep - 1, 0, -1):
            src = self.path if i == 1 else f"{self.path}.{i - 1}"
            try:
                os.replace(src, f"{self.path}.{i}")
            except FileNotFoundError:
                pass
        if self.keep == 1:
            os.unlink(self.path)
        self._open()

    def _write(self, data):
        with self._lock:
            if self._fd is None:
                self._open()
            if self._size > 0 and self._size + len(data) > self.max_bytes:
                self._rotate()
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self._size += n
            self._complained = False

    def _complain(self, exc):
        # once per run of failures, not once per request
        if self._complained:
            return
        self._complained = True
        try:
            print(f"berthd: audit log {self.path}: {exc}", file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001
            pass


def _makedirs(path):
    """Like os.makedirs, but every directory it creates is 0700 (makedirs
    gives the intermediate ones the umask's default)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path:
        _makedirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass


# -- what goes into a line ---------------------------------------------

def entry(req, status, error=None):
    peer = getattr(req, "peer", None)
    out = {"time": rfc3339nano()}
    try:
        out["who"] = peer.describe() if peer is not None else None
    except Exception:  # noqa: BLE001
        out["who"] = None
    for k in ("uid", "gid", "pid", "cert_subject", "address"):
        out[k] = getattr(peer, k, None)
    method = getattr(req, "method", None)
    path = getattr(req, "path", None)
    out["method"] = method
    out["path"] = _cut(path)
    out["query"] = _query(getattr(req, "query", None))
    out["targets"] = {k: _cut(v) for k, v in (getattr(req, "params", None) or {}).items()}
    raw = getattr(req, "_body", None)
    out["body"] = summarize(method, path or "", raw) if raw else None
    out["status"] = status
    out["error"] = _cut(error) if error is not None else None
    return out


def _cut(v):
    if isinstance(v, str) and len(v) > _MAX_TEXT:
        return v[:_MAX_TEXT] + "..."
    return v


def _query(query):
    out = {}
    if not query:
        return out
    for k, values in dict(query).items():
        if not isinstance(values, (list, tuple)):
            values = [values]
        if k.lower() in _SECRET_QUERY:
            values = ["<redacted>"] * len(values)
        values = [_cut(v) for v in values]
        out[k] = values[0] if len(values) == 1 else values
    return out


def _env_names(env):
    """["A=1", "B"] -> ["A", "B"]: the values are never logged."""
    if not isinstance(env, list):
        return None
    return [str(e).split("=", 1)[0] for e in env]


def _list(v):
    if v is None:
        return []
    if isinstance(v, list):
        return [_cut(x) if isinstance(x, str) else x for x in v]
    return [_cut(v) if isinstance(v, str) else v]


def summarize(method, path, raw):
    """A short, secret-free digest of a JSON body the request already read."""
    if not raw or len(raw) > _MAX_SUMMARY_BODY:
        return {"bytes": len(raw or b"")}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"bytes": len(raw), "json": False}
    if not isinstance(body, dict):
        return {"bytes": len(raw)}
    p = "/" + "/".join(s for s in path.split("/") if s)
    if method == "POST" and p == "/containers/create":
        hc = body.get("HostConfig") or {}
        if not isinstance(hc, dict):
            hc = {}
        mounts = []
        for m in hc.get("Mounts") or []:
            if isinstance(m, dict):
                mounts.append({k: m.get(k) for k in ("Type", "Source", "Target", "ReadOnly")
                               if k in m})
        out = {
            "Image": _cut(body.get("Image")),
            "Cmd": _list(body.get("Cmd")) if body.get("Cmd") is not None else None,
            "Entrypoint": (_list(body.get("Entrypoint"))
                           if body.get("Entrypoint") is not None else None),
            "User": body.get("User") or None,
            "env": _env_names(body.get("Env")),
            "privileged": bool(hc.get("Privileged")),
            "binds": _list(hc.get("Binds")),
            "mounts": mounts,
            "cap_add": _list(hc.get("CapAdd")),
            "devices": [d.get("PathOnHost") if isinstance(d, dict) else d
                        for d in _list(hc.get("Devices"))],
            "security_opt": [s if not str(s).startswith("seccomp=") or len(str(s)) < 64
                             else "seccomp=<profile>" for s in _list(hc.get("SecurityOpt"))],
            "network_mode": hc.get("NetworkMode") or None,
            "pid_mode": hc.get("PidMode") or None,
        }
        return out
    if method == "POST" and p.startswith("/containers/") and p.endswith("/exec"):
        return {"Cmd": _list(body.get("Cmd")), "User": body.get("User") or None,
                "privileged": bool(body.get("Privileged")),
                "env": _env_names(body.get("Env")), "tty": bool(body.get("Tty"))}
    # anything else: which fields were sent, not what they held
    return {"keys": sorted(str(k) for k in body)[:50]}
