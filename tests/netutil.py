"""Small network helpers the tests share (imported as a plain module, like
shared_dir; never through a conftest)."""
import socket


def free_port():
    """A TCP port on 127.0.0.1 nobody holds right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
