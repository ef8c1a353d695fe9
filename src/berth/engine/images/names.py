"""Image references normalised the way Docker does it.

`alpine` is `docker.io/library/alpine:latest`; the first path component is a
registry only if it looks like a host (has a dot or a port, is `localhost`,
or has capitals), so `user/app` stays on Docker Hub."""
import re

from berth.errors import BerthError

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_MAX_NAME = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


class Ref:
    """A normalised reference. tag is None only when a digest pins it."""

    __slots__ = ("registry", "repository", "tag", "digest")

    def __init__(self, registry, repository, tag=None, digest=None):
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest

    @property
    def name(self):
        return f"{self.registry}/{self.repository}"

    def familiar_name(self):
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        repo = self.repository
        if repo.startswith("library/") and repo.count("/") == 1:
            repo = repo[len("library/"):]
        return repo

    def _suffix(self):
        out = ""
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def familiar(self):
        return self.familiar_name() + self._suffix()

    def with_tag(self, tag):
        return Ref(self.registry, self.repository, tag, None)

    def __str__(self):
        return self.name + self._suffix()

    def __repr__(self):
        return f"Ref({str(self)!r})"

    def __eq__(self, other):
        return isinstance(other, Ref) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


def is_digest(text):
    return bool(_DIGEST.match(text))


def parse(ref):
    """Parse and normalise ref; a bare name gets the tag `latest`."""
    if not isinstance(ref, str) or not ref:
        raise BerthError("invalid reference format: empty reference")
    if _HEX64.match(ref):
        raise BerthError(f"invalid reference format: repository name {ref!r} "
                         "cannot be a 64-byte hexadecimal string",
                         hint="use the image id without a name, or a real repository name")
    rest = ref
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise BerthError(f"invalid reference format: digest {digest!r} in {ref!r} "
                             "is not sha256:<64 lowercase hex>")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise BerthError(f"invalid reference format: tag {tag!r} in {ref!r} must be "
                             "1-128 of [A-Za-z0-9_.-] and not start with '.' or '-'")
    if not rest:
        raise BerthError(f"invalid reference format: no repository name in {ref!r}")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"
                or first.lower() != first):
        registry, path = first, remainder
        if not _DOMAIN.match(registry):
            raise BerthError(f"invalid reference format: registry {registry!r} in {ref!r} "
                             "is not a host name with an optional port")
    else:
        registry, path = DEFAULT_REGISTRY, rest
    if registry == "index.docker.io":
        registry = DEFAULT_REGISTRY
    for part in path.split("/"):
        if not _COMPONENT.match(part):
            if part.lower() != part and _COMPONENT.match(part.lower()):
                raise BerthError(f"invalid reference format: repository name {part!r} "
                                 f"in {ref!r} must be lowercase")
            raise BerthError(f"invalid reference format: repository component {part!r} "
                             f"in {ref!r} must be lowercase letters, digits and single "
                             "'.', '_', '__' or '-' separators")
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if len(registry) + 1 + len(path) > _MAX_NAME:
        raise BerthError(f"invalid reference format: repository name in {ref!r} "
                         f"is longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Ref(registry, path, tag, digest)
