"""Swarm's endpoints, answered as a dockerd that is not in a swarm.

berthd has no swarm mode (scale-out is Kubernetes, see DESIGN), so every
swarm object is "not available" with dockerd's own words: clients match on
them (docker-py's teardown leaves the swarm and ignores exactly this 503)."""
from berth.api.errors import BadRequest, HTTPError

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or '
               '"docker swarm join" to connect this node to swarm and try again.')
NOT_IN_SWARM = "This node is not part of a swarm"
NO_SWARM_MODE = ("berthd has no swarm mode: scale out with Kubernetes, where berth-runtime "
                 "serves as a RuntimeClass handler (docs/kubernetes.md)")

# the object kinds of a swarm manager: each has a list, /{id} and verbs below it
OBJECTS = ("nodes", "services", "tasks", "secrets", "configs")


def not_manager(req):
    raise HTTPError(503, NOT_MANAGER)


def leave(req):
    raise HTTPError(503, NOT_IN_SWARM)


def init_or_join(req):
    body = req.json(default={})
    if not body.get("ListenAddr"):
        # dockerd checks the address before anything else
        raise BadRequest(f'invalid ListenAddr "{body.get("ListenAddr") or ""}": '
                         "invalid empty address")
    raise HTTPError(503, NO_SWARM_MODE)


def service_logs(req):
    if not (req.qbool("stdout") or req.qbool("stderr")):
        raise HTTPError(500, "Bad parameters: you must choose at least one stream")
    raise HTTPError(503, NOT_MANAGER)


def register(router, engine):
    router.add("GET", "/swarm", not_manager)
    router.add("POST", "/swarm/init", init_or_join)
    router.add("POST", "/swarm/join", init_or_join)
    router.add("POST", "/swarm/leave", leave)
    for method, path in (("POST", "/swarm/update"), ("GET", "/swarm/unlockkey"),
                         ("POST", "/swarm/unlock")):
        router.add(method, path, not_manager)
    router.add("GET", "/services/{id}/logs", service_logs)
    router.add("GET", "/tasks/{id}/logs", service_logs)
    for kind in OBJECTS:
        for method in ("GET", "POST", "DELETE"):
            router.add(method, f"/{kind}", not_manager)
            router.add(method, f"/{kind}/{{rest:.+}}", not_manager)
