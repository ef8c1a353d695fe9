"""Docker's .dockerignore rules (engine/images/ignore.py), cases from
Docker's documentation and moby's patternmatcher tests."""
import pytest

from berth.engine.images import ignore

PATTERNS = ignore.read("# comment\n*.log\n**/*.tmp\n!keep.log\n/secret\n docs/** \n"
                       "!docs/README.md\ntemp?\n")


@pytest.mark.parametrize("path, excluded", [
    ("a.log", True), ("sub/a.log", False), ("keep.log", False), ("x.tmp", True),
    ("a/b/c.tmp", True), ("secret", True), ("secret/inner", True), ("sub/secret", False),
    ("docs/a/b.txt", True), ("docs/README.md", False), ("temp1", True), ("temp12", False),
    ("src/main.py", False), ("# comment", False),
])
def test_patterns_as_docker_matches_them(path, excluded):
    assert ignore.matches(path, PATTERNS) is excluded


def test_reading_cleans_patterns():
    assert ignore.read("\ufeff./a/../b\n!/c/\n  \n#x\n") == ["b", "!c"]


def test_a_dir_pattern_excludes_what_is_below():
    assert ignore.matches("node_modules/x/y.js", ignore.read("node_modules"))
    assert not ignore.matches("node_modules/x/y.js", ignore.read("node_modules\n!node_modules"))
