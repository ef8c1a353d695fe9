"""Docker's `filters` query parameter: {"name": ["a", "b"]} (or the old
{"name": {"a": true}} form)."""
from berth.api.errors import BadRequest
from berth.api.http import loads
from berth.engine.labels import label_matches  # noqa: F401 - the routes use it from here


def parse(text):
    if not text:
        return {}
    raw = loads(text, "filters")
    if raw is None:   # Go clients send a nil map as null
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("filters: expected a JSON object")
    out = {}
    for k, v in raw.items():
        if v is None:
            continue
        if isinstance(v, dict):
            v = [x for x, on in v.items() if on]
        elif isinstance(v, str):
            v = [v]
        elif not isinstance(v, list):
            raise BadRequest(f"filters: {k}: expected a list of strings")
        out[k] = [str(x) for x in v]
    return out


def check(filters, known, what):
    for k in filters:
        if k not in known:
            raise BadRequest(f"invalid filter '{k}' for {what}",
                             hint="known filters: " + ", ".join(sorted(known)))


def event_matches(filters, ev):
    if not filters:
        return True
    actor = ev["Actor"]
    attrs = actor.get("Attributes", {})
    for k, values in filters.items():
        if k == "type" and ev["Type"] not in values:
            return False
        if k == "event" and ev["Action"].split(":")[0] not in values and ev["Action"] not in values:
            return False
        if k in ("container", "image", "volume", "network"):
            if ev["Type"] != k and not (k == "image" and "image" in attrs):
                return False
            names = {actor["ID"], actor["ID"][:12], attrs.get("name", ""), attrs.get("image", "")}
            if not names & set(values):
                return False
        if k == "label" and not label_matches(values, attrs):
            return False
    return True
