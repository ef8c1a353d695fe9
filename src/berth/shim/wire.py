"""Minimal JSON for the shim's small messages, on the C accelerator alone
(json's decoder imports re; a shim per container pays for every module)."""
import _json

_enc = _json.encode_basestring_ascii


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo = {}


_scan = None


def dumps(obj):
    """JSON text of dicts/lists of str, int, float, bool and None."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, str):
        return _enc(obj)
    if isinstance(obj, (int, float)):
        return repr(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{_enc(str(k))}:{dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__} as json")


def loads_object(text):
    """The JSON object in text (str or bytes); ValueError if it is not one."""
    global _scan
    if _scan is None:
        _scan = _json.make_scanner(_Ctx())
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    text = text.strip()
    try:
        obj, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("not json") from None
    if end != len(text) or not isinstance(obj, dict):
        raise ValueError("not a json object")
    return obj
