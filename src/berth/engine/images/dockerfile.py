"""Dockerfile parsing for `POST /build` (the legacy builder). Pure: no
engine, no file system; the builder in build.py applies what this returns.

parse(text) -> [Instruction]: comments (`#` first on a line, also between
continued lines) and blank lines go, lines ending in the escape character
(`\\`, or the one a `# escape=` directive names) are joined, keywords are
case-insensitive. Each Instruction keeps the line it starts on, so every
error names the line and its text.

Variables ($A, ${A}, ${A:-word}, ${A:+word}) are expanded at build time,
as Docker does, by expand()/words() against the ARG and ENV values in
force at that step, only for the instructions Docker expands (not RUN,
CMD, ENTRYPOINT, SHELL: the shell does that). Single quotes stop expansion,
double quotes group words, and quotes are removed."""
import json
import re

from berth.errors import ConfigError

KNOWN = ("FROM", "RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER",
         "LABEL", "EXPOSE", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER",
         "ONBUILD")
# instructions whose arguments Docker expands with ARG/ENV values
EXPANDED = ("FROM", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "LABEL", "EXPOSE",
            "VOLUME", "STOPSIGNAL")
# the flags each instruction takes (--name=value)
FLAGS = {"FROM": ("platform",), "COPY": ("chown", "chmod", "from"),
         "ADD": ("chown", "chmod"),
         "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries")}

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STAGE = re.compile(r"^[a-z][a-z0-9_.-]*$")


class DockerfileError(ConfigError):
    """A Dockerfile the builder cannot take; the message names the line."""

    def __init__(self, line, text, message):
        self.line = line
        self.text = text
        super().__init__(f"Dockerfile line {line}: {message}: {text}" if text
                         else f"Dockerfile line {line}: {message}")


class Instruction:
    def __init__(self, line, cmd, args, original, flags=None):
        self.line = line            # where it starts, from 1
        self.cmd = cmd              # upper-case keyword
        self.args = args            # the text after the keyword and its flags
        self.original = original    # the joined source text, for messages and Step lines
        self.flags = flags or {}
        self.stage = None           # FROM ... AS name: the stage's name (lower case)

    def __repr__(self):
        return f"Instruction({self.line}, {self.cmd!r}, {self.args!r}, flags={self.flags!r})"

    def error(self, message):
        return DockerfileError(self.line, self.original, message)

    def exec_form(self):
        """The JSON array form (a list of strings) or None for the shell form."""
        return json_array(self.args)


def json_array(text):
    text = text.strip()
    if not text.startswith("["):
        return None
    try:
        v = json.loads(text)
    except ValueError:
        return None
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    return None


def _logical_lines(text):
    """-> (escape, [(first line number, joined text)])."""
    lines = text.replace("\r\n", "\n").split("\n")
    escape = "\\"
    start = 0
    # parser directives: only at the very top, before any other line
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        if not m:
            break
        if m.group(1).lower() == "escape":
            if m.group(2) not in ("\\", "`"):
                raise DockerfileError(i + 1, line, "invalid escape token (must be \\ or `)")
            escape = m.group(2)
        start = i + 1
    out = []
    cur, first = None, None
    for i in range(start, len(lines)):
        raw = lines[i]
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # a comment, also between continued lines
        if cur is None:
            if not stripped:
                continue
            cur, first = "", i + 1
        elif not stripped:
            continue  # an empty line inside a continuation
        body = raw.rstrip()
        if body.endswith(escape):
            cur += body[:-1] if cur else body[:-1].lstrip()
            continue
        cur += body if cur else body.lstrip()
        out.append((first, cur.strip()))
        cur = None
    if cur is not None and cur.strip():
        out.append((first, cur.strip()))
    return escape, out


def parse(text):
    """Dockerfile text -> [Instruction]. Raises DockerfileError naming the
    line for an unknown instruction, a missing argument or a bad flag."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise DockerfileError(1, "", "not UTF-8 text") from None
    text = text.lstrip("\ufeff")
    _escape, lines = _logical_lines(text)
    out = []
    for line_no, joined in lines:
        kw, _, rest = joined.partition(" ")
        kw, _, tab_rest = kw.partition("\t")
        rest = (tab_rest + " " + rest) if tab_rest else rest
        cmd = kw.upper()
        if cmd not in KNOWN:
            raise DockerfileError(line_no, joined, f"unknown instruction: {kw}")
        rest = rest.strip()
        flags = {}
        if cmd in FLAGS or cmd == "RUN":
            while rest.startswith("--"):
                word, _, after = rest.partition(" ")
                name, eq, value = word[2:].partition("=")
                if cmd == "RUN" or name not in FLAGS[cmd]:
                    raise DockerfileError(line_no, joined, f"unknown flag: --{name}")
                if not eq:
                    raise DockerfileError(line_no, joined, f"flag --{name} needs a value")
                flags[name] = value
                rest = after.strip()
        if not rest:
            raise DockerfileError(line_no, joined, f"{cmd} requires at least one argument")
        out.append(Instruction(line_no, cmd, rest, joined, flags))
    if not out:
        raise DockerfileError(1, "", "the Dockerfile (or its stdin) is empty")
    first = out[0]
    for ins in out:
        if ins.cmd == "FROM":
            break
        if ins.cmd != "ARG":
            raise ins.error("no FROM before this instruction (only ARG may come first)")
    if first.cmd != "FROM" and not any(i.cmd == "FROM" for i in out):
        raise first.error("the Dockerfile has no FROM")
    seen = {}
    for ins in out:
        if ins.cmd != "FROM":
            continue
        try:
            raw = _raw_words(ins.args)
        except ConfigError as e:
            raise ins.error(str(e)) from None
        if len(raw) == 3 and raw[1].lower() == "as":
            name = raw[2].lower()
            if not _STAGE.match(name):
                raise ins.error(f"invalid name for build stage: {raw[2]!r}, name can't start "
                                "with a number or contain symbols")
            if name in seen:
                raise ins.error(f"duplicate name {raw[2]!r} for build stage (line "
                                f"{seen[name]} names it too)")
            seen[name] = ins.line
            ins.stage = name
        elif len(raw) != 1:
            raise ins.error("FROM takes an image and an optional AS name")
    return out


def stages(instructions):
    """[Instruction] -> [(stage name or None, index of its FROM)], in order."""
    return [(ins.stage, i) for i, ins in enumerate(instructions) if ins.cmd == "FROM"]


def from_image(ins, env):
    """FROM image [AS name] -> the image, expanded with the global ARGs."""
    raw = _raw_words(ins.args)
    return expand(raw[0], env, ins)


# ---------------------------------------------------------------- words

def _expand_var(text, i, env, ins):
    """text[i] == '$' -> (value, next index)."""
    n = len(text)
    if i + 1 >= n:
        return "$", i + 1
    c = text[i + 1]
    if c == "{":
        end = text.find("}", i + 2)
        if end < 0:
            raise _err(ins, f"missing '}}' in {text!r}")
        inner = text[i + 2:end]
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?::([-+])(.*))?$", inner, re.S)
        if not m:
            raise _err(ins, f"bad substitution ${{{inner}}}")
        name, op, word = m.group(1), m.group(2), m.group(3)
        val = env.get(name)
        if op == "-":
            val = val if val else expand(word, env, ins)
        elif op == "+":
            val = expand(word, env, ins) if val else ""
        return val or "", end + 1
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1:])
    if not m:
        return "$", i + 1
    return env.get(m.group(0)) or "", i + 1 + m.end()


def _err(ins, msg):
    return ins.error(msg) if ins is not None else ConfigError(msg)


def _process(text, env, ins, split):
    """The word processor: quotes, backslash escapes and $ expansion (env
    None: no expansion). split: whitespace outside quotes separates words."""
    words, cur, have = [], [], False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace() and split:
            if have:
                words.append("".join(cur))
                cur, have = [], False
            i += 1
            continue
        have = True
        if c == "\\" and i + 1 < n:
            cur.append(text[i + 1])
            i += 2
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise _err(ins, f"unexpected end of statement while looking for matching ' "
                                f"in {text!r}")
            cur.append(text[i + 1:end])
            i = end + 1
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\$':
                    cur.append(text[i + 1])
                    i += 2
                elif text[i] == "$" and env is not None:
                    val, i = _expand_var(text, i, env, ins)
                    cur.append(val)
                else:
                    cur.append(text[i])
                    i += 1
            if i >= n:
                raise _err(ins, f'unexpected end of statement while looking for matching " '
                                f"in {text!r}")
            i += 1
        elif c == "$" and env is not None:
            val, i = _expand_var(text, i, env, ins)
            cur.append(val)
        else:
            cur.append(c)
            i += 1
    if have:
        words.append("".join(cur))
    return words


def expand(text, env, ins=None):
    """One word: variables expanded, quotes and escapes removed."""
    return "".join(_process(text, env, ins, split=False))


def words(text, env, ins=None):
    """Whitespace-separated words, each expanded (env None: not expanded)."""
    return _process(text, env, ins, split=True)


def _raw_words(text):
    """Split on whitespace outside quotes, keeping quotes and escapes."""
    out, cur, quote, i = [], "", None, 0
    while i < len(text):
        c = text[i]
        if quote:
            cur += c
            if c == "\\" and quote == '"' and i + 1 < len(text):
                cur += text[i + 1]
                i += 1
            elif c == quote:
                quote = None
        elif c == "\\" and i + 1 < len(text):
            cur += c + text[i + 1]
            i += 1
        elif c in "'\"":
            quote = c
            cur += c
        elif c.isspace():
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    if quote:
        raise ConfigError(f"unexpected end of statement while looking for matching {quote}")
    if cur:
        out.append(cur)
    return out


def key_values(ins, env, legacy=True):
    """ENV, LABEL, ARG arguments -> [(key, value or None)]. `KEY value`
    (the old one-pair form) when legacy and the first word has no `=`."""
    try:
        raw = _raw_words(ins.args)
    except ConfigError as e:
        raise ins.error(str(e)) from None
    if not raw:
        raise ins.error(f"{ins.cmd} requires at least one argument")
    if legacy and "=" not in raw[0]:
        if len(raw) < 2:
            raise ins.error(f"{ins.cmd} names {raw[0]} but gives it no value")
        key = expand(raw[0], env, ins)
        value = expand(ins.args[len(raw[0]):].strip(), env, ins)
        return [(key, value)]
    out = []
    for w in raw:
        k, eq, v = w.partition("=")
        key = expand(k, env, ins)
        if not key:
            raise ins.error(f"{ins.cmd} names an empty key")
        if not eq:
            if ins.cmd != "ARG":
                raise ins.error(f"{ins.cmd} {w}: expected KEY=value")
            out.append((key, None))
            continue
        out.append((key, expand(v, env, ins)))
    for k, _ in out:
        if ins.cmd in ("ENV", "ARG") and not _NAME.match(k):
            raise ins.error(f"{ins.cmd}: invalid name {k!r}")
    return out


def command(ins, shell):
    """RUN, CMD, ENTRYPOINT -> argv: the exec form as written, the shell
    form as shell + [text] (["/bin/sh", "-c", text] by default)."""
    argv = ins.exec_form()
    if argv is not None:
        return argv
    return list(shell) + [ins.args]


def source_paths(ins, env):
    """COPY and ADD -> (sources, dest), expanded."""
    argv = ins.exec_form()
    parts = [expand(a, env, ins) for a in argv] if argv is not None \
        else words(ins.args, env, ins)
    if len(parts) < 2:
        raise ins.error(f"{ins.cmd} requires at least two arguments: a source and a destination")
    return parts[:-1], parts[-1]


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
         "h": 3600 * 10**9}


def duration_ns(text, ins, flag):
    """Go's duration syntax (30s, 1m30s, 500ms) -> nanoseconds."""
    pos, total = 0, 0
    if not text:
        raise ins.error(f"--{flag}: empty duration")
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * _UNIT[m.group(2)])
        pos = m.end()
    if pos != len(text):
        raise ins.error(f"--{flag}: {text!r} is not a duration such as 30s or 1m30s")
    return total


def healthcheck(ins, shell):
    """HEALTHCHECK NONE | [flags] CMD ... -> the image config's Healthcheck."""
    args = ins.args.strip()
    first, _, rest = args.partition(" ")
    if first.upper() == "NONE":
        if rest.strip() or ins.flags:
            raise ins.error("HEALTHCHECK NONE takes no other arguments")
        return {"Test": ["NONE"]}
    if first.upper() != "CMD" or not rest.strip():
        raise ins.error("HEALTHCHECK: expected CMD <command> or NONE")
    rest = rest.strip()
    argv = json_array(rest)
    test = ["CMD"] + argv if argv is not None else ["CMD-SHELL", rest]
    hc = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        if flag in ins.flags:
            hc[key] = duration_ns(ins.flags[flag], ins, flag)
    if "retries" in ins.flags:
        if not ins.flags["retries"].isdigit():
            raise ins.error("--retries: expected a number")
        hc["Retries"] = int(ins.flags["retries"])
    return hc
