"""The authorization policy (src/berth/api/authz.py) against fake requests:
each rule, user overrides, path smuggling, and broken policy files."""
import json
import os

import pytest

from berth.api import authz
from berth.api.errors import Forbidden
from berth.api.http import Peer
from berth.errors import ConfigError


class FakeReq:
    """What the policy sees of a request; counts body reads."""

    def __init__(self, method, path, body=None, peer=None, params=None, query=None):
        self.method = method
        self.path = path
        self.params = params or {}
        self.query = query or {}
        self.peer = peer or Peer(uid=1000, gid=1000, pid=42)
        self._raw = json.dumps(body).encode() if body is not None else b""
        self._body = None
        self.reads = 0

    def json(self, default=None):
        self.reads += 1
        self._body = self._raw
        if not self._raw:
            return default
        return json.loads(self._raw)


def policy(doc, path="/etc/berth/authz.json"):
    return authz.Policy.from_dict(doc, path)


def create(hc=None, **kw):
    body = {"Image": "alpine", **kw}
    if hc is not None:
        body["HostConfig"] = hc
    return FakeReq("POST", "/containers/create", body)


def denied(pol, req, *words):
    with pytest.raises(Forbidden) as e:
        pol.check(req)
    msg = str(e.value)
    assert e.value.status == 403
    assert msg.startswith(f"authorization denied by policy {pol.path}: rule "), msg
    for w in words:
        assert w in msg, msg
    return msg


# -- deny_privileged ------------------------------------------------------

def test_privileged_denied_with_rule_and_file_named():
    pol = policy({"deny_privileged": True})
    msg = denied(pol, create({"Privileged": True}), "deny_privileged")
    assert msg == ("authorization denied by policy /etc/berth/authz.json: rule "
                   "deny_privileged: privileged containers are not allowed")


def test_unprivileged_create_allowed_and_body_still_readable():
    pol = policy({"deny_privileged": True})
    req = create({"Privileged": False, "Binds": []})
    pol.check(req)
    assert req.reads == 1 and req._body  # cached for the handler


def test_privileged_keys_matched_ignoring_case():
    # Go's decoder accepts any case; so must the policy
    pol = policy({"deny_privileged": True})
    req = FakeReq("POST", "/containers/create", {"Image": "x", "hostconfig": {"privileged": True}})
    denied(pol, req, "deny_privileged")
    req = FakeReq("POST", "/containers/create",
                  {"Image": "x", "HostConfig": {"Privileged": False, "PRIVILEGED": 1}})
    denied(pol, req, "deny_privileged")


def test_host_config_of_wrong_type_refused():
    pol = policy({"deny_privileged": True})
    denied(pol, FakeReq("POST", "/containers/create", {"HostConfig": ["Privileged"]}),
           "HostConfig is not a JSON object")


def test_rule_off_means_allowed():
    policy({}).check(create({"Privileged": True}))
    policy({"deny_privileged": False}).check(create({"Privileged": True}))


# -- allowed_bind_paths ---------------------------------------------------

@pytest.fixture
def binds_policy():
    return policy({"allowed_bind_paths": ["/srv/data", "/home/"]})


@pytest.mark.parametrize("bind", [
    "/srv/data:/data", "/srv/data/sub:/x:ro", "/srv//data/./a:/a", "/home/u:/h:rw,z",
    "myvolume:/var/lib/db", "/srv/data/../data/x:/y",
])
def test_binds_inside_allowed(binds_policy, bind):
    binds_policy.check(create({"Binds": [bind]}))


@pytest.mark.parametrize("bind,shown", [
    ("/srv/database:/db", "/srv/database"),        # no prefix tricks
    ("/srv/data/../../etc:/etc", "/etc"),
    ("/:/host", "/"),
    ("/etc/shadow:/s:ro", "/etc/shadow"),
    ("//etc:/e", "/etc"),
    ("/srv:/srv", "/srv"),
])
def test_binds_outside_denied(binds_policy, bind, shown):
    denied(binds_policy, create({"Binds": [bind]}), "rule allowed_bind_paths",
           f"bind mount of {shown} ", "/srv/data, /home")


def test_relative_bind_source_denied(binds_policy):
    denied(binds_policy, create({"Binds": ["./etc:/e"]}), "not an absolute path")
    denied(binds_policy, create({"Binds": ["srv/data:/e"]}), "not an absolute path")


def test_mounts_checked(binds_policy):
    binds_policy.check(create({"Mounts": [{"Type": "bind", "Source": "/srv/data/x",
                                           "Target": "/x"}]}))
    binds_policy.check(create({"Mounts": [{"Type": "volume", "Source": "vol", "Target": "/x"},
                                          {"Type": "tmpfs", "Target": "/t"}]}))
    denied(binds_policy, create({"Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/e"}]}),
           "bind mount of /etc from HostConfig.Mounts")
    denied(binds_policy, create({"Mounts": [{"type": "BIND", "source": "/etc", "Target": "/e"}]}),
           "/etc")
    # a mount without a known type is judged as a bind
    denied(binds_policy, create({"Mounts": [{"Source": "/etc", "Target": "/e"}]}), "/etc")
    # Type duplicated in another case: the worst reading wins
    denied(binds_policy, create({"Mounts": [{"Type": "volume", "type": "bind",
                                             "Source": "/etc", "Target": "/e"}]}), "/etc")


def test_volume_with_bind_device_option_checked(binds_policy):
    m = {"Type": "volume", "Target": "/x", "VolumeOptions": {"DriverConfig": {
        "Name": "local", "Options": {"type": "none", "o": "bind", "device": "/etc"}}}}
    denied(binds_policy, create({"Mounts": [m]}), "/etc", "volume device option")


def test_bind_through_symlink_denied(binds_policy, tmp_path):
    # the policy judges where a symlink leads now as well as its name
    base = tmp_path / "data"
    base.mkdir()
    (base / "link").symlink_to("/etc")
    pol = policy({"allowed_bind_paths": [str(base)]})
    pol.check(create({"Binds": [f"{base}/plain:/p"]}))
    denied(pol, create({"Binds": [f"{base}/link:/e"]}), "bind mount of /etc (via symlink")


def test_empty_allow_list_denies_every_bind():
    pol = policy({"allowed_bind_paths": []})
    denied(pol, create({"Binds": ["/srv:/srv"]}), "(none)")
    pol.check(create({"Binds": ["named:/data"]}))


def test_malformed_binds_refused(binds_policy):
    denied(binds_policy, create({"Binds": "/etc:/etc"}), "HostConfig.Binds is not a list")
    denied(binds_policy, create({"Binds": [7]}), "not a string")


# -- deny_host_namespaces ------------------------------------------------

@pytest.mark.parametrize("ns,field", list(authz.NAMESPACES.items()))
def test_each_host_namespace(ns, field):
    pol = policy({"deny_host_namespaces": [ns]})
    denied(pol, create({field: "host"}), "deny_host_namespaces", f"HostConfig.{field}=host",
           f"host's {ns} namespace")
    denied(pol, create({field: " HOST "}), field)
    pol.check(create({field: "private"}))
    pol.check(create({field: "container:abc"}))
    others = [f for n, f in authz.NAMESPACES.items() if n != ns]
    pol.check(create({others[0]: "host"}))


def test_build_with_host_network_denied():
    pol = policy({"deny_host_namespaces": ["network"]})
    req = FakeReq("POST", "/build", query={"networkmode": ["host"]})
    denied(pol, req, "networkmode=host")
    assert req.reads == 0
    pol.check(FakeReq("POST", "/build", query={"networkmode": ["default"]}))


# -- allowed_capabilities -------------------------------------------------

def test_capabilities():
    pol = policy({"allowed_capabilities": ["NET_ADMIN", "cap_sys_time"]})
    pol.check(create({"CapAdd": ["NET_ADMIN", "CAP_SYS_TIME", "net_admin"]}))
    denied(pol, create({"CapAdd": ["NET_ADMIN", "SYS_ADMIN"]}), "allowed_capabilities",
           "capability SYS_ADMIN", "NET_ADMIN, SYS_TIME")
    denied(pol, create({"CapAdd": ["ALL"]}), "all capabilities (ALL)")
    denied(pol, create({"CapAdd": ["cap_sys_module"]}), "SYS_MODULE")
    # Capabilities (API 1.40) replaces the default set: only additions count
    pol.check(create({"Capabilities": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"]}))
    denied(pol, create({"Capabilities": ["CAP_CHOWN", "CAP_SYS_PTRACE"]}), "SYS_PTRACE")


def test_all_allows_everything():
    pol = policy({"allowed_capabilities": ["ALL"]})
    pol.check(create({"CapAdd": ["ALL", "SYS_ADMIN"]}))


def test_empty_capability_list_denies_any_add():
    pol = policy({"allowed_capabilities": []})
    denied(pol, create({"CapAdd": ["CHOWN"]}), "capability CHOWN", "(none)")
    pol.check(create({"CapDrop": ["ALL"]}))


# -- deny_devices -----------------------------------------------------------

def test_devices():
    pol = policy({"deny_devices": True})
    pol.check(create({"Devices": []}))
    dev = {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda",
           "CgroupPermissions": "rwm"}
    denied(pol, create({"Devices": [dev]}), "deny_devices", "HostConfig.Devices")
    denied(pol, create({"DeviceCgroupRules": ["b *:* rwm"]}), "DeviceCgroupRules")


def test_update_devices_denied():
    pol = policy({"deny_devices": True})
    req = FakeReq("POST", "/containers/abc/update", {"Devices": [{"PathOnHost": "/dev/mem"}]},
                  params={"id": "abc"})
    denied(pol, req, "deny_devices", "Devices")
    pol.check(FakeReq("POST", "/containers/abc/update", {"Memory": 1 << 20}))


# -- deny_security_opt_unconfined ----------------------------------------

@pytest.mark.parametrize("opt", [
    "seccomp=unconfined", "seccomp:unconfined", "apparmor=unconfined", "label=disable",
    "label:disable", "no-new-privileges=false", "no-new-privileges:false", "Seccomp=Unconfined",
    "systempaths=unconfined",
])
def test_weakening_security_opts_denied(opt):
    pol = policy({"deny_security_opt_unconfined": True})
    denied(pol, create({"SecurityOpt": [opt]}), "deny_security_opt_unconfined", opt)


@pytest.mark.parametrize("opt", [
    "no-new-privileges", "no-new-privileges=true", "label=type:svirt_t",
    'seccomp={"defaultAction":"SCMP_ACT_ERRNO"}', "apparmor=docker-default",
])
def test_other_security_opts_allowed(opt):
    policy({"deny_security_opt_unconfined": True}).check(create({"SecurityOpt": [opt]}))


def test_unmasked_system_paths_denied():
    pol = policy({"deny_security_opt_unconfined": True})
    denied(pol, create({"MaskedPaths": []}), "MaskedPaths")
    denied(pol, create({"ReadonlyPaths": []}), "ReadonlyPaths")


# -- exec -----------------------------------------------------------------

def test_exec_rules():
    pol = policy({"deny_exec_privileged": True, "deny_exec_root": True})

    def ex(body):
        return FakeReq("POST", "/containers/c1/exec", body, params={"id": "c1"})
    pol.check(ex({"Cmd": ["sh"], "User": "1000"}))
    pol.check(ex({"Cmd": ["sh"]}))
    denied(pol, ex({"Cmd": ["sh"], "Privileged": True}), "deny_exec_privileged")
    for user in ("root", "0", "0:0", "root:wheel", "00"):
        denied(pol, ex({"Cmd": ["sh"], "User": user}), "deny_exec_root", repr(user))
    denied(pol, ex({"Cmd": ["sh"], "user": "root"}), "deny_exec_root")


# -- which bodies are read -------------------------------------------------

def test_other_bodies_never_read():
    pol = policy({"deny_privileged": True, "deny_exec_root": True, "deny_devices": True,
                  "allowed_bind_paths": [], "deny": [{"method": "DELETE", "path": "^/x$"}]})
    for method, path in (("POST", "/images/load"), ("POST", "/images/create"),
                         ("POST", "/containers/c1/start"), ("PUT", "/containers/c1/archive"),
                         ("POST", "/volumes/create"), ("POST", "/containers/create/extra")):
        req = FakeReq(method, path, {"HostConfig": {"Privileged": True}})
        pol.check(req)
        assert req.reads == 0, path


def test_body_not_read_without_body_rules():
    req = create({"Privileged": True})
    policy({"deny": [{"method": "DELETE", "path": "^/images/"}]}).check(req)
    assert req.reads == 0


# -- generic deny rules and path smuggling ----------------------------------

@pytest.fixture
def deny_policy():
    return policy({"deny": [
        {"method": "DELETE", "path": "^/images/"},
        {"method": ["POST", "PUT"], "path": "^/containers/[^/]+/archive$",
         "message": "copying files into containers is not allowed"},
        {"path": "^/swarm"},
        {"method": "GET", "path": "^/containers/[^/]+/export$"},
    ]})


def test_deny_rule(deny_policy):
    msg = denied(deny_policy, FakeReq("DELETE", "/images/alpine:latest"), "rule deny[0]",
                 "DELETE ^/images/", "DELETE /images/alpine:latest is not allowed")
    assert "deny[0] (DELETE ^/images/)" in msg
    deny_policy.check(FakeReq("GET", "/images/json"))
    denied(deny_policy, FakeReq("PUT", "/containers/c/archive"),
           "copying files into containers is not allowed")
    denied(deny_policy, FakeReq("GET", "/swarm"), "deny[2] (* ^/swarm)")
    denied(deny_policy, FakeReq("HEAD", "/containers/c/export"), "deny[3]")


@pytest.mark.parametrize("path", [
    "//images/alpine", "/images//alpine", "///images/x/", "/./images/x", "/containers/../images/x",
])
def test_smuggled_paths_still_match(deny_policy, path):
    denied(deny_policy, FakeReq("DELETE", path), "deny[0]")


@pytest.mark.parametrize("path", [
    "//containers/create", "/containers/create/", "/containers//create", "/containers/./create",
    "/x/../containers/create",
])
def test_smuggled_create_paths_still_read(path):
    pol = policy({"deny_privileged": True})
    req = FakeReq("POST", path, {"HostConfig": {"Privileged": True}})
    denied(pol, req, "deny_privileged")


def test_smuggled_exec_path():
    pol = policy({"deny_exec_privileged": True})
    denied(pol, FakeReq("POST", "/containers//abc/exec/", {"Privileged": True}),
           "deny_exec_privileged")


def test_normalize_path():
    n = authz.normalize_path
    assert n("//containers//create/") == "/containers/create"
    assert n("/a/./b/../c") == "/a/c"
    assert n("") == "/" and n("/") == "/" and n("//") == "/"
    assert n("/../../etc") == "/etc"


# -- users ------------------------------------------------------------------

BASE = {
    "deny_privileged": True,
    "allowed_bind_paths": ["/srv"],
    "users": {
        "0": {"unrestricted": True},
        "uid:1001": {"deny_privileged": False},
        "cn:ci-runner": {"allowed_bind_paths": ["/srv", "/var/cache/ci"]},
        "admin": {"unrestricted": True, "description": "the ops team's certificate"},
    },
}


def test_root_exempted():
    pol = policy(BASE)
    pol.check(FakeReq("POST", "/containers/create", {"HostConfig": {"Privileged": True,
                                                                    "Binds": ["/:/host"]}},
                      peer=Peer(uid=0, gid=0, pid=1)))


def test_override_replaces_only_its_field():
    pol = policy(BASE)
    p1001 = Peer(uid=1001, gid=1001, pid=9)
    pol.check(FakeReq("POST", "/containers/create", {"HostConfig": {"Privileged": True}},
                      peer=p1001))
    denied(pol, FakeReq("POST", "/containers/create", {"HostConfig": {"Binds": ["/etc:/e"]}},
                        peer=p1001), "allowed_bind_paths")
    denied(pol, create({"Privileged": True}), "deny_privileged")   # uid 1000: defaults


def test_tls_users_by_cn_only():
    pol = policy(BASE)
    ci = Peer(cert_subject="ci-runner", address="127.0.0.1")
    pol.check(FakeReq("POST", "/containers/create",
                      {"HostConfig": {"Binds": ["/var/cache/ci/x:/c"]}}, peer=ci))
    denied(pol, FakeReq("POST", "/containers/create", {"HostConfig": {"Privileged": True}},
                        peer=ci), "deny_privileged")
    pol.check(FakeReq("POST", "/containers/create", {"HostConfig": {"Privileged": True}},
                      peer=Peer(cert_subject="admin", address="x")))
    # a certificate whose CN is "0" is not root
    denied(pol, FakeReq("POST", "/containers/create", {"HostConfig": {"Privileged": True}},
                        peer=Peer(cert_subject="0", address="x")), "deny_privileged")
    # and a Unix-socket peer is never matched by CN
    denied(pol, FakeReq("POST", "/containers/create", {"HostConfig": {"Privileged": True}},
                        peer=Peer(uid=None)), "deny_privileged")


def test_user_deny_list_override():
    pol = policy({"deny": [{"path": "^/images/"}],
                  "users": {"uid:0": {"deny": []}}})
    pol.check(FakeReq("DELETE", "/images/x", peer=Peer(uid=0)))
    denied(pol, FakeReq("DELETE", "/images/x"), "deny[0]")


# -- loading ------------------------------------------------------------------

def write(tmp_path, doc, mode=0o644):
    p = tmp_path / "authz.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    os.chmod(p, mode)
    return str(p)


def test_load_missing(tmp_path):
    missing = str(tmp_path / "none.json")
    assert authz.load(missing) is None
    with pytest.raises(ConfigError, match="authz policy .*none.json: no such file"):
        authz.load(missing, required=True)


def test_load_good(tmp_path):
    p = write(tmp_path, BASE)
    pol = authz.load(p, required=True)
    assert pol.path == p
    denied(pol, create({"Privileged": True}), p)


@pytest.mark.parametrize("doc,field", [
    ("{not json", "malformed JSON"),
    ("[]", "expected a JSON object"),
    ({"deny_privilged": True}, "field deny_privilged: unknown field"),
    ({"deny_privileged": "yes"}, "field deny_privileged: expected true or false"),
    ({"allowed_bind_paths": "/srv"}, "field allowed_bind_paths: expected a list"),
    ({"allowed_bind_paths": ["srv"]}, "field allowed_bind_paths[0]: 'srv' is not an absolute"),
    ({"deny_host_namespaces": ["net"]}, "field deny_host_namespaces[0]: unknown namespace"),
    ({"allowed_capabilities": ["SYS ADMIN"]}, "field allowed_capabilities[0]"),
    ({"deny": [{"path": "(["}]}, "field deny[0].path: invalid regular expression"),
    ({"deny": [{"method": "FETCH", "path": "^/"}]}, "field deny[0].method: unknown method"),
    ({"deny": [{"method": "GET"}]}, "field deny[0].path: expected a regular expression"),
    ({"deny": [{"path": "^/", "paht": 1}]}, "field deny[0].paht: unknown field"),
    ({"users": {"uid:x": {}}}, "field users.uid:x"),
    ({"users": {"0": {}, "uid:0": {}}}, "field users.uid:0: names uid 0 a second time"),
    ({"users": {"0": {"deny_privileged": 1}}}, "field users.0.deny_privileged"),
    ({"users": {"0": {"users": {}}}}, "field users.0.users: unknown field"),
    ({"users": {"0": {"unrestricted": "yes"}}}, "field users.0.unrestricted"),
    ({"version": 2}, "field version: unsupported version"),
])
def test_load_bad(tmp_path, doc, field):
    p = write(tmp_path, doc)
    with pytest.raises(ConfigError) as e:
        authz.load(p)
    assert f"authz policy {p}" in str(e.value)
    assert field in str(e.value)


def test_load_refuses_writable_policy(tmp_path):
    p = write(tmp_path, {}, mode=0o666)
    with pytest.raises(ConfigError, match="writable by group or others"):
        authz.load(p)


def test_load_refuses_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a regular file"):
        authz.load(str(tmp_path), required=True)


def test_allowed_prefix_that_is_a_symlink(tmp_path):
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(real)
    pol = policy({"allowed_bind_paths": [str(tmp_path / "alias")]})
    pol.check(create({"Binds": [f"{tmp_path}/alias/sub:/s"]}))
    denied(pol, create({"Binds": [f"{real}/sub:/s"]}), "allowed_bind_paths")


def test_documented_example_loads(tmp_path):
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "authz.md").read_text()
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    p = write(tmp_path, example)
    pol = authz.load(p, required=True)
    pol.check(FakeReq("POST", "/containers/create", {"HostConfig": {"Privileged": True}},
                      peer=Peer(uid=0)))
    denied(pol, create({"Privileged": True}), "deny_privileged")
    denied(pol, FakeReq("PUT", "/containers/c/archive"), "copying files")
