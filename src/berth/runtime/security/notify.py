"""Seccomp user notification: the listener fd of a filter with
SCMP_ACT_NOTIFY rules goes to the agent at linux.seccomp.listenerPath, in
one message with the container's state, as runc sends it (the runtime
spec's ContainerProcessState: the fd is named "seccompFd" in "fds").

The runtime then closes its copy at once: when the agent dies, notified
syscalls fail with ENOSYS instead of blocking."""
import os

from berth.errors import BerthError
from berth.oci import jsonio

SECCOMP_FD_NAME = "seccompFd"
OCI_VERSION = "1.0.2"


def send_listener(seccomp, fd, pid, state):
    """seccomp: the config's linux.seccomp; state: the OCI state object."""
    import socket
    path = seccomp.get("listenerPath") or ""
    msg = {"ociVersion": OCI_VERSION, "fds": [SECCOMP_FD_NAME], "pid": pid,
           "metadata": seccomp.get("listenerMetadata") or "", "state": state}
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        try:
            s.connect(path)
        except OSError as e:
            raise BerthError(f"linux.seccomp.listenerPath {path}: failed to connect with "
                             "seccomp agent", errno=e.errno,
                             hint="is the agent running and listening there?") from None
        try:
            socket.send_fds(s, [jsonio.dumps(msg).encode()], [fd])
        except OSError as e:
            raise BerthError(f"linux.seccomp.listenerPath {path}: cannot send the listener "
                             "to the seccomp agent", errno=e.errno) from None
    finally:
        s.close()
        os.close(fd)
