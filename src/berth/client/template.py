"""A Go text/template subset, as docker's --format and inspect -f use it:
`{{.A.B}}`, pipes, `range`/`if`/`with`/`else`/`end`, variables, and the
functions people use (json, join, split, upper, lower, title, printf,
index, len, ...). Rows of listings are Row: struct-like, so an unknown
field is an error and `.Label "key"` is a method."""
import json
import re

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
