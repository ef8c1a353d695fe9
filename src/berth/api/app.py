"""The dispatcher: route lookup, authorization, error mapping, audit.

Every request passes the authorization policy before its handler runs;
every state-changing request (anything but GET/HEAD) is written to the
audit log with who asked, what, and how it ended."""
import logging
import re
import sys
import traceback

from berth.api.errors import Forbidden, HTTPError, status_of
from berth.api.http import json_response

log = logging.getLogger("berth.api")
API_VERSION = "1.43"
MIN_API_VERSION = "1.24"


class Router:
    def __init__(self):
        self.routes = []

    def add(self, method, pattern, fn):
        """pattern: '/containers/{id}/start'; '{name:.+}' may span slashes
        (image names do)."""
        def group(m):
            name, _, rx = m.group(1).partition(":")
            return f"(?P<{name}>{rx or '[^/]+'})"
        regex = re.compile("^" + re.sub(r"\{([^}]+)\}", group, pattern) + "$")
        self.routes.append((method, regex, fn))

    def find(self, method, path):
        for m, rx, fn in self.routes:
            if m == method or (method == "HEAD" and m == "GET"):
                found = rx.match(path)
                if found:
                    return fn, found.groupdict()
        # dockerd's router answers a path it has under another method the
        # same way as one it has not: clients (and berth's CLI) match on it
        raise HTTPError(404, "page not found")


class App:
    def __init__(self, router, authorize=None, audit=None):
        self.router = router
        self.authorize = authorize
        self.audit = audit

    def __call__(self, req):
        status, error = 500, None
        try:
            if req.version and _older(req.version, MIN_API_VERSION):
                raise HTTPError(400, f"client version {req.version} is too old; "
                                     f"minimum supported API version is {MIN_API_VERSION}")
            fn, params = self.router.find(req.method, req.path)
            req.params = params
            if self.authorize:
                self.authorize(req)
            resp = fn(req)
            status = 101 if req.hijacked else (resp.status if resp else 200)
            return resp
        except Exception as e:  # noqa: BLE001 - every failure becomes an HTTP answer
            status = status_of(e)
            error = str(e)
            # the daemon's log has the failures too, not only the audit log
            log.log(logging.ERROR if status >= 500 else logging.DEBUG if status in (304, 404)
                    else logging.INFO, "%s %s: %d %s", req.method, req.path, status, error)
            if status == 500 and not isinstance(e, HTTPError) and type(e).__module__.split(".")[0] != "berth":
                traceback.print_exc(file=sys.stderr)
            if req.hijacked:
                return None
            return json_response({"message": error}, status)
        finally:
            if self.audit and req.method not in ("GET", "HEAD"):
                try:
                    self.audit(req, status, error)
                except Exception:  # noqa: BLE001 - the audit log must not break the API
                    traceback.print_exc(file=sys.stderr)


def asked_before(req, version):
    """Whether the request speaks an API version older than `version`
    (a request without /vX.Y speaks ours): answers changed between them."""
    return _older(req.version or API_VERSION, version)


def _older(version, minimum):
    try:
        return tuple(map(int, version.split("."))) < tuple(map(int, minimum.split(".")))
    except ValueError:
        raise HTTPError(400, f"invalid API version {version!r}")


__all__ = ["App", "Router", "Forbidden", "API_VERSION", "MIN_API_VERSION", "asked_before"]
