"""Reading json-file logs (written by the shim): tail, since/until,
timestamps, follow across rotation."""
import json
import os
import time

from berth.engine.containers import stream

_STREAMS = {"stdout": stream.STDOUT, "stderr": stream.STDERR}


def _parse_time(text):
    """RFC3339Nano -> unix ns (the shim writes UTC with a Z)."""
    import calendar
    main, _, frac = text.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    return secs * 10**9 + int((frac + "000000000")[:9] or 0)


def _files(path):
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return list(reversed(rotated)) + [path]


def _lines(path):
    for p in _files(path)[:-1]:
        try:
            with open(p, "rb") as f:
                yield from f
        except OSError:
            continue


def entries(raw_lines, want, since_ns, until_ns):
    for line in raw_lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        s = e.get("stream", "stdout")
        if s not in want:
            continue
        if since_ns or until_ns:
            t = _parse_time(e.get("time", "1970-01-01T00:00:00Z"))
            if since_ns and t < since_ns:
                continue
            if until_ns and t > until_ns:
                continue
        yield e


def render(e, tty, timestamps):
    data = e.get("log", "").encode()
    if timestamps:
        data = e.get("time", "").encode() + b" " + data
    if tty:
        return data
    return stream.frame(_STREAMS.get(e.get("stream"), stream.STDOUT), data)


def read(path, want=("stdout", "stderr"), tail=None, since_ns=0, until_ns=0, tty=False,
         timestamps=False, follow=False, running=lambda: False):
    """Yields rendered chunks; with follow, keeps reading until the
    container has stopped and the file has no more lines."""
    if not os.path.exists(path):
        open(path, "a").close()
    f = open(path, "rb")
    try:
        past = list(_lines(path))
        pos_lines = f.readlines()
        all_lines = past + pos_lines
        if tail is not None and tail >= 0:
            all_lines = all_lines[-tail:] if tail else []
        for e in entries(all_lines, want, since_ns, until_ns):
            yield render(e, tty, timestamps)
        if not follow:
            return
        ino = os.fstat(f.fileno()).st_ino
        partial = b""
        idle_after_stop = 0
        while True:
            chunk = f.readline()
            if chunk:
                if not chunk.endswith(b"\n"):
                    partial += chunk
                    continue
                line, partial = partial + chunk, b""
                for e in entries([line], want, since_ns, until_ns):
                    yield render(e, tty, timestamps)
                continue
            try:
                if os.stat(path).st_ino != ino:   # rotated: carry on in the new file
                    f.close()
                    f = open(path, "rb")
                    ino = os.fstat(f.fileno()).st_ino
                    continue
            except OSError:
                pass
            if until_ns and time.time_ns() > until_ns:
                return
            if not running():
                idle_after_stop += 1
                if idle_after_stop > 2:
                    return
            yield b""   # lets the HTTP layer notice a client that went away
            time.sleep(0.05)
    finally:
        f.close()
