"""hugetlb controller: linux.resources.hugepageLimits. The page size names
the file (hugetlb.2MB.limit_in_bytes on v1, hugetlb.2MB.max on v2); a size
the kernel does not offer fails on that file, by name."""
from berth.errors import ConfigError
from berth.oci.fields import objects
from berth.runtime.cgroups.values import PREFIX, integer

CONTROLLER = "hugetlb"


def page_size(v, field):
    """"2MB", "1GB", "64KB": the kernel's own spelling in the file names."""
    if not isinstance(v, str):
        raise ConfigError(f"{PREFIX}.{field}: {v!r} is not a page size like \"2MB\"")
    num, unit = v[:-2], v[-2:]
    if unit not in ("KB", "MB", "GB") or not num.isdigit() or num.startswith("0"):
        raise ConfigError(f"{PREFIX}.{field}: {v!r} is not a page size like \"2MB\"")
    return v


def writes(res, v2):
    out = []
    for f, e in objects(res.get("hugepageLimits"), "hugepageLimits", f"{PREFIX}."):
        size = page_size(e.get("pageSize"), f"{f}.pageSize")
        limit = integer(e, "limit", f"{f}.limit")
        if limit is None:
            raise ConfigError(f"{PREFIX}.{f}.limit: missing")
        if limit < -1:
            raise ConfigError(f"{PREFIX}.{f}.limit: {limit} is neither a size nor -1")
        if v2:
            out.append((f"hugetlb.{size}.max", "max" if limit == -1 else limit, f))
        else:
            out.append((f"hugetlb.{size}.limit_in_bytes", limit, f))
    return out
