"""cpuset controller: linux.resources.cpu.cpus and cpu.mems. The file names
are the same on v1 and v2."""
from berth.runtime.cgroups.values import cpu_list, section

CONTROLLER = "cpuset"


def writes(res, v2):
    sec = section(res, "cpu")
    if sec is None:
        return []
    out = []
    mems = cpu_list(sec, "mems", "cpu.mems")
    if mems is not None:
        out.append(("cpuset.mems", mems, "cpu.mems"))
    cpus = cpu_list(sec, "cpus", "cpu.cpus")
    if cpus is not None:
        out.append(("cpuset.cpus", cpus, "cpu.cpus"))
    return out


def inherit(parent_dir, child_dir, read, write):
    """A new v1 cpuset starts with no cpus and no mems, and refuses tasks
    until both are set: copy the parent's into any that are still empty."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if read(f"{child_dir}/{name}"):
            continue
        value = read(f"{parent_dir}/{name}")
        if value:
            write(f"{child_dir}/{name}", value)
