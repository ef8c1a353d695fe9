"""One exception root for berth. Messages are lowercase, name the thing and
the path, keep the errno and give a hint where one exists."""


class BerthError(Exception):
    """Root of every error berth raises on purpose."""

    def __init__(self, message, errno=None, hint=None):
        self.errno = errno
        self.hint = hint
        text = message
        if errno is not None:
            import os
            text = f"{text}: {os.strerror(errno)}"
        if hint:
            text = f"{text} (hint: {hint})"
        super().__init__(text)


class ConfigError(BerthError):
    """config.json (or process.json) is malformed or names something invalid."""


class NotFound(BerthError):
    """A container, file or other named thing does not exist."""


class Conflict(BerthError):
    """The thing exists already, or is in the wrong state for the request."""


class SysError(BerthError):
    """A system call failed; errno is kept."""
