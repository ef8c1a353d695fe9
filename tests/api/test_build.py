"""POST /build, the legacy builder, driven by the real docker CLI with
DOCKER_BUILDKIT=0 (and by docker-py when Debian's python3-docker is
there). Every build runs offline on a private berthd: FROM takes the
fixture alpine; RUN steps get the default network unless --network says
otherwise (nothing in them sends traffic)."""
import json
import os
import shutil
import subprocess
import textwrap

import pytest

from tarutil import tar_of as _tar

DOCKER = shutil.which("docker")
pytestmark = [pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed"),
              pytest.mark.skipif(os.geteuid() != 0, reason="berthd runs as root")]


def _build(d, ctx, *args):
    env = dict(d.env, DOCKER_BUILDKIT="0")
    return subprocess.run([DOCKER, "build", *args, str(ctx)], env=env, capture_output=True,
                          text=True, timeout=300)


def _context(tmp_path, dockerfile, files=None):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    for name, text in (files or {}).items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return ctx


def _images(d):
    return sorted(i["Id"] for i in d.json("GET", "/images/json?all=1"))


def _containers(d):
    return d.json("GET", "/containers/json?all=1")


def test_build_run_inspect(berthd, tmp_path):
    berthd.load("alpine-3.20")
    ctx = _context(tmp_path, """\
        # a comment
        FROM alpine
        ARG GREETING=hi
        ENV WHO=world \\
            MSG="$GREETING there"
        WORKDIR /app
        COPY hello.txt ./
        COPY sub/ /app/sub/
        RUN echo "built for $WHO" > /app/out.txt && \\
            cat hello.txt >> /app/out.txt && echo step-output
        LABEL org.example.k="v 1"
        EXPOSE 8080
        CMD ["sh", "-c", "cat /app/out.txt; cat sub/deep.txt; pwd; echo $MSG"]
        """, {"hello.txt": "hello file\n", "sub/deep.txt": "deep\n"})
    r = _build(berthd, ctx, "-t", "mine:1", "--build-arg", "GREETING=hey")
    assert r.returncode == 0, (r.stdout, r.stderr, berthd.log())
    assert "Step 1/10 : FROM alpine" in r.stdout
    assert "step-output" in r.stdout
    assert "Successfully built" in r.stdout and "Successfully tagged mine:1" in r.stdout
    assert _containers(berthd) == []
    run = berthd.docker("run", "--rm", "--network", "none", "mine:1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["built for world", "hello file", "deep", "/app",
                                       "hey there"]
    cfg = json.loads(berthd.docker("inspect", "mine:1", check=True).stdout)[0]["Config"]
    assert "WHO=world" in cfg["Env"] and "MSG=hey there" in cfg["Env"]
    assert not any(e.startswith("GREETING=") for e in cfg["Env"])  # ARG is not persisted
    assert cfg["WorkingDir"] == "/app"
    assert cfg["Cmd"] == ["sh", "-c", "cat /app/out.txt; cat sub/deep.txt; pwd; echo $MSG"]
    assert cfg["Labels"]["org.example.k"] == "v 1"
    assert "8080/tcp" in cfg["ExposedPorts"]
    # only the final image is new: the intermediate images are gone
    assert len(_images(berthd)) == 2


def test_failing_run_leaves_nothing(berthd, tmp_path):
    berthd.load("alpine-3.20")
    before = _images(berthd)
    ctx = _context(tmp_path, """\
        FROM alpine
        RUN echo one > /one
        RUN echo about-to-fail && false
        CMD ["true"]
        """)
    r = _build(berthd, ctx, "-t", "broken:1")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "about-to-fail" in out
    assert "The command '/bin/sh -c echo about-to-fail && false' returned a non-zero code: 1" \
        in out
    assert _containers(berthd) == []
    assert _images(berthd) == before
    assert berthd.docker("image", "inspect", "broken:1").returncode != 0
    # the build's temp dir under the data root is gone
    assert not [n for n in os.listdir(berthd.data_root) if n.startswith("build-")]


def test_copy_outside_context_is_refused(berthd, tmp_path):
    berthd.load("alpine-3.20")
    (tmp_path / "outside").write_text("secret\n")
    ctx = _context(tmp_path, """\
        FROM alpine
        COPY ../outside /x
        """)
    r = _build(berthd, ctx, "-t", "esc:1")
    assert r.returncode != 0
    assert "forbidden path outside the build context: ../outside" in r.stdout + r.stderr
    assert _containers(berthd) == []
    assert berthd.docker("image", "inspect", "esc:1").returncode != 0


def test_copy_symlink_out_and_absolute_source_refused(berthd, tmp_path):
    berthd.load("alpine-3.20")
    for df, what in (("FROM alpine\nCOPY link /x\n", "a symlink leads out of it"),
                     ("FROM alpine\nCOPY /etc/passwd /x\n", "forbidden path outside")):
        ctx = tmp_path / f"c{len(what)}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(df)
        os.symlink("/etc/passwd", ctx / "link")
        r = _build(berthd, ctx)
        assert r.returncode != 0 and what in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert _containers(berthd) == []


def test_unknown_instruction_names_the_line(berthd, tmp_path):
    berthd.load("alpine-3.20")
    ctx = _context(tmp_path, """\
        FROM alpine
        RUN true

        FROBNICATE now
        """)
    r = _build(berthd, ctx)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "line 4" in out and "FROBNICATE now" in out, out



def test_raw_api_errors_and_stream(berthd):
    berthd.load("alpine-3.20")
    hdr = {"Content-Type": "application/x-tar"}
    status, _, body = berthd.api("POST", "/build", _tar({"x": b"1"}), hdr)
    assert status == 400 and b"Cannot locate specified Dockerfile" in body
    status, _, body = berthd.api("POST", "/build?pull=1", _tar({"Dockerfile": b"FROM alpine\n"}),
                                 hdr)
    assert status == 400 and b"registry" in body
    status, _, body = berthd.api("POST", "/build?target=nosuch", _tar({
        "Dockerfile": b"FROM alpine AS one\nFROM alpine\n"}), hdr)
    assert status == 400 and b"failed to reach build target nosuch" in body, body
    status, _, body = berthd.api("POST", "/build", _tar({
        "Dockerfile": b"FROM alpine\nADD http://example.invalid/x /x\n"}), hdr)
    lines = [json.loads(x) for x in body.splitlines()]
    assert "ADD of a URL" in lines[-1]["error"]
    status, headers, body = berthd.api(
        "POST", "/build?t=api:1&dockerfile=sub/Df&buildargs=" + '{"N":"7"}'.replace('"', "%22")
        + "&labels=" + '{"l":"x"}'.replace('"', "%22"),
        _tar({"sub/Df": b"FROM alpine\narg N\nrun echo n=$N\nENTRYPOINT [\"echo\"]\n"}), hdr)
    assert status == 200 and headers["content-type"] == "application/json"
    lines = [json.loads(x) for x in body.splitlines()]
    assert {"stream": "Step 1/4 : FROM alpine\n"} in lines
    assert any("n=7" in x.get("stream", "") for x in lines)
    aux = [x["aux"]["ID"] for x in lines if "aux" in x]
    assert len(aux) == 1 and aux[0].startswith("sha256:")
    assert lines[-1] == {"stream": "Successfully tagged api:1\n"}
    img = berthd.json("GET", "/images/api:1/json")
    assert img["Id"] == aux[0]
    assert img["Config"]["Entrypoint"] == ["echo"] and img["Config"]["Labels"]["l"] == "x"
    assert _containers(berthd) == []


def test_scratch_chown_shell_healthcheck_user(berthd):
    berthd.load("alpine-3.20")
    hdr = {"Content-Type": "application/x-tar"}
    df = b"""FROM scratch
COPY --chown=7:8 f /data/f
CMD ["/x"]
"""
    status, _, body = berthd.api("POST", "/build?t=scr:1", _tar({"Dockerfile": df, "f": b"x"}),
                                 hdr)
    assert status == 200 and b"Successfully tagged scr:1" in body, body
    img = berthd.json("GET", "/images/scr:1/json")
    assert img["Config"]["Cmd"] == ["/x"] and len(img["RootFS"]["Layers"]) == 2
    df = b"""FROM alpine
SHELL ["/bin/sh", "-ec"]
RUN adduser -D -u 1234 bob
COPY --chown=bob f /home/bob/f
USER bob
HEALTHCHECK --interval=5s --retries=2 CMD true
VOLUME /v
STOPSIGNAL SIGINT
RUN stat -c '%u:%g %n' /home/bob/f; id -u
"""
    status, _, body = berthd.api("POST", "/build?t=bob:1", _tar({"Dockerfile": df, "f": b"x"}),
                                 hdr)
    assert status == 200, body
    text = "".join(json.loads(x).get("stream", "") for x in body.splitlines())
    assert "1234:1234 /home/bob/f" in text and "\n1234\n" in text, body
    cfg = berthd.json("GET", "/images/bob:1/json")["Config"]
    assert cfg["User"] == "bob" and cfg["Shell"] == ["/bin/sh", "-ec"]
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5 * 10**9,
                                  "Retries": 2}
    assert "/v" in cfg["Volumes"] and cfg["StopSignal"] == "SIGINT"
    assert _containers(berthd) == []


SYSTEM_PYTHON = "/usr/bin/python3"


def _have_dockerpy():
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", "import docker"], capture_output=True,
                          timeout=60).returncode == 0


@pytest.mark.skipif(not _have_dockerpy(), reason="/usr/bin/python3 cannot import docker")
def test_dockerpy_images_build(berthd, tmp_path):
    berthd.load("alpine-3.20")
    ctx = _context(tmp_path, """\
        FROM alpine
        ARG X
        RUN echo "x=$X" > /x
        CMD ["cat", "/x"]
        """)
    code = textwrap.dedent("""\
        import json, sys, docker
        client = docker.from_env(timeout=120)
        img, logs = client.images.build(path=sys.argv[1], tag="py:1", buildargs={"X": "42"})
        out = {"id": img.id, "tags": img.tags,
               "run": client.containers.run("py:1", remove=True, network_mode="none").decode()}
        try:
            client.images.build(path=sys.argv[1], tag="py:2", dockerfile="nope")
        except docker.errors.APIError as e:
            out["missing"] = str(e)
        print(json.dumps(out))
        """)
    env = dict(berthd.env)
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run([SYSTEM_PYTHON, "-c", code, str(ctx)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, (r.stdout, r.stderr, berthd.log())
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["tags"] == ["py:1"] and out["run"] == "x=42\n"
    assert "Cannot locate specified Dockerfile" in out["missing"]


def test_quiet_global_arg_and_unset_arg(berthd):
    berthd.load("alpine-3.20")
    df = b"""ARG BASE=nothing
FROM $BASE
ARG UNSET
ARG BASE
RUN echo "unset=[${UNSET-}] base=$BASE" && env | grep -c '^UNSET=' || true
"""
    status, _, body = berthd.api("POST", "/build?q=1&buildargs=%7B%22BASE%22%3A%22alpine%22%7D",
                                 _tar({"Dockerfile": df}), {"Content-Type": "application/x-tar"})
    assert status == 200, body
    lines = [json.loads(x) for x in body.splitlines()]
    streams = [x["stream"] for x in lines if "stream" in x]
    aux = [x["aux"]["ID"] for x in lines if "aux" in x]
    assert len(aux) == 1 and streams == [aux[0] + "\n"], lines
    # the same steps again: without nocache they would come from the cache, silent
    status, _, body = berthd.api("POST",
                                 "/build?nocache=1&buildargs=%7B%22BASE%22%3A%22alpine%22%7D",
                                 _tar({"Dockerfile": df}), {"Content-Type": "application/x-tar"})
    text = "".join(json.loads(x).get("stream", "") for x in body.splitlines())
    assert "unset=[] base=alpine\n0\n" in text, text


def test_client_leaving_stops_the_build(berthd):
    import time
    berthd.load("alpine-3.20")
    conn = berthd.connect(timeout=30)
    try:
        conn.request("POST", "/build?t=gone:1",
                     body=_tar({"Dockerfile": b"FROM alpine\nRUN echo started; sleep 60\n"}),
                     headers={"Content-Type": "application/x-tar"})
        resp = conn.getresponse()
        seen = b""
        while b'{"stream": "started\\n"}' not in seen:  # the output, not the Step line
            line = resp.fp.readline()
            assert line, seen
            seen += line
    finally:
        conn.close()
    assert _containers(berthd)  # the RUN step's container was running
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
            _containers(berthd) or
            [n for n in os.listdir(berthd.data_root) if n.startswith("build-")]):
        time.sleep(0.2)
    assert _containers(berthd) == []
    assert berthd.docker("image", "inspect", "gone:1").returncode != 0
    assert not [n for n in os.listdir(berthd.data_root) if n.startswith("build-")]


def test_run_steps_get_the_network_asked_for(berthd, tmp_path):
    berthd.load("alpine-3.20")
    ctx = _context(tmp_path, """\
        FROM alpine
        RUN ls /sys/class/net | sort | tr '\\n' ' ' > /nets
        CMD ["cat", "/nets"]
        """)
    r = _build(berthd, ctx, "-t", "net:default")
    assert r.returncode == 0, r.stderr
    # the network is no part of the cache key (as with dockerd): --no-cache
    r = _build(berthd, ctx, "--network", "none", "--no-cache", "-t", "net:none")
    assert r.returncode == 0, r.stderr
    seen = {tag: berthd.docker("run", "--rm", "--network", "none", f"net:{tag}",
                               check=True).stdout.split()
            for tag in ("default", "none")}
    assert seen["default"] == ["eth0", "lo"] and seen["none"] == ["lo"], seen


def test_multi_stage_copy_from_and_target(berthd, tmp_path):
    berthd.load("alpine-3.20")
    before = _images(berthd)
    ctx = _context(tmp_path, """\
        ARG BASE=alpine
        FROM $BASE AS builder
        ARG MSG=made-in-builder
        RUN mkdir -p /out && echo "$MSG" > /out/result.txt && ln -s /etc/passwd /out/link
        ENV ONLY_IN_BUILDER=1
        FROM ${BASE}
        COPY --from=builder /out/result.txt /app/result.txt
        COPY --from=0 --chown=7:8 /out/ /copied/
        CMD cat /app/result.txt; stat -c '%u:%g' /copied/result.txt; \\
            echo env=$ONLY_IN_BUILDER; readlink /copied/link
        """)
    r = _build(berthd, ctx, "-t", "multi:1")
    assert r.returncode == 0, (r.stdout, r.stderr, berthd.log())
    assert "Step 6/9 : FROM ${BASE}" in r.stdout
    run = berthd.docker("run", "--rm", "--network", "none", "multi:1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["made-in-builder", "7:8", "env=", "/etc/passwd"]
    assert _containers(berthd) == []
    # only the final image stays, besides alpine: the builder stage's images are gone
    after = _images(berthd)
    assert len(after) == len(before) + 1 == 2
    final = json.loads(berthd.docker("inspect", "multi:1", check=True).stdout)[0]
    assert not any(e.startswith("ONLY_IN_BUILDER") for e in final["Config"]["Env"])

    # --target builder: stage 1 only
    r = _build(berthd, ctx, "--target", "builder", "-t", "multi:builder")
    assert r.returncode == 0, (r.stdout, r.stderr, berthd.log())
    assert "Step 5/5" in r.stdout and "Step 6/" not in r.stdout
    run = berthd.docker("run", "--rm", "--network", "none", "multi:builder", "sh", "-c",
                        "cat /out/result.txt; echo $ONLY_IN_BUILDER")
    assert run.stdout.splitlines() == ["made-in-builder", "1"], run.stderr
    assert len(_images(berthd)) == 3
    assert _containers(berthd) == []


def test_copy_from_unknown_stage_names_the_line(berthd, tmp_path):
    berthd.load("alpine-3.20")
    before = _images(berthd)
    ctx = _context(tmp_path, """\
        FROM alpine AS builder
        RUN echo x > /x
        FROM alpine
        COPY --from=nosuch /x /x
        """)
    r = _build(berthd, ctx, "-t", "nosuch:1")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "line 4" in out and "COPY --from=nosuch /x /x" in out and "nosuch" in out, out
    assert _containers(berthd) == []
    assert _images(berthd) == before
    assert berthd.docker("image", "inspect", "nosuch:1").returncode != 0


def test_copy_from_stays_inside_the_stage(berthd):
    berthd.load("alpine-3.20")
    hdr = {"Content-Type": "application/x-tar"}
    df = b"""FROM alpine AS a
RUN echo inside > /inside && ln -s /../../../../inside /esc && ln -s ../../.. /up
FROM alpine
COPY --from=a /esc /got1
COPY --from=a /up/../../inside /got2
COPY --from=a ../../../inside /got3
RUN cat /got1 /got2 /got3
"""
    status, _, body = berthd.api("POST", "/build?t=inside:1", _tar({"Dockerfile": df}), hdr)
    assert status == 200, body
    text = "".join(json.loads(x).get("stream", "") for x in body.splitlines())
    assert "inside\ninside\ninside\n" in text, body
    assert _containers(berthd) == []


def test_copy_from_image_from_stage_and_late_failure(berthd):
    berthd.load("alpine-3.20")
    hdr = {"Content-Type": "application/x-tar"}
    before = _images(berthd)
    df = b"""FROM alpine AS base
RUN echo base > /base
FROM base AS second
COPY --from=alpine /etc/alpine-release /rel
RUN cat /base && test -s /rel && echo ok-second
"""
    status, _, body = berthd.api("POST", "/build?t=chain:1", _tar({"Dockerfile": df}), hdr)
    assert status == 200, body
    text = "".join(json.loads(x).get("stream", "") for x in body.splitlines())
    assert "base\nok-second\n" in text and "Successfully tagged chain:1" in text, body
    assert len(_images(berthd)) == len(before) + 1
    berthd.docker("rmi", "chain:1", check=True)
    # a later stage fails: the earlier stage's images go too; --from a later stage is refused
    for df, msg in ((b"FROM alpine AS a\nRUN echo a > /a\nFROM alpine\nRUN false\n",
                     "returned a non-zero code: 1"),
                    (b"FROM alpine AS a\nRUN echo a > /a\nFROM alpine\nCOPY --from=1 /a /a\n",
                     "line 4")):
        status, _, body = berthd.api("POST", "/build?t=late:1", _tar({"Dockerfile": df}), hdr)
        lines = [json.loads(x) for x in body.splitlines()]
        assert status == 200 and msg in lines[-1]["error"], body
        assert _images(berthd) == before
        assert _containers(berthd) == []
