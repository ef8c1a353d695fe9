"""Docker's json-file log driver, as the shim writes it.

One entry per line of output (split after each newline):
  {"log":"hello\\n","stream":"stdout","time":"2026-11-24T17:00:00.123456789Z"}
A partial line is held per stream until its newline, until PARTIAL_MAX
bytes are buffered (then written in PARTIAL_MAX pieces), or until flush().

Rotation follows json-file's max-size/max-file: before an entry is written,
a current file of max_size bytes or more is rotated; max_files counts every
file including the current one (1: the file is truncated, N: LOG.1 ..
LOG.N-1 are kept, LOG.1 the newest)."""
import os
import time

import _json

PARTIAL_MAX = 16 * 1024
_enc = _json.encode_basestring
STREAMS = ("stdout", "stderr")


def rfc3339nano(ns=None):
    """UTC time with nine fraction digits, as Docker writes log times."""
    if ns is None:
        ns = time.time_ns()
    s, n = divmod(ns, 1_000_000_000)
    t = time.gmtime(s)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ" % (t[0], t[1], t[2], t[3], t[4], t[5], n)


def frame(stream, data):
    """Docker's multiplexed-stream frame: stream byte (1 stdout, 2 stderr),
    three zero bytes, big-endian uint32 length, payload."""
    return bytes((1 if stream == "stdout" else 2, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


def entry(stream, chunk, ns=None):
    """One json-file line (bytes, newline-terminated)."""
    text = _enc(bytes(chunk).decode("utf-8", "replace"))
    return (f'{{"log":{text},"stream":"{stream}","time":"{rfc3339nano(ns)}"}}\n').encode()


class JsonLog:
    def __init__(self, path, max_size=0, max_files=1, clock=time.time_ns):
        self.path = path
        self.max_size = max_size or 0
        self.max_files = max(1, max_files or 1)
        self.clock = clock
        self.partial = {s: bytearray() for s in STREAMS}
        self.pending = bytearray()   # entries of one write(), one syscall
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream, data):
        buf = self.partial[stream]
        buf += data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            self._emit(stream, buf[start:nl + 1])
            start = nl + 1
        while len(buf) - start >= PARTIAL_MAX:
            self._emit(stream, buf[start:start + PARTIAL_MAX])
            start += PARTIAL_MAX
        del buf[:start]
        self._write_pending()

    def flush(self):
        """Writes the partial lines held (at exit)."""
        for stream, buf in self.partial.items():
            if buf:
                self._emit(stream, buf)
                buf.clear()
        self._write_pending()

    def _write_pending(self):
        data = memoryview(self.pending)
        try:
            while data:
                data = data[os.write(self.fd, data):]
        finally:
            data.release()
            self.pending.clear()

    def close(self):
        if self.fd is not None:
            self.flush()
            os.close(self.fd)
            self.fd = None

    def _emit(self, stream, chunk):
        line = entry(stream, chunk, self.clock())
        if self.max_size and self.size >= self.max_size:
            self._write_pending()
            self.rotate()
        self.pending += line
        self.size += len(line)

    def rotate(self):
        os.close(self.fd)
        self.fd = None
        if self.max_files > 1:
            for i in range(self.max_files - 1, 1, -1):
                try:
                    os.rename(f"{self.path}.{i - 1}", f"{self.path}.{i}")
                except FileNotFoundError:
                    pass
            os.rename(self.path, f"{self.path}.1")
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC
                          | os.O_CLOEXEC, 0o640)
        self.size = 0
