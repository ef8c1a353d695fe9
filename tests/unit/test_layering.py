"""DESIGN.md's dependency direction, checked on every module's imports:
oci <- sys <- runtime <- {cli runtime, shim}; the engine reaches the
runtime only by executing its binary, never by importing it."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "berth"

# package -> the berth packages it may import (itself always allowed)
ALLOWED = {
    "errors": set(),
    "oci": {"errors"},
    "sys": {"errors", "oci"},
    "runtime": {"errors", "oci", "sys"},
    "engine": {"errors", "oci", "sys"},
    "shim": {"errors", "oci", "sys"},
    "client": {"errors"},
    "api": {"errors", "oci", "sys", "engine"},
    "daemon_config": {"errors"},   # berthd's options: flags and daemon.json
    "daemon": {"errors", "oci", "sys", "engine", "api", "daemon_config"},
    "cli": {"errors", "oci", "sys", "runtime", "engine", "api", "shim", "daemon", "client"},
}


def modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        yield (rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__"
               else "berth"), path


def berth_imports(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "berth" and len(parts) > 1:
                yield node.lineno, parts[1]


@pytest.mark.parametrize("package,path", list(modules()), ids=lambda v: str(v).split("src/")[-1])
def test_imports_point_one_way(package, path):
    allowed = ALLOWED.get(package)
    if allowed is None:
        return  # the package root and packages without rules yet
    bad = [f"line {n}: berth.{target}" for n, target in berth_imports(path)
           if target != package and target not in allowed]
    assert not bad, f"{path.relative_to(SRC.parent)} imports against DESIGN's direction: {bad}"


def test_the_rules_see_imports():
    # a rule that can never fire proves nothing: the runtime does import sys
    runtime_create = SRC / "runtime" / "verbs" / "create.py"
    assert "oci" in {t for _, t in berth_imports(runtime_create)}
