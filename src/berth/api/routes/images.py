"""/images: list, inspect, history, tag, remove, prune, search. The
transfers (load, save, pull, import, push, login) are in image_transfer.py."""
import json
import re
import shlex

from berth.api import filters as F
from berth.api.errors import BadRequest, HTTPError
from berth.api.http import Response, json_response
from berth.engine.images import names
from berth.errors import BerthError, Conflict, NotFound

IMAGE_LIST_FILTERS = ("dangling", "label", "reference", "before", "since", "until")
PRUNE_FILTERS = ("dangling", "label", "label!", "until")


# names and errors

def ref_of(text, what="reference"):
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


def emit_event(engine, action, actor, name):
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
            # as dockerd: an image shows only the names that match, and
            # goes when none does
            for i in imgs:
                for key in ("RepoTags", "RepoDigests"):
                    i[key] = [r for r in i[key] or [] if _familiar_match(filt["reference"], r)]
            imgs = [i for i in imgs if i["RepoTags"] or i["RepoDigests"]]
        for key in ("before", "since"):
            for ref in filt.get(key, []):
                t = store.inspect(resolve(store, ref))
                created = next((i["Created"] for i in store.images() if i["Id"] == t["Id"]), 0)
                if key == "before":
                    imgs = [i for i in imgs if i["Created"] < created]
                else:
                    imgs = [i for i in imgs if i["Created"] > created]
        for i in imgs:
            # dockerd's list has null, not [] or {}, for none (its inspect has [])
            i["RepoDigests"] = i["RepoDigests"] or None
            i["Labels"] = i["Labels"] or None
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
        # every field of Go's container.Config, zero where the image has none
        out["Config"] = {**_empty_container_config(), **(out.get("Config") or {})}
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
        r = ref_of(target)
        if r.digest is not None:
            raise BadRequest(f"refusing to create a tag with a digest reference: {target}")
        store.tag(image_id, r)
        emit_event(engine, "tag", image_id, r.familiar())
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
                emit_event(engine, "untag", image_id, item["Untagged"])
            else:
                emit_event(engine, "delete", item["Deleted"], item["Deleted"])
        return json_response(out)

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
                emit_event(engine, "untag", item["Untagged"], item["Untagged"])
            else:
                emit_event(engine, "delete", item["Deleted"], item["Deleted"])
        return json_response({"ImagesDeleted": res["ImagesDeleted"] or None,
                              "SpaceReclaimed": res["SpaceReclaimed"]})

    def search(req):
        raise HTTPError(501, "image search is not supported by berth",
                        hint="browse the registry's web page, or pull the image by name")

    router.add("GET", "/images/json", list_)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/search", search)
    router.add("GET", "/images/{name:.+}/json", inspect)
    router.add("GET", "/images/{name:.+}/history", history)
    router.add("POST", "/images/{name:.+}/tag", tag)
    router.add("DELETE", "/images/{name:.+}", remove)


def _familiar_match(patterns, ref):
    """dockerd's reference filter: Go's path.Match of a pattern on the
    familiar name with its tag or digest, or on the name alone."""
    name = ref.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return any(_go_match(p, ref) or _go_match(p, name) for p in patterns)


def _go_match(pattern, text):
    """Go's path.Match: * and ? stop at '/', [...] classes, \\ escapes."""
    rx, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            rx.append("[^/]*")
        elif c == "?":
            rx.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                return False   # Go: ErrBadPattern, which the filter takes as no match
            body = pattern[i + 1:j]
            rx.append("[" + ("^" + body[1:] if body.startswith("^") else body).replace("\\", "\\\\") + "]")
            i = j
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            rx.append(re.escape(pattern[i]))
        else:
            rx.append(re.escape(c))
        i += 1
    return re.fullmatch("".join(rx), text) is not None


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
