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
        if level == "debug" and not self.debug:
            return
        if not self.log_path:
            if level != "debug" or self.debug:
                os.write(2, f"berth-runtime: {level}: {msg}\n".encode(errors="replace"))
            return
        from berth.oci import jsonio
        from berth.runtime.container import now_rfc3339
        if self.log_format == "json":
            line = jsonio.dumps({"level": level, "msg": msg, "time": now_rfc3339()})
        else:
            line = f'time="{now_rfc3339()}" level={level} msg={jsonio.dumps(msg)}'
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (line + "\n").encode(errors="replace"))
        finally:
            os.close(fd)

    def warn(self, msg):
        self.log("warning", msg)


def monotonic_ms():
    return time.monotonic() * 1000
