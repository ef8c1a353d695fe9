"""HostConfig.LogConfig: which driver, and its options, as dockerd takes
them. berth's shim writes json-file; "local" is the same writer with
local's defaults (its on-disk format is the daemon's own business, what
`docker logs` shows is the same); "none" keeps nothing, and reading its
logs is refused with dockerd's 501. Docker's other drivers are refused by
name, an unknown one as dockerd refuses a plugin it cannot find."""
from berth.errors import ConfigError

# driver -> the options it takes
DRIVERS = {"json-file": ("max-size", "max-file", "compress", "tag"),
           "local": ("max-size", "max-file", "compress"),
           "none": None}   # None: any option, ignored, as dockerd's none
DOCKERS_OTHERS = ("syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "etwlogs",
                  "gcplogs", "logentries")
# dockerd's defaults for local
LOCAL_MAX_SIZE = 20 << 20
LOCAL_MAX_FILES = 5


def parse_size(text, what):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = str(text).strip().lower().rstrip("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a size", hint="e.g. 10m") from None


def check_log_config(lc):
    """-> the LogConfig to record ({"Type", "Config"}); "" or no Type is
    the default driver, json-file."""
    if lc in (None, {}):
        return {"Type": "json-file", "Config": {}}
    if not isinstance(lc, dict):
        raise ConfigError("HostConfig.LogConfig: must be an object")
    kind = lc.get("Type") or "json-file"
    opts = lc.get("Config") or {}
    if not isinstance(opts, dict):
        raise ConfigError("HostConfig.LogConfig.Config: must be an object")
    if kind in DOCKERS_OTHERS:
        raise ConfigError(f"logging driver {kind!r} is not supported by berth",
                          hint="json-file, local or none")
    if kind not in DRIVERS:
        # dockerd's words for a driver it does not know
        raise ConfigError(f'error looking up logging plugin {kind}: plugin "{kind}" not found')
    allowed = DRIVERS[kind]
    for k, v in opts.items():
        if allowed is not None and k not in allowed:
            # dockerd's two drivers word it differently
            raise ConfigError(f"unknown log opt '{k}' for log driver local" if kind == "local"
                              else f"unknown log opt '{k}' for {kind} log driver")
        if allowed is None:
            continue
        if k == "max-size":
            parse_size(v, "LogConfig max-size")
        elif k == "max-file":
            if not str(v).isdigit() or int(v) < 1:
                raise ConfigError(f"LogConfig max-file: {v!r} must be a positive integer")
        elif k == "compress":
            if str(v).lower() not in ("true", "false", "1", "0"):
                raise ConfigError(f"LogConfig compress: {v!r} must be true or false")
            if kind == "json-file" and str(v).lower() in ("true", "1"):
                # rotated json-file logs stay plain text with berth
                raise ConfigError("LogConfig compress=true: not supported by berth's json-file "
                                  "driver", hint="use the local driver, or compress=false")
    return {"Type": kind, "Config": dict(opts)}


def reads(c):
    """Whether `docker logs` can read the container's logs."""
    return (c.host_config.get("LogConfig") or {}).get("Type") != "none"


def limits(c, default_size, default_files):
    """(max size in bytes, files kept) for the shim's writer; (0, 1) when
    nothing is kept."""
    lc = c.host_config.get("LogConfig") or {}
    opts = lc.get("Config") or {}
    if lc.get("Type") == "none":
        return 0, 1   # to /dev/null: never rotated
    if lc.get("Type") == "local":
        default_size, default_files = LOCAL_MAX_SIZE, LOCAL_MAX_FILES
    size, files = default_size, default_files
    if opts.get("max-size"):
        size = parse_size(opts["max-size"], "LogConfig max-size")
    if opts.get("max-file"):
        files = int(opts["max-file"])
    return size, files
