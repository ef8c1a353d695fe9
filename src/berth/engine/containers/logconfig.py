"""HostConfig.LogConfig: which driver, and its options."""
from berth.errors import ConfigError


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
    if not lc:
        return
    if not isinstance(lc, dict):
        raise ConfigError("HostConfig.LogConfig: must be an object")
    if lc.get("Type") not in (None, "", "json-file"):
        raise ConfigError(f"HostConfig.LogConfig.Type: logging driver {lc['Type']!r} is not "
                          "supported", hint="berth writes json-file logs")
    for k, v in (lc.get("Config") or {}).items():
        if k == "max-size":
            parse_size(v, "LogConfig max-size")
        elif k == "max-file":
            if not str(v).isdigit() or int(v) < 1:
                raise ConfigError(f"LogConfig max-file: {v!r} must be a positive integer")
        else:
            raise ConfigError(f"HostConfig.LogConfig.Config: unknown log option {k!r}",
                              hint="json-file takes max-size and max-file")
