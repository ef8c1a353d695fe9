"""/images: list, inspect, history, tag, remove, load, save, pull, import,
push, prune. Long transfers stream: save writes the archive through a pipe
while it is read, pull and push send Docker's JSON progress lines as they
happen; an error after the first line is a JSON {"errorDetail": ...} line,
as dockerd sends it, and before it a plain HTTP error."""
import base64
import fnmatch
import json
import os
import queue
import shlex
import threading

from berth.api import filters as F
from berth.api.errors import BadRequest, HTTPError, Forbidden
from berth.api.http import Response, json_response, json_stream
from berth.engine.images import archive, importer, names, registry
from berth.errors import BerthError, ConfigError, Conflict, NotFound

IMAGE_LIST_FILTERS = ("dangling", "label", "reference", "before", "since", "until")
PRUNE_FILTERS = ("dangling", "label", "label!", "until")
_PIPE_CHUNK = 1 << 16
_END = object()


# names and errors

def _ref(text, what="reference"):
    """Parse a name; a bad one is the client's mistake (400)."""
    try:
        return names.parse(text)
    except NotFound:
        raise
    except BerthError as e:
        raise BadRequest(str(e)) from None


def _shown(text):
    """How Docker names a missing image: 'x' -> 'x:latest', ids as given."""
    if text.startswith("sha256:") or (all(c in "0123456789abcdef" for c in text) and len(text) >= 12):
        return text
    try:
        return names.parse(text).familiar()
    except BerthError:
        return text


def resolve(store, text):
    try:
        return store.resolve(text)
    except NotFound:
        raise NotFound(f"No such image: {_shown(text)}") from None
    except Conflict:
        raise
    except BerthError as e:
        raise BadRequest(str(e)) from None


def _auth(req):
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


def _users(engine, image_id):
    fn = getattr(getattr(engine, "containers", None), "image_users", None)
    if fn is None:
        return []
    return list(fn(image_id) or [])


def _containers(engine):
    try:
        return list(engine.containers.list(all=True))
    except AttributeError:
        return []


def _emit(engine, action, actor, name):
    engine.events.emit("image", action, actor, {"name": name})


def _bool_filter(values, what):
    out = set()
    for v in values:
        if v.lower() in ("1", "true"):
            out.add(True)
        elif v.lower() in ("0", "false"):
            out.add(False)
        else:
            raise BadRequest(f"invalid filter '{what}={v}': expected true or false")
    return out


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


# the Dockerfile instructions `docker import --change` accepts

def _changes(lines):
    cfg = {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        op, _, arg = line.partition(" ")
        op, arg = op.upper(), arg.strip()

        def cmd_form():
            if arg.startswith("["):
                try:
                    v = json.loads(arg)
                except ValueError:
                    raise BadRequest(f"changes: {line!r}: malformed JSON array")
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise BadRequest(f"changes: {line!r}: expected a JSON array of strings")
                return v
            return ["/bin/sh", "-c", arg]

        if op == "CMD":
            cfg["Cmd"] = cmd_form()
        elif op == "ENTRYPOINT":
            cfg["Entrypoint"] = cmd_form()
        elif op == "ENV":
            env = cfg.setdefault("Env", [])
            pairs = []
            if "=" in arg.split(" ", 1)[0]:
                for part in shlex.split(arg):
                    k, eq, v = part.partition("=")
                    pairs.append((k, v))
            else:
                k, _, v = arg.partition(" ")
                pairs.append((k, v.strip()))
            for k, v in pairs:
                env[:] = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
        elif op == "LABEL":
            labels = cfg.setdefault("Labels", {})
            for part in shlex.split(arg):
                k, _, v = part.partition("=")
                labels[k] = v
        elif op == "EXPOSE":
            ports = cfg.setdefault("ExposedPorts", {})
            for p in arg.split():
                ports[p if "/" in p else p + "/tcp"] = {}
        elif op == "VOLUME":
            vols = cfg.setdefault("Volumes", {})
            for v in (cmd_form() if arg.startswith("[") else arg.split()):
                vols[v] = {}
        elif op == "USER":
            cfg["User"] = arg
        elif op == "WORKDIR":
            cfg["WorkingDir"] = arg
        elif op == "STOPSIGNAL":
            cfg["StopSignal"] = arg
        else:
            raise BadRequest(f"changes: {op} is not a valid change command",
                             hint="CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, "
                                  "WORKDIR or STOPSIGNAL")
    return cfg


def register(router, engine):
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
        _reachable(engine, names.Ref(host, "login"))
        creds = {k: body[k] for k in ("username", "password") if body.get(k)}
        try:
            registry.login(host, creds or None)
        except registry.LoginRefused as e:
            raise HTTPError(401, str(e)) from None
        return json_response({"Status": "Login Succeeded", "IdentityToken": ""})

    store = engine.store

    # -- list / inspect / history -------------------------------------

    def list_(req):
        filt = F.parse(req.q("filters"))
        F.check(filt, IMAGE_LIST_FILTERS, "images")
        imgs = store.images()
        if "dangling" in filt:
            want = _bool_filter(filt["dangling"], "dangling")
            imgs = [i for i in imgs if (not i["RepoTags"]) in want]
        if "label" in filt:
            imgs = [i for i in imgs if F.label_matches(filt["label"], i["Labels"])]
        if "reference" in filt:
            imgs = [i for i in imgs if _ref_match(filt["reference"], i["RepoTags"])]
        for key in ("before", "since"):
            for ref in filt.get(key, []):
                t = store.inspect(resolve(store, ref))
                created = next((i["Created"] for i in store.images() if i["Id"] == t["Id"]), 0)
                if key == "before":
                    imgs = [i for i in imgs if i["Created"] < created]
                else:
                    imgs = [i for i in imgs if i["Created"] > created]
        for i in imgs:
            i["VirtualSize"] = i["Size"]
            i.setdefault("Containers", -1)
            i.setdefault("SharedSize", -1)
            i.setdefault("ParentId", "")
        return json_response(imgs)

    def inspect(req):
        image_id = resolve(store, req.params["name"])
        out = store.inspect(image_id)
        out.setdefault("Parent", "")
        out["VirtualSize"] = out["Size"]
        out["Container"] = ""
        out["ContainerConfig"] = _empty_container_config()
        out["GraphDriver"] = {"Name": getattr(engine.driver, "name", "overlay2"), "Data": None}
        out["Metadata"] = {"LastTagTime": "0001-01-01T00:00:00Z"}
        return json_response(out)

    def history(req):
        return json_response(store.history(resolve(store, req.params["name"])))

    # -- tag / remove ---------------------------------------------------

    def tag(req):
        image_id = resolve(store, req.params["name"])
        repo = req.q("repo") or ""
        tag_ = req.q("tag") or ""
        if not repo:
            raise BadRequest("repo: a repository name is required")
        target = f"{repo}:{tag_}" if tag_ else repo
        r = _ref(target)
        if r.digest is not None:
            raise BadRequest(f"refusing to create a tag with a digest reference: {target}")
        store.tag(image_id, r)
        _emit(engine, "tag", image_id, r.familiar())
        return Response(201, b"", content_type=None)

    def remove(req):
        name = req.params["name"]
        force = req.qbool("force")
        image_id = resolve(store, name)
        tags = store.tags_of(image_id)
        r = None
        try:
            r = names.parse(name)
        except BerthError:
            pass
        by_name = str(r) if r is not None and r.digest is None and str(r) in tags else None
        last_tag = by_name is None or len(tags) <= 1
        users = _users(engine, image_id) if last_tag else []
        if users:
            running = {c.id for c in _containers(engine)
                       if c.id in users and (c.state or {}).get("Running")}
            cid = (sorted(running) or sorted(users))[0][:12]
            if running:
                raise Conflict(f"conflict: unable to delete {image_id[7:19]} (cannot be forced)"
                               f" - image is being used by running container {cid}")
            if not force:
                if by_name is not None:
                    raise Conflict(f"conflict: unable to remove repository reference "
                                   f"\"{r.familiar()}\" (must force) - container {cid} is "
                                   f"using its referenced image {image_id[7:19]}")
                raise Conflict(f"conflict: unable to delete {image_id[7:19]} (must be forced)"
                               f" - image is being used by stopped container {cid}")
            # forced: the names go, the image stays for its containers
            out = []
            for t in ([by_name] if by_name else tags):
                store.untag(t)
                out.append({"Untagged": names.parse(t).familiar()})
        else:
            out = store.remove(by_name or image_id, force=force)
        for item in out:
            if "Untagged" in item:
                _emit(engine, "untag", image_id, item["Untagged"])
            else:
                _emit(engine, "delete", item["Deleted"], item["Deleted"])
        return json_response(out)

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
                _emit(engine, "load", image_id, t or image_id)
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
        r = _ref(text)
        if req.q("platform"):
            plat = req.q("platform")
            if not plat.startswith("linux"):
                raise BadRequest(f"platform {plat!r}: only linux images can run here")
        _reachable(engine, r)
        auth = _auth(req)
        worker = _Worker(lambda progress: registry.pull(store, r, auth=auth, progress=progress))
        try:
            first, finished, result = worker.start(_started)
        except (NotFound, Conflict, HTTPError):
            raise
        except ConfigError as e:
            raise BadRequest(str(e)) from None
        except BerthError as e:
            raise _registry_error(e) from None
        shown = r.familiar()

        def done(image_id):
            _emit(engine, "pull", shown, shown)
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
            ref = str(_ref(f"{repo}:{tag_}" if tag_ else repo))
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
        _emit(engine, "import", image_id, names.parse(ref).familiar() if ref else image_id)
        return Response(200, json_stream([{"status": image_id}]))

    # -- push -------------------------------------------------------------

    def push(req):
        name = req.params["name"]
        tag_ = req.q("tag") or ""
        r = _ref(name)
        if tag_:
            r = _ref(f"{r.name}:{tag_}")
            refs = [r]
        elif ":" in name.rsplit("/", 1)[-1]:
            refs = [r]
        else:
            refs = [names.parse(t) for t in store._load_tags() if names.parse(t).name == r.name]
            refs = refs or [r]
        for x in refs:
            resolve(store, str(x))
            _reachable(engine, x)
        auth = _auth(req)
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
            raise _registry_error(e) from None

        def done(res):
            for x in refs:
                _emit(engine, "push", x.familiar(), x.familiar())
            return []
        return _progress_response(worker, first, finished, result, done)

    # -- prune / search ---------------------------------------------------

    def prune(req):
        filt = F.parse(req.q("filters"))
        F.check(filt, PRUNE_FILTERS, "image prune")
        dangling = _bool_filter(filt.get("dangling", ["true"]), "dangling")
        every = False in dangling
        keep = {c.image_id for c in _containers(engine) if getattr(c, "image_id", None)}
        if "label" in filt or "label!" in filt or "until" in filt:
            until = _unix_until(filt["until"][-1]) if filt.get("until") else None
            for i in store.images():
                labels = i["Labels"] or {}
                if "label" in filt and not F.label_matches(filt["label"], labels):
                    keep.add(i["Id"])
                if "label!" in filt and any(F.label_matches([w], labels) for w in filt["label!"]):
                    keep.add(i["Id"])
                if until is not None and i["Created"] > until:
                    keep.add(i["Id"])
        res = store.prune(all=every, keep=keep)
        for item in res["ImagesDeleted"]:
            if "Untagged" in item:
                _emit(engine, "untag", item["Untagged"], item["Untagged"])
            else:
                _emit(engine, "delete", item["Deleted"], item["Deleted"])
        return json_response({"ImagesDeleted": res["ImagesDeleted"] or None,
                              "SpaceReclaimed": res["SpaceReclaimed"]})

    def search(req):
        raise HTTPError(501, "image search is not supported by berth",
                        hint="browse the registry's web page, or pull the image by name")

    router.add("POST", "/auth", auth_login)
    router.add("GET", "/images/json", list_)
    router.add("POST", "/images/load", load)
    router.add("GET", "/images/get", save_many)
    router.add("POST", "/images/create", create)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/search", search)
    router.add("GET", "/images/{name:.+}/json", inspect)
    router.add("GET", "/images/{name:.+}/history", history)
    router.add("GET", "/images/{name:.+}/get", save_one)
    router.add("POST", "/images/{name:.+}/tag", tag)
    router.add("POST", "/images/{name:.+}/push", push)
    router.add("DELETE", "/images/{name:.+}", remove)


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


def _registry_error(e):
    text = str(e)
    low = text.lower()
    if "unauthorized" in low or "denied" in low or "401" in text:
        return HTTPError(401 if "unauthorized" in low else 403, text)
    if "not found" in low or "unknown" in low or "404" in text:
        return NotFound(text)
    return HTTPError(500, text)


def _ref_match(patterns, repo_tags):
    for t in repo_tags:
        name, _, tag = t.rpartition(":") if ":" in t.rsplit("/", 1)[-1] else (t, "", "")
        for p in patterns:
            if ":" in p.rsplit("/", 1)[-1] or "@" in p:
                if fnmatch.fnmatchcase(t, p):
                    return True
            elif fnmatch.fnmatchcase(name, p):
                return True
    return False


def _unix_until(text):
    import time
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return time.time() - float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise BadRequest(f"invalid filter 'until={text}': expected a unix time or a duration like 24h")


def _empty_container_config():
    return {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
            "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
            "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
            "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None}


def _reachable(engine, ref):
    """--loopback-registries-only (the test suites' daemons): no request
    may leave the machine, not even the DNS look-up of docker.io."""
    if getattr(engine.config, "loopback_registries_only", False):
        host = registry.split_host(ref.registry)[0]
        if not registry.is_loopback(host):
            raise Forbidden(f"registry {ref.registry}: this daemon only talks to registries on "
                            "loopback (--loopback-registries-only)")
