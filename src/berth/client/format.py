"""Output formatting as the docker CLI does it: tables aligned like Go's
tabwriter (minwidth 10, padding 3), `--format` with a Go-template subset
(`{{.A.B}}`, `{{json .}}`, pipes, `range`/`if`/`with`/`else`/`end`,
variables, `table` prefix), and go-units' human sizes and durations."""
import json
import re
import time

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


# -- Go-template subset -------------------------------------------------------

class TemplateError(Exception):
    pass


NO_VALUE = "<no value>"


def go_str(v):
    """Go's fmt %v of decoded JSON values."""
    if v is None:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    return str(v)


def _truth(v):
    return bool(v) and v != NO_VALUE


_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*"|`[^`]*`)|(\|)|(\()|(\))|(:=|=)|(,)|([^\s|(),=]+))')


def _tokens(text):
    out = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"unexpected {text[pos:]!r} in template")
        pos = m.end()
        s, pipe, lp, rp, assign, comma, word = m.groups()
        if s is not None:
            out.append(("str", json.loads(s) if s[0] == '"' else s[1:-1]))
        elif pipe:
            out.append(("|", None))
        elif lp:
            out.append(("(", None))
        elif rp:
            out.append((")", None))
        elif assign:
            out.append((":=", None))
        elif comma:
            out.append((",", None))
        else:
            out.append(("word", word))
    return out


class Row(dict):
    """One line of a listing (ps, images, ...): a struct in docker's
    formatter, not a map, so a field it lacks is an error rather than
    '<no value>', and it has the method `.Label "key"`."""

    def __init__(self, kind, fields, labels=None):
        super().__init__(fields)
        self.kind = kind
        self.labels = labels if isinstance(labels, dict) else {}

    def method(self, name):
        if name == "Label":
            return lambda key: self.labels.get(key, "")
        return None


def _field(v, name):
    if isinstance(v, dict):
        if name in v:
            return v[name]
        low = {k.lower(): k for k in v}  # Docker's structs vs. our dicts
        if name.lower() in low:
            return v[low[name.lower()]]
        if isinstance(v, Row):
            method = v.method(name)
            if method is None:
                raise TemplateError(f"can't evaluate field {name} in type {v.kind}: "
                                    f"it has {', '.join(sorted(v))}")
            return method
        return NO_VALUE
    if v is None or v == NO_VALUE:
        return NO_VALUE
    raise TemplateError(f"can't evaluate field {name} in type {type(v).__name__}")


def _json(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([vsdqfxXt%])")


def _printf(fmt, *args):
    """Go's fmt.Sprintf for the verbs templates use: %v %s %d %q %f %x %t."""
    args = list(args)

    def one(m):
        flags, width, prec, verb = m.groups()
        if verb == "%":
            return "%"
        if not args:
            return f"%!{verb}(MISSING)"
        a = args.pop(0)
        if verb == "q":
            text = json.dumps(go_str(a), ensure_ascii=False)
        elif verb in "dxX":
            try:
                text = format(int(a), {"d": "d", "x": "x", "X": "X"}[verb])
            except (TypeError, ValueError):
                return f"%!{verb}({go_str(a)})"
        elif verb == "f":
            try:
                text = f"{float(a):.{prec or 6}f}"
            except (TypeError, ValueError):
                return f"%!f({go_str(a)})"
        else:
            text = go_str(a)
            if prec and verb == "s":
                text = text[:int(prec)]
        if width:
            text = text.ljust(int(width)) if "-" in flags else text.rjust(int(width))
        return text
    return _VERB.sub(one, fmt)


def _index(v, *keys):
    for k in keys:
        try:
            v = v[int(k) if isinstance(v, list) else k]
        except (KeyError, IndexError, TypeError, ValueError):
            return NO_VALUE
    return v


def _truncate(s, n):
    s = go_str(s)
    return s[:int(n)]


FUNCS = {
    "json": _json,
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    # Go's strings.Title: the first letter of each word up, the rest kept
    "title": lambda s: re.sub(r"(?<![\w'])(\w)", lambda m: m.group(1).upper(), go_str(s)),
    "join": lambda v, sep: sep.join(go_str(x) for x in (v or [])),
    "split": lambda s, sep: go_str(s).split(sep),
    "index": _index,
    "len": lambda v: len(v) if v not in (None, NO_VALUE) else 0,
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "print": lambda *a: "".join(go_str(x) for x in a),
    "printf": _printf,
    "truncate": _truncate,
    "pad": lambda s, a, b: " " * int(a) + go_str(s) + " " * int(b),
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "not": lambda a: not _truth(a),
    "and": lambda *a: next((x for x in a if not _truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truth(x)), a[-1]),
}


class Template:
    """Parsed once, rendered against many values. A field that a value
    lacks prints '<no value>', as Go's templates do for maps."""

    def __init__(self, text, funcs=None):
        self.funcs = dict(FUNCS, **(funcs or {}))
        self.nodes, rest = self._parse(self._lex(text), 0, ())
        if rest is not None:
            raise TemplateError("unexpected {{%s}}" % rest[1])

    @staticmethod
    def _lex(text):
        items = []
        pos = 0
        while True:
            start = text.find("{{", pos)
            if start < 0:
                items.append(("text", text[pos:]))
                return items
            end = text.find("}}", start)
            if end < 0:
                raise TemplateError("unclosed action in template")
            body = text[start + 2:end]
            lead = text[pos:start]
            if body.startswith("-") and body[1:2] in (" ", "\t", "\n"):
                lead, body = lead.rstrip(), body[1:]
            items.append(("text", lead))
            pos = end + 2
            if body.endswith("-") and body[-2:-1] in (" ", "\t", "\n"):
                body = body[:-1]
                rest = text[pos:]
                pos += len(rest) - len(rest.lstrip())
            items.append(("act", body.strip()))

    def _parse(self, items, i, stops):
        nodes = []
        while i < len(items):
            kind, body = items[i]
            i += 1
            if kind == "text":
                if body:
                    nodes.append(("text", body))
                continue
            word = body.split(None, 1)[0] if body else ""
            if word in ("end", "else") and word in stops:
                return (nodes, i, body), None
            if word in ("range", "if", "with"):
                inner, elses, i = self._branch(items, i)
                nodes.append((word, self._pipeline(body[len(word):].strip()), inner, elses))
                continue
            if word == "/*" or body.startswith("/*"):
                continue
            nodes.append(("act", self._pipeline(body)))
        if stops:
            raise TemplateError("unexpected end of template: missing {{end}}")
        return nodes, None

    def _branch(self, items, i):
        (inner, i, stop), _ = self._parse(items, i, ("end", "else"))
        if not stop.startswith("else"):
            return inner, [], i
        rest = stop[4:].strip()
        if rest.startswith("if "):
            sub, sub_else, i = self._branch(items, i)
            return inner, [("if", self._pipeline(rest[3:]), sub, sub_else)], i
        (other, i, _), _ = self._parse(items, i, ("end",))
        return inner, other, i

    def _pipeline(self, text):
        toks = _tokens(text)
        decl = []
        if len(toks) >= 2 and toks[0][0] == "word" and toks[0][1].startswith("$"):
            j = 0
            names = []
            while j < len(toks) and toks[j][0] == "word" and toks[j][1].startswith("$"):
                names.append(toks[j][1])
                j += 1
                if j < len(toks) and toks[j][0] == ",":
                    j += 1
            if j < len(toks) and toks[j][0] == ":=":
                decl, toks = names, toks[j + 1:]
        cmds, cur, depth = [], [], 0
        for t in toks:
            if t[0] == "|" and depth == 0:
                cmds.append(cur)
                cur = []
                continue
            depth += t[0] == "("
            depth -= t[0] == ")"
            cur.append(t)
        cmds.append(cur)
        return decl, [self._cmd(c) for c in cmds]

    def _cmd(self, toks):
        args, stack = [], []
        for t in toks:
            if t[0] == "(":
                stack.append(args)
                args = []
            elif t[0] == ")":
                inner = ("sub", args)
                args = stack.pop()
                args.append(inner)
            else:
                args.append(t)
        if not args:
            raise TemplateError("empty command in template")
        return args

    def render(self, value):
        out = []
        self._run(self.nodes, value, {"$": value}, out)
        return "".join(out)

    def _run(self, nodes, dot, env, out):
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "act":
                v = self._eval_pipe(node[1], dot, env)
                if node[1][0]:
                    continue
                if callable(v):
                    raise TemplateError("wrong number of args for a method: want 1 got 0")
                out.append(NO_VALUE if v is NO_VALUE else go_str(v))
            elif kind == "if":
                v = self._eval_pipe(node[1], dot, env)
                self._run(node[2] if _truth(v) else node[3], dot, env, out)
            elif kind == "with":
                v = self._eval_pipe(node[1], dot, env)
                self._run(node[2], v, env, out) if _truth(v) else self._run(node[3], dot, env, out)
            elif kind == "range":
                decl = node[1][0]
                v = self._eval_pipe((None, node[1][1]), dot, env)
                pairs = (sorted(v.items()) if isinstance(v, dict)
                         else list(enumerate(v)) if isinstance(v, list) else [])
                if not pairs:
                    self._run(node[3], dot, env, out)
                for k, item in pairs:
                    e = dict(env)
                    if len(decl) == 1:
                        e[decl[0]] = item
                    elif len(decl) == 2:
                        e[decl[0]], e[decl[1]] = k, item
                    self._run(node[2], item, e, out)

    def _eval_pipe(self, pipe, dot, env):
        decl, cmds = pipe
        v = None
        first = True
        for cmd in cmds:
            v = self._eval_cmd(cmd, dot, env, None if first else [v])
            first = False
        if decl:
            env[decl[0]] = v
        return v

    def _eval_cmd(self, cmd, dot, env, piped):
        head = cmd[0]
        if head[0] == "word" and head[1].startswith(".") and (len(cmd) > 1 or piped):
            method = self._arg(head, dot, env)   # .Label "key"
            if callable(method):
                args = [self._arg(a, dot, env) for a in cmd[1:]] + (piped or [])
                try:
                    return method(*args)
                except TypeError:
                    raise TemplateError(f"wrong number of args for {head[1][1:]}: want 1 "
                                        f"got {len(args)}") from None
        if head[0] == "word" and head[1] in self.funcs:
            args = [self._arg(a, dot, env) for a in cmd[1:]] + (piped or [])
            try:
                return self.funcs[head[1]](*args)
            except TemplateError:
                raise
            except Exception as e:
                raise TemplateError(f"error calling {head[1]}: {e}") from None
        if head[0] == "word" and re.fullmatch(r"[A-Za-z_]\w*", head[1]) and \
                head[1] not in ("true", "false", "nil"):
            raise TemplateError(f'function "{head[1]}" not defined')
        if len(cmd) > 1 or piped:
            raise TemplateError(f"can't give arguments to non-function {self._show(head)}")
        return self._arg(head, dot, env)

    def _arg(self, tok, dot, env):
        kind, val = tok
        if kind == "str":
            return val
        if kind == "sub":
            return self._eval_pipe(((), [val]), dot, env)
        if val in ("true", "false"):
            return val == "true"
        if val == "nil":
            return None
        if re.fullmatch(r"-?\d+", val):
            return int(val)
        if re.fullmatch(r"-?\d*\.\d+", val):
            return float(val)
        if val.startswith("$"):
            name, _, path = val.partition(".")
            if name not in env:
                raise TemplateError(f"undefined variable: {name}")
            v = env[name]
            return self._path(v, path) if path else v
        if val == ".":
            return dot
        if val.startswith("."):
            return self._path(dot, val[1:])
        if val in self.funcs:
            return self.funcs[val]()
        raise TemplateError(f'function "{val}" not defined')

    @staticmethod
    def _path(v, path):
        for name in path.split("."):
            if name:
                v = _field(v, name)
        return v

    @staticmethod
    def _show(tok):
        return tok[1] if tok[0] != "sub" else "(...)"


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
