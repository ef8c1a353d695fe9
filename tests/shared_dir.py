"""Where ../shared (fixtures) is: beside the repository, as CI lays it out,
or wherever BERTH_SHARED points."""
import os
from pathlib import Path

SHARED = Path(os.environ.get("BERTH_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
FIXTURES = SHARED / "fixtures"
SECCOMP_PROFILE = str(FIXTURES / "docker-default-seccomp.json")
