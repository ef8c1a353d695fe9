"""One CRI node (node.py) per test module, and pods that are removed after
each test, also when it fails. (Not one per directory: without an
__init__.py a package-scoped fixture lives to the end of the session, past
tests/test_zz_leftovers.py, which must see the node gone.)"""
import itertools
import os
import shutil
import sys
from pathlib import Path

import grpc
import pytest

HERE = Path(__file__).resolve().parent
GENERATED = HERE.parents[1] / "build" / "cri"
NEEDS = ("containerd", "ctr", "runc", "nsenter", "gcc", "ip")

if not (GENERATED / "runtime_v1_pb2.py").exists():
    raise pytest.UsageError(f"{GENERATED}/runtime_v1_pb2.py is missing: `make build` "
                            "compiles tests/cri/runtime_v1.proto")
sys.path.insert(0, str(GENERATED))


def _missing():
    gone = [t for t in NEEDS if shutil.which(t) is None]
    if not os.access("/usr/lib/cni/bridge", os.X_OK):
        gone.append("/usr/lib/cni/bridge (containernetworking-plugins)")
    return gone


@pytest.fixture(scope="module")
def node(tmp_path_factory, session_token):
    gone = _missing()
    if gone:
        pytest.skip(f"needs {', '.join(gone)}: make deps installs them")
    from node import Node
    n = Node(tmp_path_factory.mktemp("cri-node"), token=session_token)
    try:
        n.start()
        yield n
    finally:
        problems = n.stop()
        assert not problems, "; ".join(problems)


_serial = itertools.count()


@pytest.fixture
def pods(node, tmp_path):
    """pods(handler, **kw) runs a pod sandbox with that runtime handler;
    every pod made is stopped and removed at the end of the test."""
    made = []

    def make(handler, **kw):
        name = f"p{next(_serial)}-{handler}"
        logs = tmp_path / name
        logs.mkdir()
        pod = node.cri.pod(handler, name, logs, node.cgroup_parent, **kw)
        made.append(pod)
        return pod
    yield make
    errors = []
    for pod in made:
        try:
            pod.stop()
            pod.remove()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:  # the test removed it: fine
                errors.append(f"{pod.handler} pod {pod.id[:12]}: {e.details()}")
    assert not errors, "\n".join(errors)
