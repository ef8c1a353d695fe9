"""Walking config lists with errors that name the exact element."""
from berth.errors import ConfigError


def objects(value, field, prefix=""):
    """Yields (name, item) for each element of a list of objects, where name
    is like `linux.seccomp.syscalls[3]`. None is an empty list. prefix goes
    before the name in errors only, for callers that add it themselves."""
    if value is None:
        return
    if not isinstance(value, list):
        raise ConfigError(f"{prefix}{field}: must be a list")
    for i, item in enumerate(value):
        name = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{prefix}{name}: must be an object")
        yield name, item
