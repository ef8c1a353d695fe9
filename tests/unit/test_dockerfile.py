"""The Dockerfile parser of the legacy builder (engine/images/dockerfile.py):
pure functions, no daemon."""
import pytest

from berth.engine.images import dockerfile as D


def test_continuations_comments_and_case():
    ins = D.parse("# top comment\n"
                  "from alpine\n"
                  "\n"
                  "run echo a \\\n"
                  "  # a comment inside the continuation\n"
                  "\n"
                  "  b\n"
                  "Env A=1\n")
    assert [(i.line, i.cmd) for i in ins] == [(2, "FROM"), (4, "RUN"), (8, "ENV")]
    assert ins[1].args == "echo a   b"
    assert ins[2].original == "Env A=1"


def test_escape_directive():
    ins = D.parse("# escape=`\nFROM alpine\nRUN dir c:\\ `\n  && echo\n")
    assert ins[1].args == "dir c:\\   && echo"


def test_json_and_shell_forms():
    ins = D.parse('FROM a\nRUN ["echo", "x y"]\nCMD echo $HOME\nENTRYPOINT [not json\n')
    assert D.command(ins[1], D_SHELL) == ["echo", "x y"]
    assert D.command(ins[2], D_SHELL) == ["/bin/sh", "-c", "echo $HOME"]
    assert D.command(ins[2], ["/bin/bash", "-ec"]) == ["/bin/bash", "-ec", "echo $HOME"]
    # not valid JSON: the shell form, as Docker does
    assert D.command(ins[3], D_SHELL) == ["/bin/sh", "-c", "[not json"]


D_SHELL = ["/bin/sh", "-c"]


def test_arg_and_env_substitution():
    env = {"V": "1.2", "EMPTY": ""}
    assert D.expand("$V", env) == "1.2"
    assert D.expand("${V}-x", env) == "1.2-x"
    assert D.expand("${NOPE:-def}", env) == "def"
    assert D.expand("${EMPTY:-def}", env) == "def"
    assert D.expand("${V:+set}", env) == "set"
    assert D.expand("${NOPE:+set}", env) == ""
    assert D.expand("'$V'", env) == "$V"
    assert D.expand('"$V"', env) == "1.2"
    assert D.expand("\\$V", env) == "$V"
    assert D.words('a "b c" ${V}d', env) == ["a", "b c", "1.2d"]


def test_key_values():
    ins = D.parse('FROM a\nENV A="hello world" B=$V C=\\"q\\"\nENV OLD  some value\n'
                  "ARG X\nARG Y=$V\nLABEL a.b=1 \"c d\"=2\n")
    assert D.key_values(ins[1], {"V": "9"}) == [("A", "hello world"), ("B", "9"), ("C", '"q"')]
    assert D.key_values(ins[2], {}) == [("OLD", "some value")]
    assert D.key_values(ins[3], {}, legacy=False) == [("X", None)]
    assert D.key_values(ins[4], {"V": "3"}, legacy=False) == [("Y", "3")]
    assert D.key_values(ins[5], {}) == [("a.b", "1"), ("c d", "2")]


def test_copy_sources_flags_and_healthcheck():
    ins = D.parse('FROM a\nCOPY --chown=1:2 a "b c" /dst/\nADD ["x", "/y"]\n'
                  "HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f x\n"
                  "HEALTHCHECK NONE\n")
    assert ins[1].flags == {"chown": "1:2"}
    assert D.source_paths(ins[1], {}) == (["a", "b c"], "/dst/")
    assert D.source_paths(ins[2], {}) == (["x"], "/y")
    assert D.healthcheck(ins[3], D_SHELL) == {"Test": ["CMD-SHELL", "curl -f x"],
                                               "Interval": 90 * 10**9, "Retries": 3}
    assert D.healthcheck(ins[4], D_SHELL) == {"Test": ["NONE"]}


@pytest.mark.parametrize("text,line,words", [
    ("FROM a\nRUN true\n\nFROBNICATE now\n", 4, ["unknown instruction: FROBNICATE",
                                                  "FROBNICATE now"]),
    ("FROM a\nRUN \\\n  true\nBOGUS \\\n x\n", 4, ["BOGUS  x"]),
    ("FROM a\nCOPY --bad=1 a b\n", 2, ["unknown flag: --bad"]),
    ("FROM a\nRUN --mount=type=cache true\n", 2, ["unknown flag: --mount"]),
    ("FROM a\nWORKDIR\n", 2, ["WORKDIR requires at least one argument"]),
    ("RUN true\nFROM a\n", 1, ["no FROM before this instruction"]),
    ("ARG A\n", 1, ["no FROM"]),
])
def test_errors_name_the_line(text, line, words):
    with pytest.raises(D.DockerfileError) as ei:
        D.parse(text)
    assert ei.value.line == line
    msg = str(ei.value)
    assert f"line {line}" in msg
    for w in words:
        assert w in msg


def test_empty_dockerfile():
    with pytest.raises(D.DockerfileError, match="empty"):
        D.parse("# only a comment\n\n")


def test_expansion_errors_name_the_line():
    ins = D.parse('FROM a\nENV A="unterminated\nWORKDIR ${A\n')
    with pytest.raises(D.DockerfileError, match="line 2"):
        D.key_values(ins[1], {})
    with pytest.raises(D.DockerfileError, match="line 3"):
        D.expand(ins[2].args, {}, ins[2])


def test_from_as_stages():
    ins = D.parse("ARG BASE=alpine\n"
                  "FROM $BASE AS Builder\n"
                  "RUN make\n"
                  "from alpine as final\n"
                  "COPY --from=builder /out /out\n"
                  "FROM scratch\n")
    assert [i.stage for i in ins if i.cmd == "FROM"] == ["builder", "final", None]
    assert D.stages(ins) == [("builder", 1), ("final", 3), (None, 5)]
    assert D.from_image(ins[1], {"BASE": "alpine:3.20"}) == "alpine:3.20"
    assert ins[4].flags == {"from": "builder"}


@pytest.mark.parametrize("text,msg", [
    ("FROM a AS x\nFROM b AS X\n", "duplicate name"),
    ("FROM a AS 1x\n", "invalid name for build stage"),
    ("FROM a b\n", "FROM takes an image and an optional AS name"),
    ("FROM a AS x y\n", "FROM takes an image and an optional AS name"),
])
def test_from_as_errors_name_the_line(text, msg):
    with pytest.raises(D.DockerfileError) as e:
        D.parse(text)
    assert msg in str(e.value) and "line" in str(e.value)
