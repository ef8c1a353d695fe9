"""What `berth-runtime features` prints: the OCI "features structure"
(runtime-spec features.md), shaped as runc 1.1 prints it so callers that
parse runc's output (containerd, nerdctl) read ours.

Lists are taken from the tables the code that does the work checks against
(mount options, capability names, seccomp actions and operators), so this
can never advertise something a config.json would then be refused for. The
seccomp architectures are the runtime-spec names the loaded libseccomp
resolves, as runc reports those its libseccomp knows."""

OCI_VERSION_MIN = "1.0.0"
OCI_VERSION_MAX = "1.0.2-dev"

HOOKS = ["prestart", "createRuntime", "createContainer", "startContainer",
         "poststart", "poststop"]


def mount_options():
    """The options berth's mount code acts on itself; anything else in a
    mount's options goes to the filesystem as data and is not listed (the
    spec excludes filesystem-specific options). Options refused as
    unsupported (tmpcopyup, idmap) are not listed."""
    from berth.runtime import mounts
    return sorted(set(mounts.FLAGS) | set(mounts.PROPAGATION) | set(mounts.RECURSIVE)
                  | set(mounts.IGNORED))


def seccomp_features():
    from berth.runtime.security import seccomp
    from berth.sys import seccomp as sc
    from berth.errors import SysError

    try:
        archs = sorted("SCMP_ARCH_" + a for a in seccomp._ARCHES
                       if sc.arch_resolve_name(a.lower()))
        enabled = True
    except SysError:  # no libseccomp: seccomp in config.json cannot work
        archs, enabled = [], False
    return {
        "enabled": enabled,
        "actions": sorted(seccomp._ACTIONS),
        "operators": sorted(seccomp._OPS),
        "archs": archs,
    }


def features():
    import berth
    from berth.oci import spec
    from berth.sys import caps

    seccomp = seccomp_features()
    annotations = {"org.opencontainers.berth.version": berth.__version__}
    if seccomp["enabled"]:
        from berth.sys import seccomp as sc
        annotations["io.github.seccomp.libseccomp.version"] = "%d.%d.%d" % sc.version()
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": list(HOOKS),
        "mountOptions": mount_options(),
        "linux": {
            "namespaces": sorted(spec.NAMESPACES),
            "capabilities": list(caps.NAMES),
            # v1, v2 and hybrid by cgroupfs; no systemd cgroup driver
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": seccomp,
            # neither is implemented (this kernel has no AppArmor, SELinux is off)
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": dict(sorted(annotations.items())),
    }
