"""The legacy builder's cache and the words of its history.

Every step makes an image of its own, whose parent is the image before
it (dockerd's chain of intermediate images, hidden from the image list):
a later build of the same step on the same parent reuses it ("Using
cache"). The key is the parent, the step's command as dockerd records it
(`#(nop) ENV A=1`, `|1 A=1 /bin/sh -c make`, COPY with a hash of what it
copies) and the config it runs with. --cache-from instead takes the steps
of the images named, as dockerd does: a step is reused when such an
image's history goes on from the current image's with the same step."""
import hashlib
import json
import os

from berth.errors import BerthError
from berth.oci import jsonio

# what of the config decides whether a step's result can be reused
_KEYED = ("Env", "Labels", "ExposedPorts", "Entrypoint", "Cmd", "Volumes", "WorkingDir",
          "User", "Shell", "Healthcheck", "StopSignal", "OnBuild")


def nop(text):
    """The command of a step that changes only the config (dockerd's)."""
    return ["/bin/sh", "-c", "#(nop) ", text]


def go_quote(words):
    """Go's %q of a []string: ["a" "b c"]."""
    return "[" + " ".join(json.dumps(w) for w in words) + "]"


def go_list(words):
    """Go's %v of a []string: [a b c]."""
    return "[" + " ".join(words) + "]"


def healthcheck_text(hc):
    """Go's %q of dockerd 20.10's *HealthConfig, as its history shows it."""
    from berth.engine.containers.validate import go_duration

    def rune(n):
        return f"'{chr(n)}'" if 32 <= n < 127 else f"'\\x{n:02x}'"
    d = [go_duration(hc.get(k) or 0) for k in ("Interval", "Timeout", "StartPeriod")]
    return (f"HEALTHCHECK &{{{go_quote(hc.get('Test') or [])} \"{d[0]}\" \"{d[1]}\" "
            f"\"{d[2]}\" {rune(int(hc.get('Retries') or 0))}}}")


def created_by(cmd):
    return " ".join(cmd)


def key(parent, cmd, config):
    doc = {"parent": parent, "cmd": cmd, "config": {k: config.get(k) for k in _KEYED}}
    return hashlib.sha256(jsonio.dumps(doc).encode()).hexdigest()


class Cache:
    """The index of the steps built here: key -> image id."""

    def __init__(self, store, root):
        self.store = store
        self.path = os.path.join(root, "builder", "cache.json")

    def _load(self):
        try:
            return jsonio.load_file(self.path, "build cache")
        except (BerthError, OSError):
            return {}

    def get(self, k):
        image_id = self._load().get(k)
        if not image_id:
            return None
        try:
            self.store.record(image_id)
        except (BerthError, OSError):
            return None  # removed since
        return image_id

    def put(self, k, image_id):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        index = self._load()
        # entries of images that are gone go now
        live = {}
        for key_, iid in index.items():
            try:
                self.store.record(iid)
                live[key_] = iid
            except (BerthError, OSError):
                pass
        live[k] = image_id
        jsonio.write_atomic(self.path, live, mode=0o600)


def from_images(store, image_ids, current, cmd):
    """--cache-from: a step taken from one of the images, as dockerd's
    cache-from matches them: the image's history and layers go on from
    current's with this step. -> (layers, diff_ids, history, diff_sizes,
    manifest layers) of the image the step made, or None."""
    want = created_by(cmd)
    cur_cfg, cur_rec = store.config(current), store.record(current)
    cur_hist = cur_cfg.get("history") or []
    cur_ids = list(cur_rec["diff_ids"])
    for image_id in image_ids:
        cfg, rec = store.config(image_id), store.record(image_id)
        hist = cfg.get("history") or []
        n = len(cur_hist)
        if len(hist) <= n or [h.get("created_by") for h in hist[:n]] != \
                [h.get("created_by") for h in cur_hist] or hist[n].get("created_by") != want:
            continue
        ids = list(rec["diff_ids"])
        if ids[:len(cur_ids)] != cur_ids:
            continue
        take = len(cur_ids) + (0 if hist[n].get("empty_layer") else 1)
        if take > len(ids):
            continue
        sizes = list(rec.get("diff_sizes") or [])
        return (list(rec["layers"][:take]), ids[:take], hist[:n + 1],
                sizes[:take] if len(sizes) == len(ids) else None,
                list(rec["manifest"]["layers"][:take]))
    return None
