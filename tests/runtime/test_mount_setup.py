"""Mounts as runc makes them, on both runtimes: a read-only /dev or tmpfs
is still filled (devices, links) and read-only once the container runs."""
import bundle as bundles


def test_read_only_dev_is_filled_then_read_only(parity, busybox_bundle):
    def scenario(rt):
        b = busybox_bundle(args=["sh", "-c", "grep '^tmpfs /dev ' /proc/mounts; "
                                             "ls /dev/null /dev/stdout; touch /dev/x"])
        spec = bundles.read_config(b)
        for m in spec["mounts"]:
            if m["destination"] == "/dev":
                m["options"].append("ro")
        bundles.write_config(b, spec)
        res = rt.run_bundle(b)
        first, *rest = res.stdout.splitlines()
        return (res.returncode, first.split()[3].split(",")[0], rest,
                "Read-only file system" in res.stderr)
    assert parity(scenario) == (1, "ro", ["/dev/null", "/dev/stdout"], True)
