"""A small table-driven flag parser with Docker's (pflag's) habits: -abc
combined short booleans, -eVALUE / -e VALUE / --env=VALUE / --env VALUE,
repeated list flags, --flag=false for booleans, `--` ends the flags, and
(for run/exec) the first positional ends the flags.

A spec is a string of whitespace-separated entries: `d/detach` (boolean),
`name=` (one value, the last wins), `e/env=*` (repeatable list). The
destination is the long name with '-' turned into '_' ."""


class UsageError(Exception):
    """Bad flags or arguments; the CLI prints it with a --help hint (exit 125)."""


class Spec:
    def __init__(self, text):
        self.by_flag = {}
        self.dests = {}
        for entry in text.split():
            kind = "bool"
            if entry.endswith("=*"):
                kind, entry = "list", entry[:-2]
            elif entry.endswith("="):
                kind, entry = "value", entry[:-1]
            names = entry.split("/")
            long = names[-1]
            dest = long.replace("-", "_")
            self.dests[dest] = kind
            for n in names:
                self.by_flag[("-" if len(n) == 1 else "--") + n] = (dest, kind)

    def defaults(self):
        return {d: ([] if k == "list" else False if k == "bool" else None) for d, k in self.dests.items()}


_cache = {}


def parse(argv, spec, interspersed=True):
    """Returns (options dict, positional list). `--help`/`-h` -> opts['help']."""
    if isinstance(spec, str):
        spec = _cache.get(spec) or _cache.setdefault(spec, Spec(spec))
    opts = spec.defaults()
    opts["help"] = False
    args = []
    i = 0
    n = len(argv)

    def store(dest, kind, value, flag):
        if kind == "bool":
            v = value.lower() if value is not None else "true"
            if v not in ("true", "false", "1", "0", "t", "f"):
                raise UsageError(f"invalid argument {value!r} for {flag!r} flag: expected true or false")
            opts[dest] = v in ("true", "1", "t")
        elif kind == "list":
            opts[dest].append(value)
        else:
            opts[dest] = value

    while i < n:
        a = argv[i]
        i += 1
        if a == "--":
            args.extend(argv[i:])
            break
        if a == "--help" or (a == "-h" and "-h" not in spec.by_flag):
            opts["help"] = True
            continue
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a.partition("=")
            if name not in spec.by_flag:
                raise UsageError(f"unknown flag: {name}")
            dest, kind = spec.by_flag[name]
            if kind != "bool" and not eq:
                if i >= n:
                    raise UsageError(f"flag needs an argument: {name}")
                value = argv[i]
                i += 1
            store(dest, kind, value if eq or kind != "bool" else None, name)
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                flag = "-" + a[j]
                if flag not in spec.by_flag:
                    raise UsageError(f"unknown shorthand flag: {a[j]!r} in {a}")
                dest, kind = spec.by_flag[flag]
                rest = a[j + 1:]
                if kind == "bool":
                    if rest.startswith("="):
                        store(dest, kind, rest[1:], flag)
                        break
                    store(dest, kind, None, flag)
                    j += 1
                    continue
                if rest:
                    value = rest[1:] if rest.startswith("=") else rest
                else:
                    if i >= n:
                        raise UsageError(f"flag needs an argument: {flag!r} in {a}")
                    value = argv[i]
                    i += 1
                store(dest, kind, value, flag)
                break
        else:
            args.append(a)
            if not interspersed:
                args.extend(argv[i:])
                break
    return opts, args
