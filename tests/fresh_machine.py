"""Run a command as on a fresh machine: in a private mount namespace where
the given paths do not exist, so whatever the command creates there lands on
a tmpfs that dies with the namespace and the host is not touched.

    python tests/fresh_machine.py --hide /run/netns --hide /var/lib/containers -- CMD...

For each parent directory of a hidden path (/run, /var/lib, /etc) the
parent is replaced by a tmpfs holding bind mounts of every other entry, so
the rest of the host stays visible and writable through them. What cannot
work there: renaming a file over a top-level entry of such a parent (the
entry is a mount point), e.g. useradd rewriting /etc/passwd. Mounts are made
with mount(2), not mount(8): libmount would create /run/mount on the host
before the namespace hides it."""
import argparse
import os
import stat
import sys
import tempfile
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
from berth.sys import libc  # noqa: E402


def _mirror(parent, hidden, stage):
    """Cover parent with a tmpfs that shows every entry but the hidden ones."""
    orig = os.path.join(stage, "orig" + parent.replace("/", "_"))
    os.mkdir(orig)
    libc.mount(parent, orig, None, libc.MS_BIND | libc.MS_REC)
    st = os.stat(parent)
    libc.mount("fresh-machine", parent, "tmpfs", 0,
               f"mode={stat.S_IMODE(st.st_mode):o},uid={st.st_uid},gid={st.st_gid}")
    for name in sorted(os.listdir(orig)):
        if name in hidden:
            continue
        src, dst = os.path.join(orig, name), os.path.join(parent, name)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
            continue
        if os.path.isdir(src):
            os.mkdir(dst)
        else:
            open(dst, "w").close()
        libc.mount(src, dst, None, libc.MS_BIND | libc.MS_REC)
    libc.umount2(orig, libc.MNT_DETACH)
    os.rmdir(orig)


def _detach_mounts_at(paths):
    """Detach the mounts on or under paths (the host's /run/netns bind
    mount): covered by the tmpfs they would still be in mountinfo, and
    mountpoint(1) would take the hidden path for a mount point."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if any(mp == p or mp.startswith(p + "/") for p in paths):
                points.append(mp)
    for mp in sorted(set(points), key=len, reverse=True):
        libc.umount2(mp, libc.MNT_DETACH)


def enter(hidden_paths):
    """Unshare the mount namespace of this (single-threaded) process and
    hide hidden_paths in it."""
    libc.unshare(libc.CLONE_NEWNS)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    hidden_paths = [os.path.normpath(p) for p in hidden_paths]
    _detach_mounts_at(hidden_paths)
    by_parent = defaultdict(set)
    for p in hidden_paths:
        by_parent[os.path.dirname(p)].add(os.path.basename(p))
    stage = tempfile.mkdtemp(prefix="fresh-machine-")
    try:
        for parent, names in sorted(by_parent.items()):
            _mirror(parent, names, stage)
    finally:
        os.rmdir(stage)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hide", action="append", default=[], metavar="PATH",
                    help="a path that must not exist (repeatable)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="the command to run")
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no command given")
    enter(a.hide)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
