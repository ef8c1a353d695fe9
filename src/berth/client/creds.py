"""Registry credentials the berth CLI keeps, in the docker CLI's file
($DOCKER_CONFIG/config.json, else ~/.docker/config.json; "auths": {server:
{"auth": base64("user:password")}}), so `docker login` and `berth login`
share them. The daemon never stores them: each push or pull carries them
in X-Registry-Auth."""
import base64
import json
import os

DOCKER_HUB = "https://index.docker.io/v1/"
ANONYMOUS = {"X-Registry-Auth": "e30="}   # base64 of {}


def config_path(env=None):
    env = os.environ if env is None else env
    d = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(d, "config.json")


def _load(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError:
        raise ValueError(f"{path}: not JSON; fix or remove it") from None
    return doc if isinstance(doc, dict) else {}


def _save(path, doc):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent="\t")
        f.write("\n")
    os.rename(tmp, path)


def server_key(server):
    """The key docker uses: the host[:port] of a registry, Docker Hub's URL."""
    host = (server or "").split("://", 1)[-1].split("/", 1)[0]
    if not host or host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return DOCKER_HUB
    return host


def registry_of(image):
    """'reg:5000/a/b:tag' -> 'reg:5000'; 'alpine' -> Docker Hub."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def store(server, user, password, env=None):
    path = config_path(env)
    doc = _load(path)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    doc.setdefault("auths", {})[server_key(server)] = {"auth": token}
    _save(path, doc)


def forget(server, env=None):
    """-> True if there was an entry."""
    path = config_path(env)
    doc = _load(path)
    if doc.get("auths", {}).pop(server_key(server), None) is None:
        return False
    _save(path, doc)
    return True


def header_for(image, env=None):
    """X-Registry-Auth for a push or pull of image."""
    server = registry_of(image)
    entry = (_load(config_path(env)).get("auths") or {}).get(server_key(server)) or {}
    try:
        user, _, password = base64.b64decode(entry.get("auth") or "").decode().partition(":")
    except ValueError:
        user = ""
    if not user:
        return dict(ANONYMOUS)
    body = json.dumps({"username": user, "password": password, "serveraddress": server})
    return {"X-Registry-Auth": base64.urlsafe_b64encode(body.encode()).decode()}
