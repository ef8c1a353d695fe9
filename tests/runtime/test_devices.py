"""Device access inside real containers, on both runtimes: a node that
linux.devices creates is usable only when linux.resources.devices allows
it; an explicit deny-all holds for it (runc's dev.bats "device cgroup
deny")."""
import os

import pytest

CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_SETUID", "CAP_SETGID", "CAP_SYSLOG"]
KMSG = {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/kmsg"), reason="needs /dev/kmsg")


def kmsg_bundle(busybox_bundle, rules):
    # CAP_SYSLOG: without it the kernel's own check would refuse the read
    # and hide what the device cgroup decided
    return busybox_bundle(
        args=["sh", "-c", "head -c 1 /dev/kmsg >/dev/null && echo opened"],
        changes={"linux.devices": [KMSG], "linux.resources.devices": rules,
                 **{f"process.capabilities.{k}": CAPS for k in ("bounding", "effective",
                                                                  "permitted")}})


def test_a_device_node_is_no_grant_under_deny_all(runtime, busybox_bundle):
    res = runtime.run_bundle(kmsg_bundle(busybox_bundle, [{"allow": False, "access": "rwm"}]))
    assert "opened" not in res.stdout, res
    assert "Operation not permitted" in res.stderr, res


def test_a_device_node_opens_when_the_rules_allow_it(runtime, busybox_bundle):
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]
    res = runtime.run_bundle(kmsg_bundle(busybox_bundle, rules))
    assert res.returncode == 0 and "opened" in res.stdout, res
