"""berth.client.format: the Go-template subset, docker's table layout and
go-units' human sizes and durations."""
import pytest

from berth.client import format as F


@pytest.mark.parametrize("tpl,value,want", [
    ("{{.ID}}", {"ID": "abc"}, "abc"),
    ("{{.State.Status}}", {"State": {"Status": "running"}}, "running"),
    ("{{json .}}", {"A": 1, "B": [1, "x"]}, '{"A":1,"B":[1,"x"]}'),
    ("{{json .Config.Cmd}}", {"Config": {"Cmd": ["sh", "-c"]}}, '["sh","-c"]'),
    ("{{.Missing}}", {}, "<no value>"),
    ("{{.A.B}}", {"A": None}, "<no value>"),
    ("{{.Running}} {{.N}}", {"Running": True, "N": 3}, "true 3"),
    ("{{.L}}", {"L": {"b": "2", "a": "1"}}, "map[a:1 b:2]"),
    ("{{.L}}", {"L": ["x", "y"]}, "[x y]"),
    ("{{upper .A}}|{{.A | lower}}|{{len .L}}", {"A": "Ab", "L": [1, 2]}, "AB|ab|2"),
    ('{{join .L ","}}', {"L": ["a", "b"]}, "a,b"),
    ('{{index .Labels "com.x"}}', {"Labels": {"com.x": "y"}}, "y"),
    ("{{range .M}}{{.Source}};{{end}}", {"M": [{"Source": "/a"}, {"Source": "/b"}]}, "/a;/b;"),
    ("{{range $k, $v := .L}}{{$k}}={{$v}} {{end}}", {"L": {"b": "2", "a": "1"}}, "a=1 b=2 "),
    ("{{if .X}}x{{else if .Y}}y{{else}}z{{end}}", {"Y": 1}, "y"),
    ("{{if .X}}x{{else}}z{{end}}", {}, "z"),
    ("{{with .S}}{{.Status}}{{end}}", {"S": {"Status": "up"}}, "up"),
    ('{{printf "%s-%d" .A .N}}', {"A": "a", "N": 2}, "a-2"),
    ('{{if eq .A "a"}}yes{{end}}', {"A": "a"}, "yes"),
    ("{{- .A -}} ", {"A": "t"}, "t"),
    ("{{.id}}", {"Id": "lower-case field"}, "lower-case field"),
    ("{{$.A}}{{range .L}}{{$.A}}{{end}}", {"A": "r", "L": [1]}, "rr"),
])
def test_template(tpl, value, want):
    assert F.Template(tpl).render(value) == want


@pytest.mark.parametrize("tpl", ["{{if .A}}", "{{end}}", "{{.A", "{{nofunc .A}}"])
def test_template_errors(tpl):
    with pytest.raises(F.TemplateError):
        F.Template(tpl).render({"A": 1})


def test_table_is_aligned_like_tabwriter():
    # minwidth 10, padding 3; the last column is never padded
    out = F.render([{"ID": "1", "Image": "alpine"}, {"ID": "22222222222222", "Image": "x"}],
                   None, "table {{.ID}}\t{{.Image}}", {"ID": "CONTAINER ID"})
    assert out.splitlines() == ["CONTAINER ID     IMAGE",
                                "1                alpine",
                                "22222222222222   x"]


def test_format_table_flag_escapes_and_headers():
    out = F.render([{"Name": "v1", "Driver": "local", "CreatedSince": "x"}],
                   "table {{.Name}}\\t{{.CreatedSince}}", "unused", {"Name": "VOLUME NAME"})
    assert out.splitlines() == ["VOLUME NAME   CREATED SINCE", "v1            x"]


def test_format_plain_and_json():
    items = [{"A": "1"}, {"A": "2"}]
    assert F.render(items, "{{.A}}", "table {{.A}}") == "1\n2\n"
    assert F.render(items, "json", "table {{.A}}") == '{"A":"1"}\n{"A":"2"}\n'
    assert F.render([], None, "table {{.A}}\t{{.B}}") == "A         B\n"


@pytest.mark.parametrize("n,want", [(0, "0B"), (999, "999B"), (1000, "1kB"), (7_800_000, "7.8MB"),
                                    (8_093_000, "8.093MB"), (1_500_000_000, "1.5GB")])
def test_human_size(n, want):
    assert F.human_size(n) == want


def test_human_size_precision_and_binary():
    assert F.human_size(8_093_000, 3) == "8.09MB"
    assert F.bytes_size(1536 * 1024) == "1.5MiB"
    assert F.bytes_size(100) == "100B"


@pytest.mark.parametrize("s,want", [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
                                    (60, "About a minute"), (600, "10 minutes"),
                                    (3600, "About an hour"), (5 * 3600, "5 hours"),
                                    (3 * 86400, "3 days"), (20 * 86400, "2 weeks"),
                                    (90 * 86400, "3 months"), (800 * 86400, "2 years")])
def test_human_duration(s, want):
    assert F.human_duration(s) == want


def test_durations_sizes_and_times():
    assert F.go_duration("1m30s") == 90 * 10**9
    assert F.go_duration("500ms") == 5 * 10**8
    assert F.go_duration("1.5h") == 5400 * 10**9
    with pytest.raises(ValueError):
        F.go_duration("10 parsecs")
    assert F.ram_bytes("512m") == 512 * 2**20
    assert F.ram_bytes("1g") == 2**30
    assert F.ram_bytes("100") == 100
    with pytest.raises(ValueError):
        F.ram_bytes("lots")
    assert F.unix_time("1970-01-01T00:01:00.5Z") == 60.5
    assert F.unix_time("0001-01-01T00:00:00Z") == 0
    assert F.timestamp_arg("1700000000") == "1700000000"
    assert float(F.timestamp_arg("10m", now=1000.0)) == 400.0
    assert float(F.timestamp_arg("1970-01-01T00:00:10Z")) == 10.0
    assert F.ellipsis("abcdef", 4) == "abc…"


def test_progress_tty_and_plain():
    import io
    from berth.client import progress
    msgs = [{"status": "Pulling from library/alpine", "id": "latest"},
            {"status": "Downloading", "id": "aaa", "progressDetail": {"current": 5, "total": 10}},
            {"status": "Download complete", "id": "aaa"},
            {"stream": "Loaded image: alpine:latest\n"}, {"aux": {"ID": "sha256:x"}}]
    out = io.StringIO()
    assert progress.show(msgs, out, tty=False) == [{"ID": "sha256:x"}]
    assert out.getvalue() == ("latest: Pulling from library/alpine\naaa: Download complete\n"
                              "Loaded image: alpine:latest\n")
    out = io.StringIO()
    progress.show(msgs[:3], out, tty=True)
    text = out.getvalue()
    assert "aaa: Downloading [=========================>" in text
    assert "\x1b[1A\r\x1b[2Kaaa: Download complete\r\x1b[1B" in text
    with pytest.raises(progress.StreamError, match="boom"):
        progress.show([{"error": "boom", "errorDetail": {"message": "boom"}}], io.StringIO(), tty=False)


def test_template_functions_people_use():
    row = F.Row("container", {"ID": "abc", "Names": "web", "Image": "alpine", "Labels": "a=1,b=2"},
                labels={"com.example": "yes"})

    def out(t):
        return F.render([row], t, None)
    assert out('{{.Label "com.example"}} {{.Label "missing"}}|') == "yes |\n"
    assert out("{{json .Names}} {{upper .Image}} {{lower .ID | upper}}") == '"web" ALPINE ABC\n'
    assert out('{{join (split .Labels ",") " "}}') == "a=1 b=2\n"
    assert out('{{title "hello wORLD"}}') == "Hello WORLD\n"
    assert out('{{printf "%-5s|%q|%3d|%.1f" .ID .Names 7 2.25}}') == 'abc  |"web"|  7|2.2\n'
    assert out('table {{.ID}}\t{{.Label "com.example"}}') == "ID        LABEL\nabc       yes\n"


@pytest.mark.parametrize("template,error", [
    ("{{.Nope}}", "can't evaluate field Nope in type container"),
    ("{{.ID", "unclosed action"),
    ("{{nofunc .ID}}", 'function "nofunc" not defined'),
    ("{{if .ID}}x", "missing {{end}}"),
    ("{{.Label}}", "wrong number of args"),
])
def test_bad_templates_and_unknown_fields_are_errors(template, error):
    row = F.Row("container", {"ID": "abc"})
    with pytest.raises(F.TemplateError, match=error):
        F.check(template)
        F.render([row], template, None)


def test_inspect_keeps_go_maps_no_value():
    # inspect's objects are maps in docker too: a missing key is '<no value>'
    assert F.render([{"Id": "x"}], "{{.Missing}}", None) == "<no value>\n"


def test_ps_command_quoted_as_go_quotes():
    assert F.go_quote('sh -c "echo \\ hi"\tx\n\x01é') == '"sh -c \\"echo \\\\ hi\\"\\tx\\n\\x01é"'
