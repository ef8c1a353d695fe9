"""What every verb receives instead of global state: the state root and
where diagnostics go (runc's --root, --log, --log-format, --debug)."""
import os
import time


class Context:
    def __init__(self, root="/run/berth-runtime", log=None, log_format="text", debug=False):
        self.root = root
        self.log_path = log
        self.log_format = log_format
        self.debug = debug

    def log(self, level, msg):
        """One line in logrus's shape, as runc writes it (tools parse the
        --log file: containerd takes the json one's "msg"). Without --log,
        debug and warning lines go to stderr in the text shape; errors there
        stay one plain line, "berth-runtime: error: ..."."""
        if level == "debug" and not self.debug:
            return
        if not self.log_path:
            if level == "error":
                line = f"berth-runtime: error: {msg}"
            else:
                line = self._line(level, msg, "text")
            os.write(2, (line + "\n").encode(errors="replace"))
            return
        line = self._line(level, msg, self.log_format)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (line + "\n").encode(errors="replace"))
        finally:
            os.close(fd)

    def open_log(self):
        """Checks --log and --log-format up front, as runc does: a log that
        cannot be written fails the command by name, before any work."""
        from berth.errors import BerthError
        if self.log_format not in ("text", "json"):
            fmt, self.log_format = self.log_format, "text"
            raise BerthError(f"--log-format {fmt!r}: unknown log format", hint="text or json")
        if not self.log_path:
            return
        try:
            os.close(os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                             0o644))
        except OSError as e:
            path, self.log_path = self.log_path, None
            raise BerthError(f"--log {path}: cannot open the log file", errno=e.errno) from None

    @staticmethod
    def _line(level, msg, fmt):
        from berth.oci import jsonio
        from berth.runtime.container import now_rfc3339
        if fmt == "json":
            return jsonio.dumps({"level": level, "msg": msg, "time": now_rfc3339()})
        return f'time="{now_rfc3339()}" level={level} msg={jsonio.dumps(msg)}'

    def warn(self, msg):
        self.log("warning", msg)


def monotonic_ms():
    return time.monotonic() * 1000
