"""berth's own security endpoints (not in Docker's API):

    GET  /berth/audit[?all=1&images=0]
         -> {"Score": 0-100, "Summary": {"PASS": n, ...}, "Checks": [...]}
         daemon configuration, every image, running containers (all=1: every
         container; images=0: skip the image layer scans)
    POST|GET /berth/images/{name}/scan
         -> {"Image": id, "RepoTags": [...], "Findings": [...], "Summary": {...}}

Both only read: nothing is run, secret values never leave the daemon.
Image scans are cached by image id (an image never changes)."""
import sys
import threading

from berth.api.http import json_response
from berth.engine import audit
from berth.engine.images import scan


def register(router, engine):
    cache = {}
    lock = threading.Lock()

    def options():
        opts = getattr(engine.config, "daemon_options", None)
        if opts is None:
            opts = audit.options_from_argv(sys.argv[1:])
        return opts

    def run_audit(req):
        with lock:   # one audit at a time: it may unpack layers
            result = audit.run(engine, options(),
                               scan_images=req.qbool("images", True),
                               all_containers=req.qbool("all", False),
                               scan_cache=cache,
                               levels={x for x in (req.q("level") or "").split(",") if x} or None)
        return json_response(result)

    def scan_image(req):
        image_id = engine.store.resolve(req.params["name"])
        with lock:
            result = cache.get(image_id)
            if result is None:
                result = scan.scan_image(engine.store, engine.driver, image_id)
                cache[image_id] = result
        # the tags may have changed since the scan was cached
        return json_response(dict(result, RepoTags=_tags(engine.store, image_id, result)))

    router.add("GET", "/berth/audit", run_audit)
    router.add("POST", "/berth/images/{name:.+}/scan", scan_image)
    router.add("GET", "/berth/images/{name:.+}/scan", scan_image)


def _tags(store, image_id, result):
    try:
        from berth.engine.images import names
        return [names.parse(t).familiar() for t in store.tags_of(image_id)]
    except Exception:  # noqa: BLE001
        return result.get("RepoTags", [])
