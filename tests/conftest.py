"""Session-wide guard: a snapshot of host state taken before the first test,
compared with the state after the last one by tests/test_zz_leftovers.py."""
import glob
import os
import secrets
import shutil
import subprocess

import pytest

from cgroup_walk import walk_cgroups  # noqa: F401 - used below and by tests

# Container ids made in this session carry this token, so leftovers of
# another pytest run on the same machine are not blamed on this one.
SESSION_TOKEN = secrets.token_hex(3)
ID_PREFIX = "berth-test-"
CGROUP_ROOT = "/sys/fs/cgroup"
STATE_GLOBS = ("/run/berth*", "/var/lib/berth*", "/tmp/berth-run-*", "/tmp/berth-rootless-*")
# the host paths Debian's tools make on first use (/run/netns, /run/mount):
# made before the snapshot, as `make deps` does, so a fresh machine's first
# run does not count them as the suite's leftovers
HOST_PATHS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                 "scripts", "host-paths.sh")
# daemons the tests start (dockerd, registries) may drop state elsewhere:
# any new top-level entry of these is a leftover too
WATCHED_DIRS = ("/run", "/var/lib", "/etc")


def _mounts():
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            # mount point, fs type, source: the mount id changes on remount
            sep = fields.index("-")
            out.add(f"{fields[4]} {fields[sep + 1]} {fields[sep + 2]}")
    return out


def _processes():
    out = set()
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if ID_PREFIX in cmd:
            out.add(f"{pid} {cmd}")
    return out


def _state_files():
    out = set()
    for d in WATCHED_DIRS:
        try:
            out |= {os.path.join(d, n) for n in os.listdir(d)}
        except OSError:
            pass
    for pattern in STATE_GLOBS:
        for top in glob.glob(pattern):
            out.add(top)
            for dirpath, dirs, files in os.walk(top):
                for n in dirs + files:
                    out.add(os.path.join(dirpath, n))
    return out


def _cmd_lines(argv):
    if shutil.which(argv[0]) is None:
        return set()
    r = subprocess.run(argv, capture_output=True, text=True)
    return {line.strip() for line in r.stdout.splitlines() if line.strip()}


def _netns():
    out = set()
    if os.path.isdir("/run/netns"):
        out |= {f"/run/netns/{n}" for n in os.listdir("/run/netns")}
    return out


def _veths():
    return {line.split(":")[1].strip().split("@")[0]
            for line in _cmd_lines(["ip", "-o", "link", "show", "type", "veth"])
            if ":" in line}


def _nft_tables():
    return {t for t in _cmd_lines(["nft", "list", "tables"]) if "berth" in t}


def _bridges():
    return {line.split(":")[1].strip().split("@")[0]
            for line in _cmd_lines(["ip", "-o", "link", "show", "type", "bridge"])
            if ":" in line}


def _sysctls():
    out = set()
    for key in ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"):
        try:
            with open(f"/proc/sys/{key}") as f:
                out.add(f"{key}={f.read().strip()}")
        except OSError:
            pass
    return out


def _accounts():
    """The rootless test adds a user and subordinate ranges, then puts the
    files back byte for byte."""
    out = set()
    for path in ("/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                out |= {f"{path}: {line.strip()}" for line in f if line.strip()}
        except OSError:
            pass
    return out


def take_snapshot():
    return {
        "mounts": _mounts(),
        "cgroups": set(walk_cgroups(lambda n: "berth" in n)),
        "processes": _processes(),
        "state files": _state_files(),
        "netns": _netns(),
        "veth": _veths(),
        "nft tables": _nft_tables(),
        "bridges": _bridges(),
        "sysctls": _sysctls(),
        "accounts": _accounts(),
    }


def foreign(entry):
    """True if entry names a container id of another pytest session."""
    i = entry.find(ID_PREFIX)
    while i != -1:
        tail = entry[i + len(ID_PREFIX):]
        if not tail.startswith(SESSION_TOKEN):
            return True
        i = entry.find(ID_PREFIX, i + 1)
    return False


class HostSnapshot:
    def __init__(self):
        self.start = take_snapshot()

    def new_since_start(self):
        """{category: sorted new entries}; entries of other sessions are
        ignored, as is anything that was gone again a moment later."""
        def diff():
            now = take_snapshot()
            return {k: {e for e in now[k] - self.start[k] if not foreign(e)}
                    for k in now}
        first = diff()
        if not any(first.values()):
            return {}
        import time
        time.sleep(1.0)
        second = diff()
        return {k: sorted(first[k] & second[k]) for k in first
                if first[k] & second[k]}


@pytest.fixture(scope="session", autouse=True)
def host_snapshot():
    if os.geteuid() == 0:
        subprocess.run(["sh", HOST_PATHS_SCRIPT], check=True)
    return HostSnapshot()


@pytest.fixture(scope="session")
def session_token():
    return SESSION_TOKEN


def pytest_collection_modifyitems(session, config, items):
    # the leftovers check must see everything the other tests did
    last = [i for i in items if i.nodeid.split("::")[0].endswith("test_zz_leftovers.py")]
    if last:
        items[:] = [i for i in items if i not in last] + last
