"""The docs a user needs are there, linked from the README, and the
references generated from the code's tables (the CLI's and berthd's
options) are up to date with them."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_references_are_up_to_date():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_docs.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_readme_links_every_doc_and_every_link_resolves():
    readme = (REPO / "README.md").read_text()
    links = set(re.findall(r"\]\((docs/[^)#]+)\)", readme))
    docs = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert docs <= links, f"not linked from the README: {sorted(docs - links)}"
    assert all((REPO / link).is_file() for link in links), links


def test_the_cli_reference_names_every_flag_of_run():
    from berth.client.commands import command_spec
    text = (REPO / "docs" / "cli.md").read_text()
    section = text.split("## berth run\n", 1)[1].split("\n## ", 1)[0]
    for flag in command_spec("run")[2].flags:
        assert f"`--{flag.names[-1]}`" in section, flag.names
