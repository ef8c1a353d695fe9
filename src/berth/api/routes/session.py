"""/session: the hijacked gRPC stream BuildKit's client opens. berthd builds
with the legacy builder only (/_ping never says Builder-Version 2, so the CLI
does not ask), and answers a session as dockerd answers one it cannot upgrade."""
from berth.api.errors import BadRequest, HTTPError


def register(router, engine):
    def session(req):
        if not req.headers.get("Upgrade"):
            raise BadRequest("no upgrade proto in request")
        raise HTTPError(501, "berthd has no BuildKit sessions: it builds with the legacy "
                             "builder (DOCKER_BUILDKIT=0)")

    router.add("POST", "/session", session)
