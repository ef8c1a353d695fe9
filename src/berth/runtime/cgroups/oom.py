"""OOM notifications of a container's memory cgroup, for `events`.

v1: an eventfd registered through cgroup.event_control on
memory.oom_control; the kernel bumps it on every OOM in the cgroup, and
once more when the cgroup is removed. cgroup2: memory.events is pollable
(POLLPRI on change) and counts oom_kill."""
import os

from berth.errors import BerthError, SysError
from berth.runtime.cgroups import fs


class OomWatch:
    def __init__(self, cg):
        p = cg.paths
        self.fd = None
        self._ctl = None
        self.v2 = False
        d = p.get("memory")
        if d is None and cg.pure_v2:
            d = p.get("unified")
            self.v2 = True
        self.dir = d
        if d is None:
            return
        if self.v2:
            self.fd = os.open(f"{d}/memory.events", os.O_RDONLY | os.O_CLOEXEC)
            self.count = self._oom_kills()
            return
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        try:
            self._ctl = os.open(f"{d}/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            fs.write(f"{d}/cgroup.event_control", f"{efd} {self._ctl}")
        except (OSError, BerthError) as e:
            os.close(efd)
            if self._ctl is not None:
                os.close(self._ctl)
            raise SysError(f"cannot watch {d}/memory.oom_control for OOM events",
                           errno=getattr(e, "errno", None)) from None
        self.fd = efd

    def fileno(self):
        return self.fd

    def _oom_kills(self):
        os.lseek(self.fd, 0, os.SEEK_SET)
        for line in os.read(self.fd, 4096).decode().splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
        return 0

    def poll_mask(self):
        import select
        return select.POLLPRI | select.POLLERR if self.v2 else select.POLLIN

    def read(self):
        """OOM events since the last call; None once the cgroup is gone."""
        if self.v2:
            try:
                n = self._oom_kills()
            except OSError:
                return None
            new, self.count = n - self.count, n
            return max(new, 0)
        try:
            n = int.from_bytes(os.read(self.fd, 8), "little")
        except BlockingIOError:
            return 0
        if not os.path.exists(f"{self.dir}/memory.oom_control"):
            return None
        return n

    def close(self):
        for fd in (self.fd, self._ctl):
            if fd is not None:
                os.close(fd)
        self.fd = self._ctl = None
