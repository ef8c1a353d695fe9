"""The peer as the oracle: every scenario of tests/cri runs once with the
`runc` handler and once with `berth`, and berth's result must be runc's."""
import runtime_v1_pb2 as pb
from node import HANDLERS


def both(scenario):
    """scenario(handler) for runc, then berth; asserts that berth's result
    is runc's and returns it (for the test to check it is also right)."""
    got = {h: scenario(h) for h in HANDLERS}
    assert got["berth"] == got["runc"], f"berth: {got['berth']!r}\nrunc:  {got['runc']!r}"
    return got["runc"]


def pid_ns(mode):
    """A pod security context with this pid namespace mode (CONTAINER is
    the kubelet's default, POD its shareProcessNamespace)."""
    return pb.LinuxSandboxSecurityContext(namespace_options=pb.NamespaceOption(pid=mode))
