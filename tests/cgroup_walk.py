"""Finding cgroup directories by name across every hierarchy (shared by
the session's leftover check and tests that look for their own cgroups)."""
import os

CGROUP_ROOT = "/sys/fs/cgroup"


def walk_cgroups(match, max_depth=5):
    """Directories under /sys/fs/cgroup/<hierarchy>/ whose name satisfies
    match, at most max_depth levels down (runc nests the v1 memory cgroup
    under this process's own memory cgroup)."""
    found = []
    try:
        hierarchies = os.listdir(CGROUP_ROOT)
    except OSError:
        return found
    for h in hierarchies:
        top = os.path.join(CGROUP_ROOT, h)
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        stack = [(top, 0)]
        while stack:
            d, depth = stack.pop()
            try:
                entries = os.scandir(d)
            except OSError:
                continue
            with entries:
                for e in entries:
                    if not e.is_dir(follow_symlinks=False):
                        continue
                    if match(e.name):
                        found.append(e.path)
                    if depth + 1 < max_depth:
                        stack.append((e.path, depth + 1))
    return found
