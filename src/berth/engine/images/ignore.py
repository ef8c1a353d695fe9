""".dockerignore as Docker reads and matches it (moby's dockerignore and
patternmatcher): one pattern a line, `#` lines are comments, `!` makes an
exception, `*` and `?` stay inside a path element, `**` spans any number
of them, a leading `/` is the context's root; a path matches when the
last pattern that matches it (or one of its parent directories) is not an
exception.

    pats = read(open(".dockerignore").read())
    matches("sub/x.log", pats)   # -> True or False"""
import posixpath
import re

_ESCAPED = ".+()|{}$"


def read(text):
    """The patterns of a .dockerignore's text, cleaned as Docker cleans them."""
    out = []
    for i, line in enumerate(text.splitlines()):
        if i == 0:
            line = line.lstrip("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern.lstrip("/") or "/"
        out.append(("!" if invert else "") + pattern)
    return out


def _regex(pattern):
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < len(pattern) and pattern[i] == "*":
                i += 1
                if i < len(pattern) and pattern[i] == "/":
                    i += 1  # **/ is **
                out += ".*" if i >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch in _ESCAPED:
            out += "\\" + ch
        elif ch == "\\":
            out += "\\" + (pattern[i] if i < len(pattern) else "\\")
            i += 1
        else:
            out += ch
    return re.compile(out + "$")


def matches(path, patterns):
    """Whether path (relative to the context, / separated) is excluded."""
    path = posixpath.normpath(path)
    parent = posixpath.dirname(path) or "."
    parent_dirs = parent.split("/")
    matched = False
    for p in patterns:
        exception = p.startswith("!")
        if exception:
            p = p[1:]
        if exception != matched:
            continue  # only an exception can undo a match, only a pattern make one
        try:
            rx = _regex(p)
        except re.error:
            continue  # dockerd refuses such a pattern; here it matches nothing
        hit = bool(rx.match(path))
        dirs = p.split("/")
        if not hit and parent != "." and len(dirs) <= len(parent_dirs):
            hit = bool(rx.match("/".join(parent_dirs[:len(dirs)])))
        if hit:
            matched = not exception
    return matched
