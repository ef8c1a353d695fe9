"""/containers/...: lifecycle, inspect, list, logs, attach, top, stats."""
import json

from berth.api import filters as F
from berth.api.errors import BadRequest, HTTPError
from berth.api.http import MULTIPLEXED, RAW_STREAM, Response, empty, json_response
from berth.engine.containers import logs as L, stats, stream, view
from berth.errors import BerthError

_LIST_FILTERS = {"id", "name", "label", "status", "exited", "ancestor", "before", "since",
                 "volume", "network", "health", "is-task"}


def register(router, engine):
    cs = engine.containers

    def listing(req):
        filt = F.parse(req.q("filters"))
        F.check(filt, _LIST_FILTERS, "containers")
        items = cs.list(all=req.qbool("all") or bool(filt.get("status")) or
                        bool(filt.get("exited")))
        items = [c for c in items if _matches(engine, c, filt)]
        limit = req.qint("limit", -1)
        if limit and limit > 0:
            items = items[:limit]
        size = req.qbool("size")
        return json_response([view.summary(c, size) for c in items])

    def create(req):
        body = req.json(default={})
        name = req.q("name") or None
        c = cs.create(body, name)
        return json_response({"Id": c.id, "Warnings": []}, 201)

    def inspect(req):
        return json_response(view.inspect(cs.get(req.params["id"]), req.qbool("size")))

    def start(req):
        try:
            cs.start(req.params["id"])
        except _not_modified():
            return empty(304)
        return empty()

    def stop(req):
        try:
            cs.stop(req.params["id"], req.qint("t"), req.q("signal"))
        except _not_modified():
            return empty(304)
        return empty()

    def restart(req):
        cs.restart(req.params["id"], req.qint("t"))
        return empty()

    def kill(req):
        cs.kill(req.params["id"], req.q("signal") or "KILL")
        return empty()

    def pause(req):
        cs.pause(req.params["id"])
        return empty()

    def unpause(req):
        cs.unpause(req.params["id"])
        return empty()

    def wait(req):
        block = cs.waiter(req.params["id"], req.q("condition"))

        def gen():
            yield json.dumps(block()).encode() + b"\n"
        return Response(200, gen())

    def remove(req):
        cs.remove(req.params["id"], force=req.qbool("force"), volumes=req.qbool("v"))
        return empty()

    def rename(req):
        name = req.q("name")
        if not name:
            raise BadRequest("rename: query parameter name is required")
        cs.rename(req.params["id"], name)
        return empty()

    def resize(req):
        cs.resize(req.params["id"], req.qint("h", 24), req.qint("w", 80))
        return empty(200)

    def update(req):
        warnings = stats.update(cs, req.params["id"], req.json(default={}))
        return json_response({"Warnings": warnings})

    def container_logs(req):
        c = cs.get(req.params["id"])
        want = [s for s in ("stdout", "stderr") if req.qbool(s)]
        if not want:
            raise BadRequest("you must choose at least one stream")
        tail = req.q("tail", "all")
        try:
            tail_n = None if tail in ("all", "") else int(tail)
        except ValueError:
            raise BadRequest(f"tail: {tail!r} is not a number or 'all'")
        tty = bool(c.config.get("Tty"))
        chunks = L.read(c.log_path, want, tail_n, _ns(req.q("since")), _ns(req.q("until")),
                        tty, req.qbool("timestamps"), req.qbool("follow"), lambda: c.running)
        return Response(200, chunks, content_type=RAW_STREAM if tty else MULTIPLEXED)

    def attach(req):
        c = cs.get(req.params["id"])
        streams = {s: req.qbool(s) for s in ("stdin", "stdout", "stderr")}
        if not req.qbool("stream") and not req.qbool("logs"):
            raise BadRequest("attach: stream or logs must be set")
        tty = bool(c.config.get("Tty"))
        sock, rfile = req.hijack(RAW_STREAM if tty else MULTIPLEXED)
        if req.qbool("logs"):
            for chunk in L.read(c.log_path, [s for s in ("stdout", "stderr") if streams[s]],
                                tty=tty):
                sock.sendall(chunk)
        if not req.qbool("stream"):
            return None
        try:
            _, shim, _ = cs.attach_socket(c.id, streams)
        except BerthError as e:
            sock.sendall(f"attach failed: {e}\n".encode())
            return None
        early = stream.buffered(sock, rfile)
        try:
            stream.relay(sock, early, [(shim.fileno(), None)],
                         shim if streams["stdin"] else None)
        finally:
            shim.close()
        return None

    def top(req):
        return json_response(stats.top(cs, req.params["id"], req.q("ps_args") or "-ef"))

    def container_stats(req):
        c = cs.get(req.params["id"])
        one = not req.qbool("stream", True)
        # one-shot (API 1.41): the single sample without waiting for a previous one
        return Response(200, stats.stream(cs, c, one, previous=one and not req.qbool("one-shot")))

    def prune(req):
        filt = F.parse(req.q("filters"))
        F.check(filt, {"until", "label", "label!"}, "container prune")
        gone, space = cs.prune(keep=lambda c: not _prune_match(c, filt))
        return json_response({"ContainersDeleted": gone or None, "SpaceReclaimed": space})

    r = router.add
    r("GET", "/containers/json", listing)
    r("POST", "/containers/create", create)
    r("POST", "/containers/prune", prune)
    r("GET", "/containers/{id}/json", inspect)
    r("POST", "/containers/{id}/start", start)
    r("POST", "/containers/{id}/stop", stop)
    r("POST", "/containers/{id}/restart", restart)
    r("POST", "/containers/{id}/kill", kill)
    r("POST", "/containers/{id}/pause", pause)
    r("POST", "/containers/{id}/unpause", unpause)
    r("POST", "/containers/{id}/wait", wait)
    r("DELETE", "/containers/{id}", remove)
    r("POST", "/containers/{id}/rename", rename)
    r("POST", "/containers/{id}/resize", resize)
    r("POST", "/containers/{id}/update", update)
    r("GET", "/containers/{id}/logs", container_logs)
    r("POST", "/containers/{id}/attach", attach)
    r("GET", "/containers/{id}/top", top)
    r("GET", "/containers/{id}/stats", container_stats)
    from berth.api.routes import archive
    archive.register(router, engine)


def _not_modified():
    from berth.engine.containers.manager import NotModified
    return NotModified


def _ns(v):
    if not v or v == "0":
        return 0
    try:
        return int(float(v) * 1e9)
    except ValueError:
        from berth.engine.containers.logs import _parse_time
        try:
            return _parse_time(v)
        except ValueError:
            raise BadRequest(f"since/until: {v!r} is not a timestamp")


def _matches(engine, c, filt):
    for k, values in filt.items():
        if k == "id" and not any(c.id.startswith(v) for v in values):
            return False
        if k == "name" and not any(v.lstrip("/") in c.name.lstrip("/") for v in values):
            return False
        if k == "label" and not F.label_matches(values, c.labels):
            return False
        if k == "status":
            bad = set(values) - {"created", "restarting", "running", "removing", "paused",
                                 "exited", "dead"}
            if bad:
                raise HTTPError(400, f"invalid filter 'status={sorted(bad)[0]}'")
            if c.state["Status"] not in values:
                return False
        if k == "exited" and (c.state["Status"] != "exited" or
                              str(c.state["ExitCode"]) not in values):
            return False
        if k == "ancestor":
            ids = set()
            for v in values:
                try:
                    ids.add(engine.store.resolve(v))
                except BerthError:
                    pass
            if c.image_id not in ids and c.image not in values:
                return False
        if k == "volume" and not any(m.get("Name") in values or m.get("Destination") in values
                                     for m in c.data.get("Mounts") or []):
            return False
        if k == "network" and (c.host_config.get("NetworkMode") or "bridge") not in values:
            return False
        if k == "health" and (c.state.get("Health") or {}).get("Status", "none") not in values:
            return False
    return True


def _prune_match(c, filt):
    if "label" in filt and not F.label_matches(filt["label"], c.labels):
        return False
    if "label!" in filt and F.label_matches(filt["label!"], c.labels):
        return False
    if "until" in filt:
        from berth.engine.containers.logs import _parse_time
        try:
            limit = float(filt["until"][0])
        except ValueError:
            limit = _parse_time(filt["until"][0]) / 1e9
        if _parse_time(c.created) / 1e9 > limit:
            return False
    return True

