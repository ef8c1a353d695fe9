"""/images transfers: load, save, pull, import, push, and /auth. Long
transfers stream: save writes the archive through a pipe while it is read,
pull and push send Docker's JSON progress lines as they happen; an error
after the first line is a JSON {"errorDetail": ...} line, as dockerd sends
it, and before it a plain HTTP error."""
import base64
import json
import os
import queue
import threading

from berth.api.errors import BadRequest, Forbidden, HTTPError
from berth.api.http import Response, json_response, json_stream
from berth.api.routes.images import _changes, emit_event, ref_of, resolve
from berth.engine.images import archive, importer, names, registry
from berth.errors import BerthError, ConfigError, Conflict, NotFound

_PIPE_CHUNK = 1 << 16
_END = object()


def registry_auth(req):
    """X-Registry-Auth: base64url(JSON {username, password, serveraddress}
    or {identitytoken}); absent or empty means anonymous."""
    raw = req.headers.get("X-Registry-Auth")
    if not raw:
        return None
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        obj = json.loads(data or b"{}")
    except (ValueError, TypeError):
        raise BadRequest("X-Registry-Auth: not base64url-encoded JSON")
    if not isinstance(obj, dict):
        raise BadRequest("X-Registry-Auth: expected a JSON object")
    if obj.get("username") or obj.get("auth"):
        out = {k: obj[k] for k in ("username", "password", "auth") if obj.get(k)}
        return out
    if obj.get("identitytoken") or obj.get("registrytoken"):
        raise HTTPError(501, "registry identity tokens are not supported yet",
                        hint="log in with a username and password")
    return None


# streaming helpers

class _Worker:
    """Runs fn(progress) in a thread; its progress events and its end come
    through a queue, so a handler can answer with an HTTP error while
    nothing has been sent, and stream once the transfer is under way."""

    def __init__(self, fn):
        self.q = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            result = fn(self.q.put)
            self.q.put((_END, result, None))
        except BaseException as e:  # noqa: BLE001 - reported to the client
            self.q.put((_END, None, e))

    def start(self, under_way):
        """Collect events until under_way(event) or the end. Raises the
        worker's error if it failed before that. -> (events, finished, result)."""
        first = []
        while True:
            item = self.q.get()
            if isinstance(item, tuple) and item and item[0] is _END:
                _, result, err = item
                if err is not None:
                    raise err
                return first, True, result
            first.append(item)
            if under_way(item):
                return first, False, None

    def rest(self):
        while True:
            item = self.q.get()
            if isinstance(item, tuple) and item and item[0] is _END:
                return item
            yield item


def _loading(short, current, total):
    return {"status": "Loading layer", "progressDetail": {"current": current, "total": total},
            "progress": progress_bar(current, total), "id": short}


def progress_bar(current, total):
    """dockerd's "progress" text (Go's JSONProgress at its width of 200):
    a 50-column bar and decimal sizes with 4 significant digits."""
    if total <= 0:
        return f"{_human(current):>8}" if current > 0 else ""
    n = min(int(current / total * 100) // 2, 50)
    box = f"[{'=' * n}>{' ' * (50 - n)}] "
    return box + (f"{_human(current):>8}/{_human(total)}" if current <= total
                  else f"{_human(current):>8}")


def _human(n):
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    n = float(n)
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{units[i]}"


def _clean(ev):
    out = {k: v for k, v in ev.items() if k not in ("current", "total")}
    return out


def _error_line(e):
    msg = str(e)
    return {"errorDetail": {"message": msg}, "error": msg}


def _progress_response(worker, first, finished, result, done):
    """Stream first, then the worker's later events, then done(result)'s lines."""
    def gen():
        for ev in first:
            yield _clean(ev)
        res = result
        if not finished:
            for item in worker.rest():
                if isinstance(item, tuple) and item and item[0] is _END:
                    _, res, err = item
                    if err is not None:
                        yield _error_line(err)
                        return
                    break
                yield _clean(item)
        try:
            for line in done(res):
                yield line
        except Exception as e:  # noqa: BLE001 - the stream is under way: report in it
            yield _error_line(e)
    return Response(200, json_stream(gen()))


def _started(ev):
    s = ev.get("status", "")
    return "id" in ev and s not in ("",) and not s.startswith("Pulling from") \
        and not s.startswith("The push refers")


def register(router, engine):
    store = engine.store

    # -- load / save ------------------------------------------------------

    def load(req):
        """As dockerd: 200, "Loading layer" progress unless quiet, then a
        "Loaded image" line per tag the archive itself gave, or an error
        line (docker-py raises ImageLoadError on it). Like dockerd, the
        archive is taken in whole before the answer starts (the server reads
        a request's body before it answers), so the bars come at its end."""
        lines = []

        def layer(short, current, total):
            lines.append(_loading(short, current, total))
        try:
            loaded = archive.load_tagged(store, req.stream(), progress=None if req.qbool("quiet")
                                         else layer)
        except BerthError as e:
            return Response(200, json_stream(lines + [_error_line(e)]))
        for image_id, tags in loaded:
            shown = [names.parse(t).familiar() for t in tags] or [None]
            for t in shown:
                lines.append({"stream": f"Loaded image: {t}\n" if t else
                              f"Loaded image ID: {image_id}\n"})
                emit_event(engine, "load", image_id, t or image_id)
        return Response(200, json_stream(lines))

    def _save(refs):
        if not refs:
            raise BadRequest("names: at least one image is required")
        for ref in refs:
            resolve(store, ref)
        rfd, wfd = os.pipe()
        failed = []

        def writer():
            try:
                with open(wfd, "wb", buffering=_PIPE_CHUNK) as w:
                    archive.save(store, refs, w)
            except BrokenPipeError:
                pass
            except BaseException as e:  # noqa: BLE001 - ends the stream without its end marker
                failed.append(e)

        t = threading.Thread(target=writer, daemon=True, name="image-save")
        t.start()
        return Response(200, _PipeBody(rfd, t, failed), content_type="application/x-tar")

    def save_many(req):
        return _save(req.query.get("names", []))

    def save_one(req):
        return _save([req.params["name"]])

    # -- pull / import ----------------------------------------------------

    def create(req):
        if req.q("fromSrc") is not None:
            return import_(req)
        from_image = req.q("fromImage")
        if not from_image:
            raise BadRequest("fromImage or fromSrc is required")
        tag_ = req.q("tag") or ""
        if tag_ and names.is_digest(tag_):
            text = f"{from_image}@{tag_}"
        elif tag_:
            text = f"{from_image}:{tag_}"
        else:
            text = from_image
        r = ref_of(text)
        if req.q("platform"):
            plat = req.q("platform")
            if not plat.startswith("linux"):
                raise BadRequest(f"platform {plat!r}: only linux images can run here")
        reachable(engine, r)
        auth = registry_auth(req)
        worker = _Worker(lambda progress: registry.pull(store, r, auth=auth, progress=progress,
                                                        policy=engine.config.trust_policy))
        try:
            first, finished, result = worker.start(_started)
        except (NotFound, Conflict, HTTPError):
            raise
        except ConfigError as e:
            raise BadRequest(str(e)) from None
        except BerthError as e:
            raise registry_error(e) from None
        shown = r.familiar()

        def done(image_id):
            emit_event(engine, "pull", shown, shown)
            return []
        return _progress_response(worker, first, finished, result, done)

    def import_(req):
        src = req.q("fromSrc")
        if src != "-":
            raise HTTPError(501, f"import from {src!r}: only the request body (fromSrc=-) "
                                 "is supported", hint="pipe the tarball: docker import - < x.tar")
        repo = req.q("repo") or ""
        tag_ = req.q("tag") or ""
        ref = None
        if repo:
            ref = str(ref_of(f"{repo}:{tag_}" if tag_ else repo))
        config = _changes(req.query.get("changes", []))
        if "Env" in config and not any(e.startswith("PATH=") for e in config["Env"]):
            config["Env"].insert(0, importer.DEFAULT_PATH)
        try:
            image_id = importer.import_rootfs(store, req.stream(), ref, config=config,
                                              message=req.q("message") or "")
        except (NotFound, Conflict):
            raise
        except BerthError as e:
            raise BadRequest(f"import: {e}") from None
        emit_event(engine, "import", image_id, names.parse(ref).familiar() if ref else image_id)
        return Response(200, json_stream([{"status": image_id}]))

    # -- push -------------------------------------------------------------

    def push(req):
        name = req.params["name"]
        tag_ = req.q("tag") or ""
        r = ref_of(name)
        if tag_:
            r = ref_of(f"{r.name}:{tag_}")
            refs = [r]
        elif ":" in name.rsplit("/", 1)[-1]:
            refs = [r]
        else:
            refs = [names.parse(t) for t in store._load_tags() if names.parse(t).name == r.name]
            refs = refs or [r]
        for x in refs:
            resolve(store, str(x))
            reachable(engine, x)
        auth = registry_auth(req)
        pushed = {}

        def run(progress):
            for x in refs:
                digest = registry.push(store, x, auth=auth, progress=progress)
                size = store.blob_size(digest) if store.has_blob(digest) else 0
                pushed[str(x)] = digest
                progress({"progressDetail": {}, "aux": {"Tag": x.tag, "Digest": digest,
                                                        "Size": size}})
            return pushed

        worker = _Worker(run)
        try:
            first, finished, result = worker.start(_started)
        except (NotFound, Conflict, HTTPError):
            raise
        except BerthError as e:
            raise registry_error(e) from None

        def done(res):
            for x in refs:
                emit_event(engine, "push", x.familiar(), x.familiar())
            return []
        return _progress_response(worker, first, finished, result, done)

    def auth_login(req):
        """POST /auth (docker login): the daemon checks the credentials
        against the registry; it keeps nothing, the client stores them."""
        body = req.json() if req.body else {}
        if not isinstance(body, dict):
            raise BadRequest("/auth: expected a JSON object")
        server = str(body.get("serveraddress") or names.DEFAULT_REGISTRY)
        host = server.split("://", 1)[-1].split("/", 1)[0]
        if host in ("index.docker.io", "registry-1.docker.io"):
            host = names.DEFAULT_REGISTRY
        reachable(engine, names.Ref(host, "login"))
        creds = {k: body[k] for k in ("username", "password") if body.get(k)}
        try:
            registry.login(host, creds or None)
        except registry.LoginRefused as e:
            raise HTTPError(401, str(e)) from None
        return json_response({"Status": "Login Succeeded", "IdentityToken": ""})

    router.add("POST", "/auth", auth_login)
    router.add("POST", "/images/load", load)
    router.add("GET", "/images/get", save_many)
    router.add("POST", "/images/create", create)
    router.add("GET", "/images/{name:.+}/get", save_one)
    router.add("POST", "/images/{name:.+}/push", push)


class _PipeBody:
    """The read end of the save pipe as a response body. Closing it (the
    handler does when the client goes away, or the collector if the body
    was never sent) stops the writer with EPIPE."""

    def __init__(self, rfd, thread, failed):
        self.r = open(rfd, "rb", buffering=0)
        self.thread = thread
        self.failed = failed

    def __iter__(self):
        return self

    def __next__(self):
        chunk = self.r.read(_PIPE_CHUNK)
        if chunk:
            return chunk
        self.thread.join()
        self.close()
        if self.failed:
            # no terminating chunk: the client sees a broken transfer
            raise BerthError(f"save: {self.failed[0]}")
        raise StopIteration

    def close(self):
        if not self.r.closed:
            self.r.close()

    def __del__(self):
        self.close()


def registry_error(e):
    text = str(e)
    low = text.lower()
    if "unauthorized" in low or "denied" in low or "401" in text:
        return HTTPError(401 if "unauthorized" in low else 403, text)
    if "not found" in low or "unknown" in low or "404" in text:
        return NotFound(text)
    return HTTPError(500, text)


def reachable(engine, ref):
    """--loopback-registries-only (the test suites' daemons): no request
    may leave the machine, not even the DNS look-up of docker.io."""
    if getattr(engine.config, "loopback_registries_only", False):
        host = registry.split_host(ref.registry)[0]
        if not registry.is_loopback(host):
            raise Forbidden(f"registry {ref.registry}: this daemon only talks to registries on "
                            "loopback (--loopback-registries-only)")
