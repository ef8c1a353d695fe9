"""The README's first session runs as written, on the fixtures, against a
berthd of the test's own: each line of the block between its markers, with
only the socket, the fixtures' path and a free port put in."""
import re
import socket
import subprocess
from pathlib import Path

from shared_dir import SHARED

REPO = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- README example: first session -->", "<!-- end of example -->"
# the reports exit 1 when they find something: that is their answer, not a failure
REPORTS = ("bin/berth audit", "bin/berth image scan")


def readme_lines():
    text = (REPO / "README.md").read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    body = block.split("```", 2)[1]
    return [ln.strip() for ln in body.splitlines() if ln.strip()]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_first_session_runs_as_written(berthd):
    lines = readme_lines()
    assert lines[0].startswith("export DOCKER_HOST=unix:///run/berth/berth.sock")
    env = dict(berthd.env)   # DOCKER_HOST: this test's berthd
    env.pop("BERTH_HOST", None)
    port = str(_free_port())
    out = {}   # each line -> its stdout
    for line in lines[1:]:
        cmd = line.replace("../shared", str(SHARED)).replace("8080", port)
        r = subprocess.run(["bash", "-c", cmd], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=180)
        ok = r.returncode in ((0, 1) if line.startswith(REPORTS) else (0,))
        assert ok and "Traceback" not in r.stderr, \
            f"{line}\n-> {r.returncode}\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}\n{berthd.log()[-2000:]}"
        out[line] = r.stdout

    def of(start):
        return next(v for k, v in out.items() if k.startswith(start))
    assert of("bin/berth run --rm") == "hello from a container\n"
    assert re.fullmatch(r"[0-9a-f]{12}\n?", of("curl")), of("curl")   # the container's hostname
    assert "web" in of("bin/berth ps") and "httpd" in of("bin/berth exec")
    assert of("bin/berth inspect").startswith("running 1")
    assert "Check IDs: CIS Docker Benchmark" in of("bin/berth audit")
