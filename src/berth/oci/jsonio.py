"""JSON through the C accelerator only.

`import json` pulls in `re` and costs ~9 ms, more than the rest of a
`berth-runtime run`; `_json` alone costs under 1 ms. The output matches
json.dumps for the types a runtime spec holds."""
import _json
import errno
import os

from berth.errors import ConfigError, SysError


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = {}

    @staticmethod
    def parse_constant(name):
        raise ValueError(f"constant {name} is not allowed")


_scan = _json.make_scanner(_Ctx)
_WS = " \t\n\r"


def loads(text, what="json"):
    if isinstance(text, (bytes, bytearray)):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{what}: not utf-8: {e}") from None
    i = 0
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    try:
        obj, end = _scan(text, i)
    except StopIteration as e:
        raise ConfigError(f"{what}: invalid json at {_where(text, e.value)}") from None
    except ValueError as e:
        raise ConfigError(f"{what}: invalid json: {e}") from None
    except SystemError:
        # the C scanner builds its error from json.decoder, which it cannot
        # always import by itself; on this rare path the stdlib explains
        import json
        try:
            json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{what}: invalid json: {e}") from None
        raise ConfigError(f"{what}: invalid json") from None
    finally:
        _Ctx.memo.clear()
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise ConfigError(f"{what}: extra data at {_where(text, end)}")
    return obj


def _where(text, pos):
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line} column {col}"


def load_file(path, what=None):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {what or path}", errno=e.errno) from None
    return loads(data, what or path)


def _default(obj):
    raise TypeError(f"cannot encode {type(obj).__name__} as json")


_compact = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None,
                              ":", ",", False, False, True)


def dumps(obj, indent=None):
    if indent is None:
        return "".join(_compact(obj, 0))
    out = []
    _pretty(obj, out, 0, " " * indent)
    return "".join(out)


def _pretty(obj, out, level, unit):
    if isinstance(obj, dict) and obj:
        pad = "\n" + unit * (level + 1)
        out.append("{")
        first = True
        for k, v in obj.items():
            out.append(pad if first else "," + pad)
            first = False
            out.append(_json.encode_basestring_ascii(str(k)) + ": ")
            _pretty(v, out, level + 1, unit)
        out.append("\n" + unit * level + "}")
    elif isinstance(obj, (list, tuple)) and obj:
        pad = "\n" + unit * (level + 1)
        out.append("[")
        for i, v in enumerate(obj):
            out.append(pad if i == 0 else "," + pad)
            _pretty(v, out, level + 1, unit)
        out.append("\n" + unit * level + "]")
    else:
        out.append(dumps(obj))


def write_atomic(path, obj, indent=None, mode=0o600, durable=True):
    """tmp + fsync + rename, so a crash leaves the old file or the new one.
    durable=False skips the fsync for state that means nothing after a
    reboot: the rename alone already survives a killed process."""
    tmp = f"{path}.tmp{os.getpid()}"
    data = dumps(obj, indent).encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as e:
        # the old file stays as it was; no half-written tmp is left beside it
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SysError(f"cannot write {path}", errno=e.errno,
                           hint="the file system is full: free space and retry") from None
        raise


def fsync_dir(path):
    """Makes a rename or unlink in directory path survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
