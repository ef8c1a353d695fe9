"""The protocol between the runtime (parent) and the container's processes.

Two pipes carry newline-terminated text messages `<kind> <payload>`; every
message is one write() below PIPE_BUF, so it arrives whole.

    child (stage 1, in the host pid ns)          parent (create / run / exec)
    -- user namespace -----------------------
    "userns"                                ->   writes /proc/<stage1>/{uid,gid}_map
                                            <-   "ok"
    -- unshares the rest, forks the init ---
    "pid <init pid as the host sees it>"    ->   records the pid; stage 1 exits
    init (stage 2, pid 1 of the container):
    -- mounts before the first cgroup one --     makes the cgroup (create), moves
                                            <-   "cgroup"   the process into it
    -- unshares cgroup ns, the other mounts,
       devices, before pivot_root ----------
    "hooks"                                 ->   runs prestart + createRuntime hooks
                                            <-   "ok"
    -- pivot_root, sysctl, user, caps ------
    with a notify filter, once it is loaded:
    "seccomp <listener fd number>"          ->   takes the fd (pidfd_getfd),
                                            <-   "ok"  sends it to the agent
    "ready"                                 ->   create: writes state, exits;
                                                 run/exec: waits for the process
    any stage: "error <message>"            ->   parent raises it and cleans up
    any stage, with --debug: "log <text>"   ->   parent logs it (the children's
                                                 stderr may be the container's)

After "ready" the init blocks opening exec.fifo for writing until `start`
opens it for reading, then execs the user's program. EOF on either pipe
means the other side died: the child exits, the parent reports an error.
"""
import os

from berth.errors import BerthError


class Channel:
    def __init__(self, rfd, wfd):
        self.rfd = rfd
        self.wfd = wfd
        self._buf = b""

    @classmethod
    def pair(cls):
        """Returns (parent_end, child_end)."""
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        return cls(r1, w2), cls(r2, w1)

    def send(self, kind, payload=""):
        msg = f"{kind} {payload}".encode()
        os.write(self.wfd, msg.replace(b"\n", b" ") + b"\n")

    def recv(self):
        while b"\n" not in self._buf:
            chunk = os.read(self.rfd, 4096)
            if not chunk:
                return None, None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        kind, _, payload = line.decode(errors="replace").partition(" ")
        return kind, payload

    def expect(self, kind):
        got, payload = self.recv()
        if got == kind:
            return payload
        if got == "error":
            raise BerthError(payload)
        raise BerthError(f"container setup: expected {kind}, got {got or 'end of stream'}")

    def close(self):
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass
