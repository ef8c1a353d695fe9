"""The checks dockerd makes of a create (and update) request before
anything is made, in dockerd's words: clients and people match on them.
All raise ConfigError (HTTP 400) unless dockerd answers otherwise."""
import os

from berth.errors import BerthError, ConfigError, NotFound

MIN_DURATION = 1_000_000  # ns: Docker's shortest health-check interval, timeout, start period
_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")


def go_duration(ns):
    """A duration in nanoseconds as Go's time.Duration prints it: 50ms,
    1.5s, 1m30s, 2h0m0s."""
    ns = int(round(ns))
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return sign + _frac(ns, 1000) + "µs"
    if ns < 1_000_000_000:
        return sign + _frac(ns, 1_000_000) + "ms"
    h, rest = divmod(ns, 3600 * 10**9)
    m, rest = divmod(rest, 60 * 10**9)
    s = _frac(rest, 10**9) + "s"
    if h:
        return f"{sign}{h}h{m}m{s}"
    if m:
        return f"{sign}{m}m{s}"
    return sign + s


def _frac(n, unit):
    whole, part = divmod(n, unit)
    if not part:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{part:0{digits}d}".rstrip("0")


def healthcheck(hc):
    if not hc:
        return
    if not isinstance(hc, dict):
        raise ConfigError("Healthcheck: must be an object")
    for key in ("Interval", "Timeout", "StartPeriod"):
        v = hc.get(key) or 0
        if not isinstance(v, int):
            raise ConfigError(f"{key} in Healthcheck must be a number of nanoseconds")
        if v != 0 and v < MIN_DURATION:
            raise ConfigError(f"{key} in Healthcheck cannot be less than "
                              f"{go_duration(MIN_DURATION)}")
    retries = hc.get("Retries") or 0
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError("Retries in Healthcheck cannot be negative")


def restart_policy(host):
    pol = host.get("RestartPolicy") or {}
    if not isinstance(pol, dict):
        raise ConfigError("HostConfig.RestartPolicy: must be an object")
    name = pol.get("Name") or ""
    count = pol.get("MaximumRetryCount") or 0
    if name not in _POLICIES:
        raise ConfigError(f"invalid restart policy '{name}'")
    if not isinstance(count, int) or count < 0:
        raise ConfigError("maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise ConfigError(f"maximum retry count cannot be used with restart policy '{name}'")
    if host.get("AutoRemove") and name not in ("", "no"):
        raise ConfigError("can't create 'AutoRemove' container with restart policy")


def _not_root(dest, kind):
    if os.path.normpath("/" + str(dest or "").lstrip("/")) == "/" and dest:
        raise ConfigError(f'invalid mount config for type "{kind}": invalid specification: '
                          "destination can't be '/'")


def mounts(host):
    """HostConfig.Mounts as dockerd's mount parser checks them; Binds and
    Tmpfs only for the destination (their syntax is checked later)."""
    for spec in host.get("Binds") or ():
        parts = spec.split(":") if isinstance(spec, str) else []
        if len(parts) >= 2 and parts[1] and os.path.normpath("/" + parts[1].lstrip("/")) == "/":
            # dockerd answers this one with a 500
            raise BerthError(f"invalid volume specification: '{spec}': invalid mount config "
                             "for type \"bind\": invalid specification: destination can't be '/'")
    for dest in host.get("Tmpfs") or {}:
        if os.path.normpath("/" + dest.lstrip("/")) == "/":
            raise ConfigError("invalid specification: destination can't be '/'")
    for m in host.get("Mounts") or ():
        if not isinstance(m, dict):
            continue
        kind = m.get("Type") or ""
        if kind not in ("bind", "volume", "tmpfs"):
            continue  # refused by name later
        if not m.get("Target"):
            raise ConfigError(f'invalid mount config for type "{kind}": field Target must '
                              "not be empty")
        _not_root(m["Target"], kind)
        for field, allowed in (("BindOptions", "bind"), ("VolumeOptions", "volume"),
                               ("TmpfsOptions", "tmpfs")):
            if m.get(field) and kind != allowed:
                raise ConfigError(f'invalid mount config for type "{kind}": field {field} '
                                  "must not be specified")
        if kind == "tmpfs" and m.get("Source"):
            raise ConfigError('invalid mount config for type "tmpfs": field Source must not '
                              "be specified")
        if kind == "bind":
            src = m.get("Source") or ""
            if not src:
                raise ConfigError('invalid mount config for type "bind": field Source must '
                                  "not be empty")
            if not os.path.isabs(src):
                raise ConfigError(f'invalid mount config for type "bind": invalid mount path: '
                                  f"'{src}' mount path must be absolute")
            if not os.path.exists(src):
                # unlike -v, --mount never makes a missing source
                raise ConfigError(f'invalid mount config for type "bind": bind source path '
                                  f"does not exist: {src}")


def platform(text, ref, image_os, image_arch):
    """?platform= of a create: "" or os[/arch[/variant]]. dockerd answers a
    mismatch as a missing image (404), on which the CLI pulls."""
    if not text:
        return
    parts = text.lower().split("/")
    if parts[0] not in ("linux", "windows", "darwin", "freebsd") or len(parts) > 3 \
            or not all(parts):
        raise ConfigError(f'"{text}": unknown operating system or architecture: invalid '
                          "argument")
    have_os, have_arch = image_os or "linux", _arch(image_arch)
    if parts[0] != have_os or (len(parts) > 1 and _arch(parts[1]) != have_arch):
        raise NotFound(f"image with reference {ref} was found but does not match the specified "
                       f"platform: wanted {text}, actual: {have_os}/{have_arch}")


def _arch(a):
    a = a or "amd64"
    return {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}.get(a, a)


def resources(host, ncpu=None):
    """dockerd's checks of the resource fields, at create and update."""
    def num(key):
        v = host.get(key) or 0
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"HostConfig.{key}: {v!r} must be an integer")
        return v
    ncpu = ncpu or os.cpu_count() or 1
    nano, quota, period = num("NanoCpus"), num("CpuQuota"), num("CpuPeriod")
    if nano and quota:
        raise ConfigError("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if nano and period:
        raise ConfigError("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano < 0 or nano > ncpu * 10**9:
        raise ConfigError(f"Range of CPUs is from 0.01 to {ncpu:.2f}, as there are only {ncpu} "
                          "CPUs available")
    if 0 < quota < 1000:
        raise ConfigError("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if period and not 1000 <= period <= 1000000:
        raise ConfigError("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s "
                          "(i.e. 1000000)")
    mem, swap, resv = num("Memory"), num("MemorySwap"), num("MemoryReservation")
    if 0 < mem < 6 << 20:
        raise ConfigError("Minimum memory limit allowed is 6MB")
    if mem and swap > 0 and swap < mem:
        raise ConfigError("Minimum memoryswap limit should be larger than memory limit, see usage")
    if mem and resv and mem < resv:
        raise ConfigError("Minimum memory limit can not be less than memory reservation limit, "
                          "see usage")
    if 0 < resv < 6 << 20:
        raise ConfigError("Minimum memory reservation allowed is 6MB")
    adj = num("OomScoreAdj")
    if not -1000 <= adj <= 1000:
        raise ConfigError(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
    cpus = host.get("CpusetCpus") or ""
    if cpus:
        _cpuset(cpus, ncpu)


def _cpu_list(text):
    """"0-2,5" -> {0, 1, 2, 5}"""
    out = set()
    for part in str(text).split(","):
        lo, _, hi = part.partition("-")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out


def _cpuset(text, ncpu):
    try:
        want = _cpu_list(text)
    except ValueError:
        raise ConfigError(f"Invalid value {text} for cpuset cpus") from None
    try:
        with open("/sys/devices/system/cpu/online") as f:
            online = _cpu_list(f.read().strip())
    except (OSError, ValueError):
        online = set(range(ncpu))
    if not want <= online:
        raise ConfigError(f"Requested CPUs are not available - requested {text}, available: "
                          f"{_ranges(online)}")


def _ranges(cpus):
    out, run = [], []
    for n in sorted(cpus):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)
