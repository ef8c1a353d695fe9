"""/etc/hosts of a container: the engine's base lines, then berth's
section with the container's own address and its peers on user networks
(name, aliases, short id). Until an embedded DNS resolver exists, this
file is how containers find each other by name.

Rewritten in place (the bind mount holds the inode, a rename would not
reach the container)."""
import os

MARK = "# berth: network entries (managed, rewritten as containers come and go)"


def base(text):
    """The part of a hosts file that is not berth's network section, without
    the 127.0.1.1 line write_etc puts in for containers with no network."""
    head = text.split(MARK, 1)[0]
    return "".join(line for line in head.splitlines(keepends=True)
                   if not line.startswith("127.0.1.1\t") and not line.startswith("127.0.1.1 "))


def render(base_text, entries):
    """entries: [(ip, [names])] -> the file's text."""
    out = base_text if base_text.endswith("\n") or not base_text else base_text + "\n"
    out += MARK + "\n"
    seen = set()
    for ip, names in entries:
        names = [n for n in dict.fromkeys(names) if n]
        if not names or (ip, tuple(names)) in seen:
            continue
        seen.add((ip, tuple(names)))
        out += f"{ip}\t{' '.join(names)}\n"
    return out


def write_in_place(path, text):
    if not path or not os.path.exists(path):
        return
    with open(path, "r+") as f:
        f.seek(0)
        f.write(text)
        f.truncate()


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
