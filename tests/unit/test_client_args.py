"""berth's flag parser (pflag's habits) and run/create flags -> the
Engine API's create body, as the docker CLI builds it."""
import pytest

from berth.client.args import UsageError, parse
from berth.client.commands import command_spec
from berth.client.commands import ps as P
from berth.client import runopts as R
from berth.client.commands.images import full_name, split_ref

SPEC = "d/detach i/interactive t/tty rm name= e/env=* p/publish=* m/memory="


def test_combined_short_flags_values_and_repeats():
    o, args = parse(["-dit", "--name=web", "-e", "A=1", "-eB=2", "--env", "C=3", "-e=D=4",
                     "alpine", "sh"], SPEC, interspersed=False)
    assert (o["detach"], o["interactive"], o["tty"], o["rm"]) == (True, True, True, False)
    assert o["name"] == "web" and o["env"] == ["A=1", "B=2", "C=3", "D=4"]
    assert args == ["alpine", "sh"]


def test_first_positional_stops_flags_for_run():
    o, args = parse(["--rm", "alpine", "ls", "-la", "--name", "x"], SPEC, interspersed=False)
    assert o["rm"] and o["name"] is None
    assert args == ["alpine", "ls", "-la", "--name", "x"]


def test_interspersed_and_double_dash():
    o, args = parse(["a", "-d", "b", "--", "-t"], SPEC)
    assert o["detach"] and not o["tty"] and args == ["a", "b", "-t"]


def test_bool_values_short_value_glued_and_help():
    o, _ = parse(["--rm=false", "-t=true", "-m512m"], SPEC)
    assert o["rm"] is False and o["tty"] is True and o["memory"] == "512m"
    assert parse(["--help"], SPEC)[0]["help"]
    o, _ = parse(["-h", "box", "--help"], "h/hostname=")  # run's -h is --hostname
    assert o["hostname"] == "box" and o["help"]
    assert parse(["-"], SPEC)[1] == ["-"]


@pytest.mark.parametrize("argv,msg", [
    (["--nope"], "unknown flag: --nope"),
    (["-dx"], "unknown shorthand flag: 'x'"),
    (["--name"], "flag needs an argument"),
    (["-e"], "flag needs an argument"),
    (["--rm=maybe"], "expected true or false"),
])
def test_usage_errors(argv, msg):
    with pytest.raises(UsageError, match=msg):
        parse(argv, SPEC)


def _body(*argv, detach=False):
    o, args = parse(list(argv), command_spec("run")[2], interspersed=False)
    return R.create_body(o, args[0], args[1:], detach)


def test_create_body_basics(monkeypatch):
    monkeypatch.setenv("FROM_HOST", "h")
    b = _body("-i", "-e", "A=1", "-e", "FROM_HOST", "-e", "UNSET_XYZ", "-w", "/w", "-u", "1:2",
              "--hostname", "h1", "-l", "k=v", "--entrypoint", "", "alpine", "echo", "hi")
    assert b["Image"] == "alpine" and b["Cmd"] == ["echo", "hi"]
    assert b["Env"] == ["A=1", "FROM_HOST=h"]
    assert (b["WorkingDir"], b["User"], b["Hostname"]) == ("/w", "1:2", "h1")
    assert b["Labels"] == {"k": "v"} and b["Entrypoint"] == [""]
    assert b["AttachStdin"] and b["OpenStdin"] and b["StdinOnce"] and b["AttachStdout"]
    assert b["HostConfig"]["NetworkMode"] == "default"
    assert b["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}


def test_create_body_resources_and_security():
    h = _body("-m", "512m", "--cpus", "1.5", "--pids-limit", "100", "--read-only", "--privileged",
              "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
              "--device", "/dev/fuse", "--device", "/dev/sda:/dev/xvda:r", "--ulimit", "nofile=1024:2048",
              "--init", "--runtime", "runc", "--userns", "host", "--pid", "host", "--ipc", "private",
              "--uts", "host", "--restart", "on-failure:3", "--stop-signal", "SIGINT",
              "alpine")["HostConfig"]
    assert h["Memory"] == 512 * 2**20 and h["NanoCpus"] == 1_500_000_000 and h["PidsLimit"] == 100
    assert h["ReadonlyRootfs"] and h["Privileged"] and h["Init"]
    assert h["CapAdd"] == ["NET_ADMIN"] and h["CapDrop"] == ["ALL"]
    assert h["SecurityOpt"] == ["no-new-privileges"]
    assert h["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
        {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/xvda", "CgroupPermissions": "r"}]
    assert h["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert (h["Runtime"], h["UsernsMode"], h["PidMode"], h["IpcMode"], h["UTSMode"]) == \
        ("runc", "host", "host", "private", "host")
    assert h["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_create_body_storage_and_ports():
    b = _body("-v", "/src:/dst:ro", "-v", "named:/data", "-v", "/anon",
              "--mount", "type=bind,source=/a,target=/b,readonly",
              "--mount", "type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1777",
              "--tmpfs", "/run:rw,size=1m", "-p", "8080:80", "-p", "127.0.0.1:53:53/udp",
              "-p", "9000-9001:90-91", "-p", "443", "-p", "[::1]:8443:443", "-P", "--expose", "7000",
              "--network", "n1", "--network-alias", "a", "--ip", "10.0.0.5", "alpine")
    h = b["HostConfig"]
    assert h["Binds"] == ["/src:/dst:ro", "named:/data"] and b["Volumes"] == {"/anon": {}}
    assert h["Mounts"] == [{"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": True},
                           {"Type": "tmpfs", "Target": "/t",
                            "TmpfsOptions": {"SizeBytes": 64 * 2**20, "Mode": 0o1777}}]
    assert h["Tmpfs"] == {"/run": "rw,size=1m"}
    pb = h["PortBindings"]
    assert pb["80/tcp"] == [{"HostIp": "", "HostPort": "8080"}]
    assert pb["53/udp"] == [{"HostIp": "127.0.0.1", "HostPort": "53"}]
    assert pb["90/tcp"] == [{"HostIp": "", "HostPort": "9000"}] and pb["91/tcp"][0]["HostPort"] == "9001"
    assert pb["443/tcp"] == [{"HostIp": "", "HostPort": ""}, {"HostIp": "::1", "HostPort": "8443"}]
    assert set(b["ExposedPorts"]) == {"80/tcp", "53/udp", "90/tcp", "91/tcp", "443/tcp", "7000/tcp"}
    assert h["PublishAllPorts"] and h["NetworkMode"] == "n1"
    assert b["NetworkingConfig"] == {"EndpointsConfig": {"n1": {
        "Aliases": ["a"], "IPAMConfig": {"IPv4Address": "10.0.0.5", "IPv6Address": ""}}}}


def test_create_body_healthcheck_and_detach():
    b = _body("-d", "--health-cmd", "true", "--health-interval", "30s", "--health-retries", "3",
              "alpine", detach=True)
    assert b["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 30 * 10**9, "Retries": 3}
    assert not b["AttachStdout"] and not b["AttachStdin"]
    assert _body("--no-healthcheck", "alpine")["Healthcheck"] == {"Test": ["NONE"]}


@pytest.mark.parametrize("argv,msg", [
    (["--rm", "--restart", "always", "alpine"], "conflicting options"),
    (["-p", "x:80", "alpine"], "invalid port"),
    (["-p", "1-3:1-2", "alpine"], "invalid ranges"),
    (["--mount", "type=bind,src=/a", "alpine"], "target is required"),
    (["--ulimit", "nofile=x", "alpine"], "invalid ulimit"),
    (["-m", "lots", "alpine"], "invalid argument"),
    (["--health-interval", "soon", "alpine"], "invalid duration"),
    (["--restart", "sometimes", "alpine"], "invalid restart policy"),
])
def test_create_body_refuses(argv, msg):
    with pytest.raises(UsageError, match=msg):
        _body(*argv)


def test_image_references():
    assert split_ref("alpine") == ("alpine", "")
    assert split_ref("localhost:5000/a/b:1.0") == ("localhost:5000/a/b", "1.0")
    assert split_ref("a@sha256:ab") == ("a", "sha256:ab")
    assert full_name("alpine") == "docker.io/library/alpine:latest"
    assert full_name("me/app:2") == "docker.io/me/app:2"
    assert full_name("quay.io/x/y") == "quay.io/x/y:latest"
    assert full_name("localhost:5000/y@sha256:ab") == "localhost:5000/y@sha256:ab"


def test_ps_row_like_docker():
    row = P.ps_row({"Id": "a" * 64, "Names": ["/web", "/other/link"], "Image": "alpine",
                    "Command": "sh -c 'echo hello world'", "Created": 100, "State": "running",
                    "Status": "Up 2 seconds",
                    "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp", "IP": "0.0.0.0"},
                              {"PrivatePort": 443, "Type": "tcp"},
                              {"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp", "IP": "::"}]},
                   now=3700)
    assert row["ID"] == "a" * 12 and row["Names"] == "web"
    assert row["Command"] == '"sh -c \'echo hello w…"'
    assert row["RunningFor"] == "About an hour ago"
    assert row["Ports"] == "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 443/tcp"


def test_stats_row():
    s = {"id": "b" * 64, "name": "/web",
         "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
         "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
         "memory_stats": {"usage": 2 * 2**20, "limit": 8 * 2**20, "stats": {"inactive_file": 2**20}},
         "networks": {"eth0": {"rx_bytes": 1000, "tx_bytes": 2000}},
         "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 5}]},
         "pids_stats": {"current": 3}}
    r = P.stats_row("web", s)
    assert r["CPUPerc"] == "40.00%" and r["MemUsage"] == "1MiB / 8MiB" and r["MemPerc"] == "12.50%"
    assert r["NetIO"] == "1kB / 2kB" and r["BlockIO"] == "5B / 0B" and r["PIDs"] == "3"
    assert r["Name"] == "web" and r["ID"] == "b" * 12


@pytest.mark.parametrize("argv,msg", [
    (["--cpus", "abc"], 'invalid argument "abc" for "--cpus" flag'),
    (["--pids-limit", "abc"], 'invalid argument "abc" for "--pids-limit" flag: not an integer'),
    (["-m", "12x"], 'invalid argument "12x" for "-m" flag: invalid size'),
    (["--health-interval=soon"], "invalid duration"),
    (["--blkio-weight", "-5"], "not a non-negative integer"),
    (["--add-host", "nocolon"], "bad format for add-host"),
    (["--dns", "resolver.local"], "is not an IP address"),
    (["--ip6", "10.0.0.1"], "is not an IPv6 address"),
])
def test_typed_flags_are_checked(argv, msg):
    with pytest.raises(UsageError, match=msg):
        parse(argv + ["alpine"], command_spec("run")[2], interspersed=False)
    o, _ = parse(["--memory-swap", "-1", "--cpus", "0.5", "alpine"], command_spec("run")[2],
                 interspersed=False)
    assert (o["memory_swap"], o["cpus"]) == ("-1", "0.5")


def test_every_verb_help_lists_each_flag_on_one_line():
    from berth.client.commands import help_text
    from berth.client.table import COMMANDS
    for key in COMMANDS:
        text = help_text(key)
        assert text.startswith(f"\nUsage:  berth {COMMANDS[key][0]}\n"), key
        spec = command_spec(key)[2]
        for flag in spec.flags:
            lines = [ln for ln in text.splitlines() if ln.startswith(flag.usage() + " ")]
            assert len(lines) == 1 and len(lines[0].split(None, 2 + bool(flag.type))) > 1, \
                (key, flag.names)
            assert flag.help, (key, flag.names)


def test_detach_keys():
    from berth.client import detach
    assert detach.parse("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detach.parse("ctrl-@,a,ctrl-_") == b"\x00a\x1f"
    with pytest.raises(UsageError, match="invalid detach keys"):
        detach.parse("ctrl-1")
    e = detach.Escape(b"\x10\x11")
    assert e.feed(b"ab\x10") == (b"ab", False)     # held back: may start the sequence
    assert e.feed(b"c") == (b"\x10c", False)       # broke: sent on
    assert e.feed(b"\x10\x10\x11") == (b"\x10", True)
