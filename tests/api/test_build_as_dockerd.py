"""The legacy builder (DOCKER_BUILDKIT=0 docker build) on berthd and on a
dockerd of the test's own, the same contexts and flags: a Dockerfile from
outside the context, the CLI's .dockerignore, --add-host, RUN's stderr in
the stream, the history's words for every instruction, the cache (Using
cache, --no-cache, --cache-from after a save and load), the intermediate
images going with the last image made from them, and a commit's Parent."""
import os
import re
import textwrap

import pytest


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")

DOCKERFILE = """\
    FROM alpine
    ARG A=1
    ENV E=2
    LABEL l=v
    COPY . /ctx
    RUN find /ctx | sort; grep myhost /etc/hosts || true
    RUN echo to-stderr >&2
    RUN ["echo", "exec", "form"]
    WORKDIR /w
    USER daemon
    EXPOSE 80
    VOLUME /v
    CMD ["sh"]
    ENTRYPOINT ["/bin/sh", "-c"]
    HEALTHCHECK --interval=5s CMD true
    STOPSIGNAL SIGTERM
    SHELL ["/bin/sh", "-c"]
    """


def _context(tmp):
    ctx, outside = tmp / "ctx", tmp / "df"
    (ctx / "sub" / "deep").mkdir(parents=True)
    outside.mkdir()
    for rel, text in (("a.txt", "a"), ("b.log", "b"), ("sub/c.log", "c"), ("sub/keep.log", "k"),
                      ("sub/deep/d.log", "d"), ("secret", "s"),
                      (".dockerignore", "*.log\n**/*.log\n!sub/keep.log\nsecret\n")):
        (ctx / rel).write_text(text)
    (outside / "Dockerfile").write_text(textwrap.dedent(DOCKERFILE))
    return ctx, outside / "Dockerfile"


def _shown(text):
    """The build's output without what differs by nature: ids, hashes, and
    the container dockerd makes for a step that only changes the config
    (berth makes none: it would be created and removed unused)."""
    text = re.sub(r"(file|dir|multi):[0-9a-f]{64}", r"\1:HASH", text)
    text = re.sub(r"\b[0-9a-f]{12}\b", "ID", text)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(
        ("DEPRECATED", "  ", "Sending build context"))]
    out = []
    for i, ln in enumerate(lines):
        unused = ln == " ---> Running in ID" and i + 1 < len(lines) and \
            lines[i + 1] == "Removing intermediate container ID"
        if unused or (ln == "Removing intermediate container ID" and out and
                      out[-1].startswith("Step ") and lines[i - 1] == " ---> Running in ID"):
            continue
        out.append(ln)
    return out


def builds(docker, tmp):
    ctx, dockerfile = _context(tmp)
    env_build = ("build", "--add-host", "myhost:1.2.3.4", "-f", str(dockerfile))
    seen = {}
    try:
        r = docker(*env_build, "-t", "bt:1", str(ctx))
        seen["first"] = (r.returncode, _shown(r.stdout))
        r = docker(*env_build, "-t", "bt:2", str(ctx))
        seen["again"] = (r.returncode, r.stdout.count("Using cache"))
        (ctx / "Dockerfile").write_text(dockerfile.read_text())
        for tag in ("in:1", "in:2"):
            r = docker("build", "-t", tag, str(ctx))
        seen["inside again"] = (r.returncode, r.stdout.count("Using cache"))
        docker("rmi", "in:1", "in:2")
        r = docker(*env_build, "--no-cache", "-t", "bt:3", str(ctx))
        seen["no cache"] = (r.returncode, r.stdout.count("Using cache"))
        seen["history"] = _shown(docker("history", "--no-trunc", "--format", "{{.CreatedBy}}",
                                        "bt:2").stdout)
        save = tmp / "bt.tar"
        docker("save", "-o", str(save), "bt:2", check=True)
        docker("rmi", "bt:1", "bt:2", "bt:3")
        docker("load", "-q", "-i", str(save), check=True)
        r = docker(*env_build, "--cache-from", "bt:2", "-t", "bt:4", str(ctx))
        seen["cache from"] = (r.returncode, r.stdout.count("Using cache"))
        before = len(docker("images", "-q").stdout.split())
        r = docker("rmi", "bt:2", "bt:4")
        seen["rmi"] = (r.returncode, len(docker("images", "-q").stdout.split()) - before)
        docker("run", "-d", "--name", "cm", "alpine", "sleep", "600", check=True)
        docker("commit", "cm", "cm:1", check=True)
        parent = docker("inspect", "-f", "{{.Parent}}", "cm:1").stdout.strip()
        seen["commit parent"] = parent == docker("inspect", "-f", "{{.Id}}", "alpine").stdout.strip()
    finally:
        docker("rm", "-f", "cm")
        docker("rmi", "-f", "bt:1", "bt:2", "bt:3", "bt:4", "cm:1")
    return seen


def test_builds_as_dockerd(berthd, dockerd, tmp_path):
    berthd.load("alpine-3.20")
    dockerd.load("alpine-3.20")
    (tmp_path / "b").mkdir()
    (tmp_path / "d").mkdir()
    env = {"DOCKER_BUILDKIT": "0"}
    berthd.env.update(env)
    dockerd.env.update(env)
    ours, theirs = builds(berthd.docker, tmp_path / "b"), builds(dockerd.docker, tmp_path / "d")
    assert ours == theirs
    first = ours["first"][1]
    assert "/ctx/sub/keep.log" in first and "/ctx/b.log" not in first
    assert "\x1b[91mto-stderr" in first and "1.2.3.4\tmyhost" in first
    # the CLI names the Dockerfile it appends in .dockerignore, anew each
    # build: COPY . changes, and the steps after it with it (dockerd's too)
    assert ours["again"] == (0, 3) and ours["no cache"] == (0, 0)
    assert ours["inside again"] == (0, 16)
    assert "/bin/sh -c #(nop)  ENV E=2" in ours["history"] and ours["commit parent"]
