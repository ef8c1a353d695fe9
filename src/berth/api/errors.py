"""Exceptions -> HTTP status codes, Docker's way."""
from berth.errors import BerthError, ConfigError, Conflict, NotFound


class HTTPError(BerthError):
    """An error the API layer raises with its own status code."""

    def __init__(self, status, message, hint=None):
        self.status = status
        super().__init__(message, hint=hint)


class BadRequest(HTTPError):
    def __init__(self, message, hint=None):
        super().__init__(400, message, hint)


class Forbidden(HTTPError):
    def __init__(self, message, hint=None):
        super().__init__(403, message, hint)


def status_of(exc):
    if isinstance(exc, HTTPError):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, ConfigError):
        return 400
    name = type(exc).__name__
    if name == "NotModified":
        return 304
    if name == "Untrusted":
        return 403
    if isinstance(exc, BerthError):
        return 500
    return 500
