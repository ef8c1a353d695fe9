"""Reads and writes of cgroup control files, with errors that name the file
and the value. Everything in cgroups/ goes through here, so a fake tree in
a temporary directory stands in for cgroupfs in the unit tests."""
import os

from berth.errors import SysError

_HINTS = {
    2: "the controller is not mounted, or not enabled for this cgroup",
    16: "the cgroup is busy: a limit below current usage, or a v2 cgroup "
        "that has both processes and child cgroups",
    22: "the kernel rejected the value",
    28: "the v1 cpuset has no cpus or mems",
    1: "not permitted: is the runtime root, and is the cgroup delegated to it?",
    13: "not permitted: is the runtime root, and is the cgroup delegated to it?",
    3: "the process is gone",
}


def write(path, value, field=None):
    """Writes value (str or int) to the control file at path. O_TRUNC keeps
    the fake tree of the unit tests exact; cgroupfs ignores it, as it does
    for a shell's `echo x > file`."""
    data = str(value).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        what = f'cannot write "{value}" to {path}'
        raise SysError(f"{field}: {what}" if field else what, errno=e.errno,
                       hint=_HINTS.get(e.errno)) from None


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode().strip()
    except OSError as e:
        raise SysError(f"cannot read {path}", errno=e.errno) from None


def read_or(path, default=""):
    """For files that vanish with their cgroup: the container is gone."""
    try:
        with open(path, "rb") as f:
            return f.read().decode().strip()
    except (FileNotFoundError, ProcessLookupError):
        return default
    except OSError as e:
        if e.errno == 19:  # ENODEV: the cgroup was removed while open
            return default
        raise SysError(f"cannot read {path}", errno=e.errno) from None


def mkdir(path):
    """True if this call made the directory, False if it was there."""
    try:
        os.mkdir(path, 0o755)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno == 2:
            raise  # the parent vanished: the caller retries
        raise SysError(f"cannot create cgroup {path}", errno=e.errno,
                       hint=_HINTS.get(e.errno)) from None


def subdirs_bottom_up(top):
    """Every directory under top, children before their parents."""
    out = []
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    out.append(e.path)
                    stack.append(e.path)
    out.sort(key=lambda p: p.count("/"), reverse=True)
    return out
