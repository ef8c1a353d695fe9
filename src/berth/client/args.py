"""A small table-driven flag parser with Docker's (pflag's) habits: -abc
combined short booleans, -eVALUE / -e VALUE / --env=VALUE / --env VALUE,
repeated list flags, --flag=false for booleans, `--` ends the flags, and
(for run/exec) the first positional ends the flags.

A spec is either a string of whitespace-separated entries, or (the
command table's form, berth.client.table) one entry per line followed by
its description. Entries: `d/detach` (boolean), `name=` or `name=TYPE` (one
value, the last wins), `e/env=*` or `e/env=*TYPE` (repeatable list). The
destination is the long name with '-' turned into '_'. Values of the
types in CHECKS must parse, as pflag's typed flags must."""
import re


class UsageError(Exception):
    """Bad flags or arguments; the CLI prints it with a --help hint (exit 125)."""


def _int(v):
    if not re.fullmatch(r"[+-]?\d+", v.strip()):
        raise ValueError("not an integer")


def _uint(v):
    if not re.fullmatch(r"\+?\d+", v.strip()):
        raise ValueError("not a non-negative integer")


def _decimal(v):
    try:
        float(v)
    except ValueError:
        raise ValueError(f"failed to parse {v} as a number") from None


def _bytes(v):
    from berth.client.format import ram_bytes
    if v.strip() != "-1":
        ram_bytes(v)


def _duration(v):
    from berth.client.format import go_duration
    try:
        go_duration(v)
    except ValueError:
        raise ValueError(f'invalid duration "{v}" (e.g. 30s, 1m30s, 500ms)') from None


def _address(version):
    def check(v):
        import ipaddress
        try:
            a = ipaddress.ip_address(v.strip("[]"))
        except ValueError:
            raise ValueError(f"{v} is not an IP address") from None
        if version and a.version != version:
            raise ValueError(f"{v} is not an IPv{version} address")
    return check


def _host_ip(v):
    host, sep, ip = v.partition(":")   # host:ip, the ip may be IPv6 (host:::1)
    if not sep or not host:
        raise ValueError(f'bad format for add-host: "{v}" (expected host:ip)')
    if ip != "host-gateway":
        _address(0)(ip)


CHECKS = {"int": _int, "uint": _uint, "decimal": _decimal, "bytes": _bytes,
          "duration": _duration, "ip": _address(0), "ipv4": _address(4), "ipv6": _address(6),
          "host:ip": _host_ip}


class Flag:
    __slots__ = ("names", "dest", "kind", "type", "help")

    def __init__(self, entry, help_text=""):
        self.kind, self.type = "bool", ""
        if "=*" in entry:
            entry, self.type = entry.split("=*", 1)
            self.kind, self.type = "list", self.type or "list"
        elif "=" in entry:
            entry, self.type = entry.split("=", 1)
            self.kind, self.type = "value", self.type or "string"
        self.names = entry.split("/")
        self.dest = self.names[-1].replace("-", "_")
        self.help = help_text

    def usage(self):
        """pflag's left column: '  -d, --detach' or '      --name string'."""
        short = [n for n in self.names if len(n) == 1]
        long = self.names[-1]
        lead = f"  -{short[0]}, " if short else "      "
        return f"{lead}--{long}" + (f" {self.type}" if self.type else "")


class Spec:
    def __init__(self, text):
        self.by_flag = {}
        self.dests = {}
        self.flags = []
        # the table's specs are one flag a line; the short form, one a word
        lines = text.splitlines() if "\n" in text else text.split()
        for line in lines:
            entry, _, help_text = line.strip().partition(" ")
            if not entry:
                continue
            f = Flag(entry, help_text.strip())
            self.flags.append(f)
            self.dests[f.dest] = f.kind
            for n in f.names:
                self.by_flag[("-" if len(n) == 1 else "--") + n] = (f.dest, f.kind, f.type)

    def defaults(self):
        return {d: ([] if k == "list" else False if k == "bool" else None) for d, k in self.dests.items()}

    def help(self):
        """The Options: block of --help, sorted by long name as docker's."""
        if not self.flags:
            return ""
        flags = sorted(self.flags, key=lambda f: f.names[-1])
        width = max(len(f.usage()) for f in flags)
        return "Options:\n" + "".join(f"{f.usage().ljust(width)}   {f.help}\n" for f in flags)


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

    def store(dest, kind, value, flag, type_=""):
        check = CHECKS.get(type_)
        if check is not None and value is not None:
            try:
                check(value)
            except ValueError as e:
                raise UsageError(f'invalid argument "{value}" for "{flag}" flag: {e}') from None
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
            dest, kind, type_ = spec.by_flag[name]
            if kind != "bool" and not eq:
                if i >= n:
                    raise UsageError(f"flag needs an argument: {name}")
                value = argv[i]
                i += 1
            store(dest, kind, value if eq or kind != "bool" else None, name, type_)
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                flag = "-" + a[j]
                if flag not in spec.by_flag:
                    raise UsageError(f"unknown shorthand flag: {a[j]!r} in {a}")
                dest, kind, type_ = spec.by_flag[flag]
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
                store(dest, kind, value, flag, type_)
                break
        else:
            args.append(a)
            if not interspersed:
                args.extend(argv[i:])
                break
    return opts, args
