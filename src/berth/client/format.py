"""Output formatting as the docker CLI does it: tables aligned like Go's
tabwriter (minwidth 10, padding 3), `--format` ('table', 'table TEMPLATE',
'json' or a Go template, berth.client.template), Go's quoting, and
go-units' human sizes and durations."""
import json
import re
import time

# the Go templates, re-exported: callers and tests know them as format.*
from berth.client.template import NO_VALUE, Row, Template, TemplateError, go_str  # noqa: F401

# -- humanize --------------------------------------------------------------

def _size(n, base, units, fmt):
    n = float(n)
    i = 0
    while n >= base and i < len(units) - 1:
        n /= base
        i += 1
    return fmt % (n, units[i])


def human_size(n, precision=4):
    """go-units HumanSizeWithPrecision: decimal units, e.g. 7.8MB."""
    return _size(n, 1000.0, ["B", "kB", "MB", "GB", "TB", "PB", "EB"], f"%.{precision}g%s")


def bytes_size(n):
    """go-units BytesSize: binary units, e.g. 1.5MiB."""
    return _size(n, 1024.0, ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"], "%.4g%s")


def human_duration(seconds):
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = int(seconds / 3600 + 0.5)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 14:
        return f"{h // 24} days"
    if h < 24 * 60:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(ts, now=None):
    if not ts:
        return "N/A"
    return human_duration((now or time.time()) - ts) + " ago"


def unix_time(value):
    """An RFC 3339 string (or a number) -> seconds since the epoch."""
    if isinstance(value, (int, float)):
        return float(value)
    if not value or value.startswith("0001-01-01"):
        return 0.0
    from datetime import datetime
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", value)
    if not m:
        return 0.0
    base = datetime.fromisoformat(m.group(1) + ((m.group(3) or "Z").replace("Z", "+00:00")))
    return base.timestamp() + float(m.group(2) or 0)


def local_time(ts):
    """Docker's 'created at' layout: 2024-01-02 15:04:05 +0000 UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(ts))


_DUR = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DUR_UNITS = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def go_duration(text):
    """'1m30s' -> nanoseconds (int); ValueError if malformed."""
    t = text.strip()
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    if t == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DUR.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(t) or not t:
        raise ValueError(f"invalid duration {text!r}")
    return sign * int(total)


def ram_bytes(text):
    """Docker's RAMInBytes: '512m' -> 536870912 (binary units, b/k/m/g/t/p)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*", text.lower())
    if not m:
        raise ValueError(f"invalid size: {text!r}")
    return int(float(m.group(1)) * 1024 ** " kmgtp".index(m.group(2) or " "))


def timestamp_arg(value, now=None):
    """--since/--until: a duration before now ('10m'), an RFC 3339 date, or
    unix seconds -> the 'seconds[.nanos]' string the API takes."""
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return value
    try:
        return "%.9f" % ((now or time.time()) - go_duration(value) / 1e9)
    except ValueError:
        pass
    v = value if "T" in value or " " in value else value + "T00:00:00"
    v = v.replace(" ", "T")
    if not re.search(r"(Z|[+-]\d\d:\d\d)$", v):
        from datetime import datetime
        try:
            return "%.9f" % datetime.fromisoformat(v).timestamp()
        except ValueError:
            return value
    ts = unix_time(v)
    return "%.9f" % ts if ts else value


# -- tables and --format ---------------------------------------------------------

def align(rows, minwidth=10, padding=3):
    """Rows of cells -> lines, every column but the last padded as Go's
    tabwriter(minwidth, tabwidth 1, padding, ' ') pads tab-terminated cells."""
    widths = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), max(minwidth, len(cell) + padding))
    return ["".join(c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row))
            for row in rows]


def _unescape(fmt):
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def header_of(action, headers):
    """The header of one `{{...}}` action: the last .Field it names."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"|`[^`]*`', "", action)   # not the fields of a "com.x" argument
    fields = re.findall(r"\.([A-Za-z_][\w.]*)", bare)
    if not fields:
        return action.strip().upper() if action.strip() else ""
    name = fields[-1].split(".")[-1] if "." in fields[-1] else fields[-1]
    return headers.get(fields[-1], headers.get(name, _split_camel(name)))


def _split_camel(name):
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper()


def check(fmt):
    """A --format's syntax, checked before the daemon is asked anything."""
    if fmt and fmt not in ("json", "table"):
        text = _unescape(fmt)
        Template(text[5:] if text.startswith("table") else text)


def render(items, fmt, default_table, headers=None, quiet_field=None, funcs=None, kind=None):
    """items: list of dicts (Rows, or made Rows of `kind`: their unknown
    fields are errors). fmt: None/'' (default table), 'table', 'table
    TEMPLATE', 'json' or a template. Returns the output text."""
    headers = headers or {}
    if kind:
        items = [it if isinstance(it, Row) else Row(kind, it) for it in items]
    if not fmt or fmt == "table":
        fmt = default_table
    if fmt == "json":
        fmt = "{{json .}}"
    fmt = _unescape(fmt)
    if fmt.startswith("table"):
        body = fmt[5:].lstrip(" ")
        tpl = Template(body, funcs)
        head = re.sub(r"\{\{(.*?)\}\}", lambda m: header_of(m.group(1), headers), body)
        lines = [head] + [tpl.render(it) for it in items]
        rows = []
        for text in lines:
            for line in text.split("\n"):
                rows.append(line.split("\t"))
        return "".join(line + "\n" for line in align(rows))
    tpl = Template(fmt, funcs)
    return "".join(tpl.render(it) + "\n" for it in items)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(s):
    """Go's strconv.Quote, as `docker ps` shows COMMAND."""
    out = []
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def ellipsis(s, n):
    return s if len(s) <= n else s[:n - 1] + "…"


def indent_json(obj):
    return json.dumps(obj, indent=4, ensure_ascii=False)
