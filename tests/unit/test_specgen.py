"""engine/specgen: image config + run options -> config.json."""
import os

import pytest

from berth.engine.specgen import Host, RunOptions, generate
from berth.engine.specgen.linux import DEFAULT_PIDS_LIMIT
from berth.engine.specgen.security import DEFAULT_CAPS
from berth.errors import ConfigError, NotFound
from berth.oci import jsonio
from berth.sys import caps as captab
from shared_dir import SECCOMP_PROFILE

IMAGE = {"Entrypoint": None, "Cmd": ["sh"], "Env": ["PATH=/usr/bin:/bin", "LANG=C"],
         "WorkingDir": "/srv", "User": "", "ExposedPorts": {"80/tcp": {}},
         "Volumes": None, "Labels": {"a": "b"}, "StopSignal": "SIGTERM"}

DOCKER_14 = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
             "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
             "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "# comment\n"
        "app:x:1000:1000:app:/home/app:/bin/sh\n"
        "svc:x:1001:1001::/var/svc:/bin/false\n")
    (root / "etc" / "group").write_text(
        "root:x:0:\nstaff:x:50:app,svc\napp:x:1000:\nsvc:x:1001:\nwheel:x:10:app\n")
    return str(root)


@pytest.fixture
def host(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    return Host(arch="x86_64", kernel=(6, 1), apparmor=False, selinux=False,
                last_cap=40, dev_root=str(dev), swap_limit=True, bounding=captab.NAMES)


def gen(rootfs, host, image=None, **opts):
    return generate(IMAGE if image is None else image, RunOptions(**opts), rootfs, host)


def mount_at(spec, dest):
    found = [m for m in spec["mounts"] if m["destination"] == dest]
    assert len(found) <= 1
    return found[0] if found else None


def env_of(spec):
    return dict(e.split("=", 1) for e in spec["process"]["env"])


def syscall_names(spec):
    return {n for r in spec["linux"]["seccomp"]["syscalls"] for n in r["names"]
            if r["action"] == "SCMP_ACT_ALLOW"}


# ---------------------------------------------------------------- defaults


def test_default_capabilities_are_dockers_minus_net_raw_and_mknod(rootfs, host):
    spec = gen(rootfs, host)
    caps = spec["process"]["capabilities"]
    assert set(DEFAULT_CAPS) == DOCKER_14 - {"CAP_NET_RAW", "CAP_MKNOD"}
    for kind in ("bounding", "effective", "permitted"):
        assert set(caps[kind]) == set(DEFAULT_CAPS)
    assert not caps.get("inheritable") and not caps.get("ambient")


def test_default_namespaces_without_time(rootfs, host):
    spec = gen(rootfs, host)
    assert [n["type"] for n in spec["linux"]["namespaces"]] == \
        ["mount", "pid", "ipc", "uts", "network", "cgroup"]
    assert all("path" not in n for n in spec["linux"]["namespaces"])
    timed = gen(rootfs, host, time_ns=True)
    assert {"type": "time"} in timed["linux"]["namespaces"]


def test_default_hardening(rootfs, host):
    spec = gen(rootfs, host, container_id="0123456789abcdef0123")
    lx = spec["linux"]
    assert spec["process"]["noNewPrivileges"] is True
    assert lx["resources"]["pids"] == {"limit": DEFAULT_PIDS_LIMIT} == {"limit": 4096}
    assert lx["sysctl"] == {"net.ipv4.ping_group_range": "0 2147483647",
                            "net.ipv4.ip_unprivileged_port_start": "0"}
    for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware",
              "/proc/acpi", "/proc/scsi", "/sys/devices/virtual/powercap"):
        assert p in lx["maskedPaths"]
    assert set(lx["readonlyPaths"]) >= {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                        "/proc/sysrq-trigger"}
    assert lx["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert lx["seccomp"]["architectures"][0] == "SCMP_ARCH_X86_64"
    assert spec["root"] == {"path": rootfs, "readonly": False}
    assert spec["hostname"] == "0123456789ab"
    assert lx["cgroupsPath"] == "/berth/0123456789abcdef0123"
    assert lx["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} \
        in lx["resources"]["devices"]


def test_default_mounts(rootfs, host):
    spec = gen(rootfs, host)
    assert "size=67108864" in mount_at(spec, "/dev/shm")["options"]
    assert mount_at(spec, "/dev/shm")["type"] == "tmpfs"
    assert mount_at(spec, "/dev/mqueue")["type"] == "mqueue"
    assert "gid=5" in mount_at(spec, "/dev/pts")["options"]
    assert "ro" in mount_at(spec, "/sys")["options"]
    assert "ro" in mount_at(spec, "/sys/fs/cgroup")["options"]
    assert mount_at(spec, "/proc")["type"] == "proc"
    shm = gen(rootfs, host, shm_size=1 << 20)
    assert "size=1048576" in mount_at(shm, "/dev/shm")["options"]


def test_seccomp_follows_the_final_capability_set(rootfs, host):
    plain = syscall_names(gen(rootfs, host))
    admin = syscall_names(gen(rootfs, host, cap_add=["SYS_ADMIN"]))
    assert "read" in plain and "mount" not in plain and "unshare" not in plain
    assert {"mount", "unshare", "setns"} <= admin


def test_installed_profile_is_dockers(host):
    # `make build` installs it from ../shared; the NOTICE beside it says so
    from berth.engine.specgen import security
    assert security.default_profile() == jsonio.load_file(SECCOMP_PROFILE)
    notice = os.path.join(os.path.dirname(security._PROFILE_PATH), "seccomp_default.NOTICE")
    text = open(notice).read()
    assert "moby" in text.lower() and "Apache" in text


def test_spec_is_json_serialisable(rootfs, host):
    spec = gen(rootfs, host, tty=True, memory=64 << 20)
    assert jsonio.loads(jsonio.dumps(spec)) == spec


# ---------------------------------------------------------------- process


@pytest.mark.parametrize("image, opts, want", [
    ({"Cmd": ["sh"]}, {}, ["sh"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {}, ["/ep", "a"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"cmd": ["b", "c"]}, ["/ep", "b", "c"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"entrypoint": ["/x"]}, ["/x"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"entrypoint": ["/x"], "cmd": ["y"]}, ["/x", "y"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"entrypoint": [""], "cmd": ["ls"]}, ["ls"]),
    ({"Cmd": "echo hi"}, {}, ["/bin/sh", "-c", "echo hi"]),
])
def test_entrypoint_and_cmd_as_docker(rootfs, host, image, opts, want):
    assert gen(rootfs, host, image=image, **opts)["process"]["args"] == want


@pytest.mark.parametrize("image, opts", [
    ({}, {}),
    ({"Cmd": []}, {}),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"entrypoint": [""]}),
    ({"Cmd": ["sh"]}, {"entrypoint": []}),
])
def test_no_command_is_an_error(rootfs, host, image, opts):
    with pytest.raises(ConfigError, match="no command specified"):
        gen(rootfs, host, image=image, **opts)


def test_env_order_overrides_and_defaults(rootfs, host):
    spec = gen(rootfs, host, hostname="web", tty=True, env=["LANG=en", "X=1", "LANG"])
    env = spec["process"]["env"]
    assert env_of(spec) == {"HOSTNAME": "web", "TERM": "xterm", "PATH": "/usr/bin:/bin",
                            "X": "1", "HOME": "/root"}
    assert env.index("PATH=/usr/bin:/bin") < env.index("X=1")
    bare = gen(rootfs, host, image={"Cmd": ["sh"]})
    assert env_of(bare)["PATH"].startswith("/usr/local/sbin:")
    assert "TERM" not in env_of(bare)
    assert bare["process"]["terminal"] is False


def test_env_errors_name_the_field(rootfs, host):
    with pytest.raises(ConfigError, match=r"env\[0\]"):
        gen(rootfs, host, env=["=x"])


def test_workdir(rootfs, host):
    assert gen(rootfs, host)["process"]["cwd"] == "/srv"
    assert gen(rootfs, host, workdir="/tmp")["process"]["cwd"] == "/tmp"
    assert gen(rootfs, host, image={"Cmd": ["sh"]})["process"]["cwd"] == "/"
    with pytest.raises(ConfigError, match="workdir: 'rel' is not an absolute path"):
        gen(rootfs, host, workdir="rel")


@pytest.mark.parametrize("user, want, home", [
    # dockerd's groups: the user's in /etc/group, the explicit group alone,
    # and the primary group when nothing else is found
    ("", {"uid": 0, "gid": 0, "additionalGids": [0]}, "/root"),
    ("app", {"uid": 1000, "gid": 1000, "additionalGids": [50, 10]}, "/home/app"),
    ("1000", {"uid": 1000, "gid": 1000, "additionalGids": [50, 10]}, "/home/app"),
    ("app:staff", {"uid": 1000, "gid": 50, "additionalGids": [50]}, "/home/app"),
    ("svc:10", {"uid": 1001, "gid": 10, "additionalGids": [10]}, "/var/svc"),
    ("4242", {"uid": 4242, "gid": 0, "additionalGids": [0]}, "/"),
    ("4242:4343", {"uid": 4242, "gid": 4343, "additionalGids": [4343]}, "/"),
])
def test_user_resolved_against_the_rootfs(rootfs, host, user, want, home):
    spec = gen(rootfs, host, user=user)
    assert spec["process"]["user"] == want
    assert env_of(spec)["HOME"] == home


def test_user_from_image_and_group_add(rootfs, host):
    image = dict(IMAGE, User="svc")
    spec = gen(rootfs, host, image=image, group_add=["wheel", "777"])
    assert spec["process"]["user"] == {"uid": 1001, "gid": 1001, "additionalGids": [50, 10, 777]}


@pytest.mark.parametrize("user, match", [
    ("nobody", "unable to find user nobody: no matching entries in passwd file"),
    ("app:nogroup", "unable to find group nogroup: no matching entries in group file"),
])
def test_unknown_user_or_group(rootfs, host, user, match):
    with pytest.raises(NotFound, match=match):
        gen(rootfs, host, user=user)


def test_passwd_symlink_cannot_leave_the_rootfs(tmp_path, host):
    outside = tmp_path / "host-passwd"
    outside.write_text("evil:x:666:666::/:/bin/sh\n")
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to(outside)  # absolute: must resolve inside root
    with pytest.raises(NotFound, match="unable to find user evil"):
        generate(IMAGE, RunOptions(user="evil"), str(root), host)


# ---------------------------------------------------------------- capabilities


def caps_of(spec):
    return spec["process"]["capabilities"]["bounding"]


def test_cap_add_and_drop(rootfs, host):
    spec = gen(rootfs, host, cap_add=["net_raw", "CAP_SYS_PTRACE"], cap_drop=["CHOWN"])
    assert set(caps_of(spec)) == (set(DEFAULT_CAPS) - {"CAP_CHOWN"}) | {"CAP_NET_RAW",
                                                                        "CAP_SYS_PTRACE"}


def test_cap_drop_all_keeps_only_added(rootfs, host):
    assert caps_of(gen(rootfs, host, cap_drop=["ALL"], cap_add=["KILL"])) == ["CAP_KILL"]
    assert caps_of(gen(rootfs, host, cap_drop=["all"])) == []


def test_cap_add_all_minus_drop(rootfs, host):
    caps = caps_of(gen(rootfs, host, cap_add=["ALL"], cap_drop=["SYS_ADMIN"]))
    assert "CAP_SYS_ADMIN" not in caps and "CAP_BPF" in caps
    assert len(caps) == 40  # 41 known to a kernel whose last cap is 40, minus one


def test_unknown_capability_names_the_option(rootfs, host):
    with pytest.raises(ConfigError, match=r"cap_add\[1\]: unknown capability 'NET_FOO'"):
        gen(rootfs, host, cap_add=["KILL", "NET_FOO"])
    with pytest.raises(ConfigError, match=r"cap_drop\[0\]"):
        gen(rootfs, host, cap_drop=["nope"])


def test_caps_limited_to_the_hosts_bounding_set(rootfs):
    bnd = [n for n in captab.NAMES if n != "CAP_SYS_RESOURCE"]
    h = Host(arch="x86_64", kernel=(6, 1), apparmor=False, selinux=False, last_cap=40,
             bounding=bnd)
    assert set(caps_of(gen(rootfs, h, privileged=True))) == set(bnd)
    assert "CAP_SYS_RESOURCE" not in caps_of(gen(rootfs, h, cap_add=["ALL"]))
    with pytest.raises(ConfigError, match="cap_add: CAP_SYS_RESOURCE is not in this host's "
                                          "bounding set"):
        gen(rootfs, h, cap_add=["SYS_RESOURCE"])


def test_cap_newer_than_kernel(rootfs, tmp_path):
    old = Host(arch="x86_64", kernel=(5, 4), apparmor=False, selinux=False, last_cap=37,
               bounding=captab.NAMES)
    with pytest.raises(ConfigError, match="CAP_BPF is not supported by this kernel"):
        gen(rootfs, old, cap_add=["BPF"])


def test_privileged(rootfs, host):
    spec = gen(rootfs, host, privileged=True)
    lx = spec["linux"]
    assert len(caps_of(spec)) == 41
    assert "seccomp" not in lx
    assert "maskedPaths" not in lx and "readonlyPaths" not in lx
    assert lx["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "ro" not in mount_at(spec, "/sys")["options"]
    assert "ro" not in mount_at(spec, "/sys/fs/cgroup")["options"]


def test_privileged_with_explicit_profile_keeps_it(rootfs, host, tmp_path):
    prof = tmp_path / "p.json"
    prof.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": '
                    '[{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}')
    spec = gen(rootfs, host, privileged=True, security_opt=[f"seccomp={prof}"])
    assert spec["linux"]["seccomp"]["syscalls"] == [{"names": ["ptrace"],
                                                     "action": "SCMP_ACT_ERRNO"}]


# ---------------------------------------------------------------- security_opt


def test_no_new_privileges_forms(rootfs, host):
    for opt, want in (("no-new-privileges", True), ("no-new-privileges:true", True),
                      ("no-new-privileges=false", False), ("no-new-privileges:false", False)):
        assert gen(rootfs, host, security_opt=[opt])["process"]["noNewPrivileges"] is want
    with pytest.raises(ConfigError, match=r"security_opt\[0\].*true or false"):
        gen(rootfs, host, security_opt=["no-new-privileges:maybe"])


def test_seccomp_unconfined_file_and_inline(rootfs, host, tmp_path):
    assert "seccomp" not in gen(rootfs, host, security_opt=["seccomp=unconfined"])["linux"]
    from_file = gen(rootfs, host, security_opt=[f"seccomp={SECCOMP_PROFILE}"])
    assert from_file["linux"]["seccomp"] == gen(rootfs, host)["linux"]["seccomp"]
    inline = gen(rootfs, host, security_opt=['seccomp={"defaultAction": "SCMP_ACT_LOG"}'])
    assert inline["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_LOG"
    with pytest.raises(ConfigError, match=r"security_opt\[0\]: seccomp profile /nonexistent"):
        gen(rootfs, host, security_opt=["seccomp=/nonexistent.json"])


def test_lsm_options_fail_clearly_on_this_host(rootfs, host):
    with pytest.raises(ConfigError, match="not available on this host: no AppArmor"):
        gen(rootfs, host, security_opt=["apparmor=docker-default"])
    with pytest.raises(ConfigError, match="not available on this host: SELinux disabled"):
        gen(rootfs, host, security_opt=["label=type:svirt_lxc_net_t"])
    # asking for no confinement is satisfied as is
    gen(rootfs, host, security_opt=["apparmor=unconfined", "label=disable"])


def test_unknown_security_opt(rootfs, host):
    with pytest.raises(ConfigError, match=r"security_opt\[0\]: unknown security option 'bogus'"):
        gen(rootfs, host, security_opt=["bogus"])


# ---------------------------------------------------------------- devices, mounts


def test_device_mapping(rootfs, host):
    spec = gen(rootfs, host, devices=["/dev/null:/dev/mynull:r", "/dev/zero"])
    nodes = {d["path"]: d for d in spec["linux"]["devices"]}
    assert nodes["/dev/mynull"]["type"] == "c"
    assert (nodes["/dev/mynull"]["major"], nodes["/dev/mynull"]["minor"]) == (1, 3)
    assert "/dev/zero" in nodes
    rules = spec["linux"]["resources"]["devices"]
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"} in rules
    short = gen(rootfs, host, devices=["/dev/null:rw"])
    assert short["linux"]["devices"][0]["path"] == "/dev/null"
    assert short["linux"]["resources"]["devices"][-1]["access"] == "rw"
    api = gen(rootfs, host, devices=[{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/z",
                                      "CgroupPermissions": "rw"}])
    assert api["linux"]["devices"][0]["path"] == "/dev/z"
    assert api["linux"]["resources"]["devices"][-1] == \
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rw"}


@pytest.mark.parametrize("dev, match", [
    ("/dev/does-not-exist", r"devices\[0\]: device /dev/does-not-exist"),
    ("/etc/hostname", r"devices\[0\]: /etc/hostname is not a device node"),
    ("/dev/null:/dev/x:rwx", r"devices\[0\]: permissions 'rwx'"),
    ("dev/null", r"devices\[0\]: device 'dev/null' must be an absolute path"),
])
def test_device_errors(rootfs, host, dev, match):
    with pytest.raises((ConfigError, NotFound), match=match):
        gen(rootfs, host, devices=[dev])


def test_binds_mounts_and_tmpfs(rootfs, host):
    spec = gen(rootfs, host,
               binds=["/srv/data:/data:ro,rslave", "/srv/logs:/data/logs"],
               mounts=[{"Type": "tmpfs", "Target": "/cache",
                        "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 0o700}},
                       {"Type": "volume", "Source": "/var/lib/berth/volumes/v/_data",
                        "Target": "/v", "ReadOnly": True}],
               tmpfs={"/run": "size=65536k", "/dev/shm": "size=1g"})
    data = mount_at(spec, "/data")
    assert data == {"destination": "/data", "type": "bind", "source": "/srv/data",
                    "options": ["rbind", "ro", "rslave"]}
    assert mount_at(spec, "/data/logs")["options"] == ["rbind", "rprivate"]
    assert mount_at(spec, "/cache")["options"] == ["nosuid", "nodev", "noexec",
                                                   "size=1048576", "mode=700"]
    assert "ro" in mount_at(spec, "/v")["options"]
    assert mount_at(spec, "/run")["options"][-1] == "size=65536k"
    # the user's /dev/shm replaces the default one
    assert mount_at(spec, "/dev/shm")["options"][-1] == "size=1g"
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.index("/data") < dests.index("/data/logs")
    assert dests.index("/dev") < dests.index("/dev/shm")


@pytest.mark.parametrize("opts, match", [
    ({"binds": ["data:/data"]}, r"binds\[0\]: source 'data' must be an absolute path"),
    ({"binds": ["/a:/b:rw,bogus"]}, r"binds\[0\]: unknown bind option 'bogus'"),
    ({"binds": ["/a"]}, r"binds\[0\]: '/a' is not"),
    ({"mounts": [{"Type": "npipe", "Target": "/x"}]}, r"mounts\[0\]: mount type 'npipe'"),
    ({"binds": ["/a:/x", "/b:/x"]}, "duplicate mount point /x"),
])
def test_mount_errors(rootfs, host, opts, match):
    with pytest.raises(ConfigError, match=match):
        gen(rootfs, host, **opts)


def test_read_only_rootfs(rootfs, host):
    assert gen(rootfs, host, read_only=True)["root"]["readonly"] is True


# ---------------------------------------------------------------- linux


def test_namespace_modes(rootfs, host):
    spec = gen(rootfs, host, pid_mode="host", ipc_mode="container:1234",
               network_mode="host", uts_mode="container:/run/netns/x")
    ns = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert "pid" not in ns and "network" not in ns
    assert ns["ipc"] == "/proc/1234/ns/ipc"
    assert ns["uts"] == "/run/netns/x"
    assert "hostname" not in spec
    # no private netns: the ping sysctl would change the host
    assert "sysctl" not in spec["linux"]
    # a joined IPC never gets the host's /dev/shm: its own unless the
    # engine names the other container's
    assert mount_at(spec, "/dev/shm")["type"] == "tmpfs"
    assert mount_at(spec, "/dev/mqueue")["type"] == "mqueue"
    shared = gen(rootfs, host, ipc_mode="container:1234", shm_path="/var/lib/x/shm")
    assert mount_at(shared, "/dev/shm")["source"] == "/var/lib/x/shm"
    assert mount_at(gen(rootfs, host, ipc_mode="host"), "/dev/shm")["source"] == "/dev/shm"
    assert mount_at(gen(rootfs, host, ipc_mode="none"), "/dev/shm") is None
    named = gen(rootfs, host, network_mode="mynet")
    assert {"type": "network"} in named["linux"]["namespaces"]


@pytest.mark.parametrize("opts, match", [
    ({"pid_mode": "bogus"}, "pid_mode: unknown mode 'bogus'"),
    ({"ipc_mode": "container:web"}, "ipc_mode: 'container:web'"),
    ({"uts_mode": "host", "hostname": "x"}, "hostname: cannot be set with uts_mode 'host'"),
    ({"cgroupns_mode": "x"}, "cgroupns_mode: unknown mode"),
])
def test_namespace_errors(rootfs, host, opts, match):
    with pytest.raises(ConfigError, match=match):
        gen(rootfs, host, **opts)


def test_sysctls(rootfs, host):
    spec = gen(rootfs, host, sysctls={"net.ipv4.ip_forward": 1, "kernel.shmmax": "1024"})
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1024",
                                       "net.ipv4.ping_group_range": "0 2147483647",
                                       "net.ipv4.ip_unprivileged_port_start": "0"}
    mine = gen(rootfs, host, sysctls={"net.ipv4.ping_group_range": "1 1"})
    assert mine["linux"]["sysctl"]["net.ipv4.ping_group_range"] == "1 1"
    with pytest.raises(ConfigError, match=r"sysctls\['net.ipv4.ip_forward'\]: not allowed "
                                          "with network_mode host"):
        gen(rootfs, host, network_mode="host", sysctls={"net.ipv4.ip_forward": "1"})
    with pytest.raises(ConfigError, match=r"sysctls\['vm.swappiness'\]: not a namespaced"):
        gen(rootfs, host, sysctls={"vm.swappiness": "1"})


def test_resources(rootfs, host):
    spec = gen(rootfs, host, memory=128 << 20, memory_swap=256 << 20, nano_cpus=1500000000,
               cpu_shares=512, cpuset_cpus="0-1", pids_limit=100, oom_score_adj=500)
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 128 << 20, "swap": 256 << 20}
    assert res["cpu"] == {"shares": 512, "period": 100000, "quota": 150000, "cpus": "0-1"}
    assert res["pids"] == {"limit": 100}
    assert spec["process"]["oomScoreAdj"] == 500
    assert gen(rootfs, host, memory=64 << 20)["linux"]["resources"]["memory"] == \
        {"limit": 64 << 20, "swap": 128 << 20}
    assert gen(rootfs, host, memory=64 << 20, memory_swap=-1)["linux"]["resources"]["memory"] \
        == {"limit": 64 << 20, "swap": -1}
    for unlimited in (0, -1):
        assert "pids" not in gen(rootfs, host, pids_limit=unlimited)["linux"]["resources"]


@pytest.mark.parametrize("opts, match", [
    ({"memory": 1024}, "memory: 1024 must be at least"),
    ({"memory": 64 << 20, "memory_swap": 32 << 20}, "memory_swap: .* is below memory"),
    ({"nano_cpus": 10 ** 9, "cpu_quota": 5000}, "nano_cpus: conflicts"),
    ({"pids_limit": "many"}, "pids_limit: 'many' must be an integer"),
    ({"oom_score_adj": 1001}, "oom_score_adj: 1001 must be at most 1000"),
])
def test_resource_errors(rootfs, host, opts, match):
    with pytest.raises(ConfigError, match=match):
        gen(rootfs, host, **opts)


def test_swap_without_accounting(rootfs, tmp_path):
    h = Host(arch="x86_64", kernel=(6, 1), apparmor=False, selinux=False, last_cap=40,
             swap_limit=False)
    assert gen(rootfs, h, memory=64 << 20)["linux"]["resources"]["memory"] == {"limit": 64 << 20}
    with pytest.raises(ConfigError, match="memory_swap: this host's kernel does not account swap"):
        gen(rootfs, h, memory=64 << 20, memory_swap=128 << 20)


def test_ulimits(rootfs, host):
    spec = gen(rootfs, host, ulimits=[{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                                      "nproc=100", "core=-1"])
    assert spec["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
        {"type": "RLIMIT_NPROC", "soft": 100, "hard": 100},
        {"type": "RLIMIT_CORE", "soft": 2 ** 64 - 1, "hard": 2 ** 64 - 1},
    ]
    with pytest.raises(ConfigError, match=r"ulimits\[0\]: unknown ulimit 'files'"):
        gen(rootfs, host, ulimits=["files=1"])
    with pytest.raises(ConfigError, match=r"ulimits\[0\]: soft limit 9 is above hard limit 1"):
        gen(rootfs, host, ulimits=["nofile=9:1"])


def test_cgroups_path_and_annotations(rootfs, host):
    spec = gen(rootfs, host, container_id="abc", cgroup_parent="tenants/a",
               annotations={"org.example": "1"})
    assert spec["linux"]["cgroupsPath"] == "/tenants/a/abc"
    assert spec["annotations"] == {"org.example": "1",
                                   "org.opencontainers.image.exposedPorts": "80/tcp",
                                   "org.opencontainers.image.stopSignal": "SIGTERM"}
    over = gen(rootfs, host, annotations={"org.opencontainers.image.stopSignal": "SIGQUIT"})
    assert over["annotations"]["org.opencontainers.image.stopSignal"] == "SIGQUIT"
    assert "annotations" not in gen(rootfs, host, image={"Cmd": ["sh"]})
    assert gen(rootfs, host, cgroups_path="/x/y")["linux"]["cgroupsPath"] == "/x/y"
    assert "cgroupsPath" not in gen(rootfs, host)["linux"]


def test_init(rootfs, host):
    with pytest.raises(ConfigError, match="init: needs init_path"):
        gen(rootfs, host, init=True)
    spec = gen(rootfs, host, init=True, init_path="/usr/bin/tini", cmd=["app"])
    assert spec["process"]["args"] == ["/sbin/berth-init", "--", "app"]
    assert mount_at(spec, "/sbin/berth-init")["source"] == "/usr/bin/tini"


def test_run_options_reject_unknown_names():
    with pytest.raises(ConfigError, match="run options: unknown option 'capadd'"):
        RunOptions(capadd=["X"])


def test_host_detects_this_machine():
    h = Host()
    assert h.last_cap >= captab.number("CAP_AUDIT_READ")
    assert h.apparmor is os.path.isdir("/sys/kernel/security/apparmor")


def test_rootfs_without_passwd(tmp_path, host):
    bare = tmp_path / "bare"
    bare.mkdir()
    spec = generate(IMAGE, RunOptions(user="1000:1000"), str(bare), host)
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000]}
    with pytest.raises(NotFound, match="unable to find user app"):
        generate(IMAGE, RunOptions(user="app"), str(bare), host)
    with pytest.raises(NotFound, match="rootfs .*missing"):
        generate(IMAGE, RunOptions(), str(tmp_path / "missing"), host)


def test_inputs_untouched_and_specs_independent(rootfs, host):
    import copy
    image = copy.deepcopy(IMAGE)
    opts = RunOptions(env=["A=1"], cap_add=["NET_RAW"], binds=["/a:/b"])
    before = repr(opts)
    one = generate(image, opts, rootfs, host)
    assert image == IMAGE and repr(opts) == before
    for rule in one["linux"]["seccomp"]["syscalls"]:
        for arg in rule.get("args") or ():
            arg["value"] = 999
        rule["names"].clear()
    two = generate(image, opts, rootfs, host)
    assert all(r["names"] for r in two["linux"]["seccomp"]["syscalls"])
    assert all(a["value"] != 999 for r in two["linux"]["seccomp"]["syscalls"]
               for a in r.get("args") or ())
