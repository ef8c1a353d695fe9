"""Was the container's init OOM-killed? The memory cgroup counts kills
(cgroup v1 memory.oom_control, v2 memory.events: "oom_kill N"); the shim
notes where that cgroup is while the init lives and reads the counter
when it dies, before the runtime's delete removes the cgroup."""
import os

from berth.sys.procfs import cgroups

ROOT = "/sys/fs/cgroup"


def counter_files(pid):
    """Paths of the counters for pid's memory cgroup (v1, v2 or both)."""
    out = []
    for controllers, path in cgroups(pid):
        if "memory" in controllers.split(","):
            out.append(os.path.join(ROOT, "memory", path.lstrip("/"), "memory.oom_control"))
        elif controllers == "":
            for top in (ROOT, os.path.join(ROOT, "unified")):
                p = os.path.join(top, path.lstrip("/"), "memory.events")
                if os.path.exists(p):
                    out.append(p)
                    break
    return out


def kills(files):
    n = 0
    for p in files:
        try:
            with open(p) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        n += int(value)
        except (OSError, ValueError):
            continue
    return n
