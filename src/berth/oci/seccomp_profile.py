"""Docker's seccomp profile format (moby's JSON: archMap, includes and
excludes by capability, architecture and kernel version) converted into an
OCI linux.seccomp object. Pure data: the engine's spec generator and the
runtime's tests both use it; loading filters is berth.runtime.security."""
from berth.errors import ConfigError

_DOCKER_ARCHES = {
    "x86_64": (("amd64", "x86_64"), "SCMP_ARCH_X86_64"),
    "amd64": (("amd64", "x86_64"), "SCMP_ARCH_X86_64"),
    "i386": (("386", "x86", "i386"), "SCMP_ARCH_X86"),
    "i686": (("386", "x86", "i386"), "SCMP_ARCH_X86"),
    "386": (("386", "x86", "i386"), "SCMP_ARCH_X86"),
    "x32": (("x32",), "SCMP_ARCH_X32"),
    "aarch64": (("arm64", "aarch64"), "SCMP_ARCH_AARCH64"),
    "arm64": (("arm64", "aarch64"), "SCMP_ARCH_AARCH64"),
    "arm": (("arm",), "SCMP_ARCH_ARM"),
    "armv7l": (("arm",), "SCMP_ARCH_ARM"),
    "ppc64le": (("ppc64le",), "SCMP_ARCH_PPC64LE"),
    "s390x": (("s390x",), "SCMP_ARCH_S390X"),
    "s390": (("s390",), "SCMP_ARCH_S390"),
    "riscv64": (("riscv64",), "SCMP_ARCH_RISCV64"),
    "mips64": (("mips64",), "SCMP_ARCH_MIPS64"),
    "mips64le": (("mips64le",), "SCMP_ARCH_MIPSEL64"),
    "loongarch64": (("loong64", "loongarch64"), "SCMP_ARCH_LOONGARCH64"),
    "loong64": (("loong64", "loongarch64"), "SCMP_ARCH_LOONGARCH64"),
}


def _kernel_version():
    import os
    release = os.uname().release
    return _version(release.split("-")[0], "kernel release")


def _version(text, where):
    parts = str(text).split(".")
    try:
        return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a kernel version like \"4.8\"") from None


def _cap_name(cap):
    cap = cap.upper()
    return cap if cap.startswith("CAP_") else "CAP_" + cap


def _skip(call, caps, arch_names, kernel, at):
    """Docker's rule: an entry applies unless an exclude matches or an
    include does not."""
    exc = call.get("excludes") or {}
    inc = call.get("includes") or {}
    if not isinstance(exc, dict) or not isinstance(inc, dict):
        raise ConfigError(f"{at}: includes and excludes must be objects")
    if any(a in arch_names for a in exc.get("arches") or ()):
        return True
    if any(_cap_name(c) in caps for c in exc.get("caps") or ()):
        return True
    if exc.get("minKernel") and kernel >= _version(exc["minKernel"], f"{at}.excludes.minKernel"):
        return True
    if inc.get("arches") and not any(a in arch_names for a in inc["arches"]):
        return True
    if any(_cap_name(c) not in caps for c in inc.get("caps") or ()):
        return True
    if inc.get("minKernel") and kernel < _version(inc["minKernel"], f"{at}.includes.minKernel"):
        return True
    return False


def from_docker_profile(profile, capabilities=(), arch="x86_64", kernel=None,
                        field="seccomp profile"):
    """Docker's JSON profile -> OCI linux.seccomp for one container.

    capabilities: the container's bounding set ("CAP_SYS_ADMIN" or
    "SYS_ADMIN"); arch: uname machine or Go arch name; kernel: (major,
    minor) for minKernel, default the running kernel."""
    if not isinstance(profile, dict):
        raise ConfigError(f"{field}: must be an object")
    known = _DOCKER_ARCHES.get(arch)
    if known is None:
        raise ConfigError(f"{field}: unknown architecture {arch!r}")
    arch_names, native = known
    caps = {_cap_name(c) for c in capabilities}
    if kernel is None:
        kernel = _kernel_version()

    out = {}
    for key in ("defaultAction", "defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"):
        if profile.get(key) is not None:
            out[key] = profile[key]

    if profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    elif profile.get("archMap"):
        if not isinstance(profile["archMap"], list):
            raise ConfigError(f"{field}.archMap: must be a list")
        for entry in profile["archMap"]:
            if isinstance(entry, dict) and entry.get("architecture") == native:
                out["architectures"] = [native] + list(entry.get("subArchitectures") or ())
                break

    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise ConfigError(f"{field}.syscalls: must be a list")
    rules = []
    for i, call in enumerate(syscalls):
        at = f"{field}.syscalls[{i}]"
        if not isinstance(call, dict):
            raise ConfigError(f"{at}: must be an object")
        if _skip(call, caps, arch_names, kernel, at):
            continue
        names = call.get("names")
        if not names and call.get("name"):
            names = [call["name"]]  # the format before "names" existed
        rule = {"names": list(names or ()), "action": call.get("action")}
        for key in ("errnoRet", "args"):
            if call.get(key) is not None:
                rule[key] = call[key]
        rules.append(rule)
    out["syscalls"] = rules
    return out
