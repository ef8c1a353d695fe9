"""Capability table, parsing of process.capabilities, and the order of the
system calls that apply them (faked at the berth.sys seam)."""
import re

import pytest

from berth.errors import ConfigError, SysError
from berth.runtime.security import caps
from berth.sys import caps as captab
from berth.sys import libc


def test_table_matches_kernel_header():
    with open("/usr/include/linux/capability.h") as f:
        header = dict((name, int(nr)) for name, nr in
                      re.findall(r"#define (CAP_[A-Z_]+)\s+(\d+)\s*$", f.read(), re.M)
                      if name not in ("CAP_LAST_CAP",))
    header = {k: v for k, v in header.items() if not k.startswith("CAP_FLAGS")}
    assert captab.NUMBERS == header
    assert captab.NAMES[0] == "CAP_CHOWN"
    assert captab.NAMES[40] == "CAP_CHECKPOINT_RESTORE"


def test_last_cap_reads_proc(tmp_path):
    p = tmp_path / "cap_last_cap"
    p.write_text("37\n")
    assert captab.last_cap(str(p)) == 37
    with open(captab.LAST_CAP_PATH) as f:
        assert captab.last_cap() == int(f.read())


def test_last_cap_without_proc_probes_the_bounding_set(tmp_path, monkeypatch):
    def fake_prctl(option, arg2=0, *rest):
        assert option == captab.PR_CAPBSET_READ
        if arg2 > 38:
            raise SysError("prctl", errno=22)
        return 1
    monkeypatch.setattr(libc, "prctl", fake_prctl)
    assert captab.last_cap(str(tmp_path / "missing")) == 38


def test_names_of_mask():
    assert captab.names(0) == []
    assert captab.names(1 | 1 << 21 | 1 << 40) == ["CAP_CHOWN", "CAP_SYS_ADMIN",
                                                   "CAP_CHECKPOINT_RESTORE"]


DOCKERISH = {
    "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
    "effective": ["CAP_CHOWN", "CAP_KILL"],
    "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
    "inheritable": ["CAP_NET_BIND_SERVICE"],
    "ambient": ["CAP_NET_BIND_SERVICE"],
}


def test_parse_sets():
    cs = caps.parse(DOCKERISH)
    assert cs.bounding == 1 << 0 | 1 << 5 | 1 << 10
    assert cs.effective == 1 << 0 | 1 << 5
    assert cs.permitted == cs.bounding
    assert cs.inheritable == cs.ambient == 1 << 10
    assert cs.unknown == [] and cs.warnings() == []


def test_parse_none_and_missing_sets_are_empty():
    assert caps.parse(None) == caps.CapSets()
    cs = caps.parse({"bounding": ["CAP_CHOWN"]})
    assert (cs.bounding, cs.effective, cs.permitted, cs.inheritable, cs.ambient) == (1, 0, 0, 0, 0)


@pytest.mark.parametrize("value,message", [
    ({"bounding": ["CAP_CHOWN", "CAP_FLY"]},
     "process.capabilities.bounding[1]: unknown capability 'CAP_FLY'"),
    ({"effective": ["chown"]}, "process.capabilities.effective[0]: unknown capability 'chown'"),
    ({"ambient": "CAP_CHOWN"}, "process.capabilities.ambient: must be a list"),
    ({"permitted": [21]}, "process.capabilities.permitted[0]: unknown capability 21"),
    (["CAP_CHOWN"], "process.capabilities: must be an object"),
])
def test_parse_rejects(value, message):
    with pytest.raises(ConfigError) as e:
        caps.parse(value)
    assert message in str(e.value)


def test_parse_uses_callers_field():
    with pytest.raises(ConfigError, match=r"^exec\.capabilities\.bounding\[0\]"):
        caps.parse({"bounding": ["CAP_X"]}, field="exec.capabilities")


def test_caps_the_kernel_lacks_are_left_out(monkeypatch):
    monkeypatch.setattr(captab, "last_cap", lambda: 37)
    cs = caps.parse({"bounding": ["CAP_CHOWN", "CAP_BPF", "CAP_PERFMON"],
                     "effective": ["CAP_BPF"]})
    assert cs.bounding == 1 and cs.effective == 0
    assert cs.unknown == ["CAP_BPF", "CAP_PERFMON"]
    assert "capability CAP_BPF is not known to this kernel; ignored" in cs.warnings()


class FakeKernel:
    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail

    def prctl(self, option, arg2=0, arg3=0, arg4=0, arg5=0):
        self.calls.append(("prctl", option, arg2, arg3))
        if self.fail and self.fail(self.calls[-1]):
            raise SysError("prctl", errno=1)
        return 0

    def capset(self, e, p, i):
        self.calls.append(("capset", e, p, i))
        if self.fail and self.fail(self.calls[-1]):
            raise SysError("capset", errno=1)


@pytest.fixture
def kernel(monkeypatch):
    k = FakeKernel()
    monkeypatch.setattr(libc, "prctl", k.prctl)
    monkeypatch.setattr(libc, "capset", k.capset)
    monkeypatch.setattr(captab, "last_cap", lambda: 40)
    return k


def test_drop_bounding_drops_exactly_the_rest(kernel):
    caps.drop_bounding(caps.parse(DOCKERISH))
    dropped = [c[2] for c in kernel.calls if c[:2] == ("prctl", libc.PR_CAPBSET_DROP)]
    assert dropped == [n for n in range(41) if n not in (0, 5, 10)]
    assert len(kernel.calls) == len(dropped)


def test_drop_bounding_failure_names_the_cap(kernel):
    kernel.fail = lambda call: call[2] == 21
    with pytest.raises(SysError) as e:
        caps.drop_bounding(caps.CapSets())
    assert "drop CAP_SYS_ADMIN from the bounding set" in str(e.value)
    assert e.value.errno == 1 and "CAP_SETPCAP" in e.value.hint


def test_apply_order(kernel):
    cs = caps.parse(DOCKERISH)
    caps.apply(cs)
    assert kernel.calls == [
        ("capset", cs.effective, cs.permitted, cs.inheritable),
        ("prctl", libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL, 0),
        ("prctl", libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, 10),
        ("prctl", libc.PR_SET_KEEPCAPS, 0, 0),
    ]


def test_apply_skips_ambient_the_kernel_would_refuse(kernel):
    cs = caps.parse({"permitted": ["CAP_KILL", "CAP_CHOWN"], "inheritable": ["CAP_CHOWN"],
                     "ambient": ["CAP_KILL", "CAP_CHOWN"]})
    caps.apply(cs)
    raised = [c[3] for c in kernel.calls if c[2] == libc.PR_CAP_AMBIENT_RAISE]
    assert raised == [0]
    assert cs.warnings() == ["ambient capability CAP_KILL is not both permitted and "
                             "inheritable; not raised"]


def test_apply_explains_effective_outside_permitted(kernel):
    kernel.fail = lambda call: call[0] == "capset"
    cs = caps.parse({"effective": ["CAP_KILL"], "permitted": []})
    with pytest.raises(SysError) as e:
        caps.apply(cs)
    assert str(e.value).startswith("set capabilities (capset)")
    assert "CAP_KILL" in e.value.hint
    assert [c[0] for c in kernel.calls] == ["capset"]
