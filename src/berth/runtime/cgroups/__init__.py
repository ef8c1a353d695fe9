"""Container cgroups on v1, v2 and hybrid hosts (see manager.py)."""
from berth.runtime.cgroups.manager import Cgroup, open_cgroup

__all__ = ["Cgroup", "open_cgroup"]
