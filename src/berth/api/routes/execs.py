"""/containers/{id}/exec and /exec/{id}/...: create, start (hijacked or
detached), resize, inspect."""
from berth.api.errors import BadRequest
from berth.api.http import MULTIPLEXED, RAW_STREAM, empty, json_response
from berth.engine.containers import stream


def register(router, engine):
    execs = engine.containers.execs

    def create(req):
        ex = execs.create(req.params["id"], req.json(default={}))
        return json_response({"Id": ex.id}, 201)

    def start(req):
        body = req.json(default={})
        if not isinstance(body, dict):
            raise BadRequest("request body: expected a JSON object")
        ex = execs.get(req.params["id"])
        size = body.get("ConsoleSize")
        if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0
                                                             for v in size):
            ex.size = tuple(size)
        runner = execs.start(ex.id, detach=bool(body.get("Detach")))
        if runner is None:
            return empty(200)
        # framed by the start request's Tty (false when left out), not the
        # exec's: dockerd multiplexes a pty's output when start says false
        tty = bool(body.get("Tty"))
        runner.framed = not tty
        sock, rfile = req.hijack(RAW_STREAM if tty else MULTIPLEXED)
        runner(sock, stream.buffered(sock, rfile))
        return None

    def resize(req):
        execs.resize(req.params["id"], req.qint("h", 24), req.qint("w", 80))
        return empty(200)

    def inspect(req):
        return json_response(execs.get(req.params["id"]).inspect())

    router.add("POST", "/containers/{id}/exec", create)
    router.add("POST", "/exec/{id}/start", start)
    router.add("POST", "/exec/{id}/resize", resize)
    router.add("GET", "/exec/{id}/json", inspect)
