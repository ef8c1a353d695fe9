"""nftables through libnftables (ctypes, JSON batches): no nft binary.

Every change replaces berth's own tables whole in one transaction (add,
delete, add again, then every chain and rule), so the rules always match
the driver's records and a half-applied state cannot exist."""
import ctypes
import json
import threading

from berth.errors import BerthError

NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_JSON = 1 << 4
NFT_CTX_OUTPUT_HANDLE = 1 << 3

_lib = None
_lock = threading.Lock()


def _load():
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
        except OSError as e:
            raise BerthError("libnftables.so.1 cannot be loaded",
                             hint="install Debian's libnftables1") from e
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        _lib = lib
    return _lib


def run(commands):
    """commands: a list of nftables JSON commands ({"add": {...}}, ...)
    -> the parsed JSON output (list), raising BerthError on failure."""
    lib = _load()
    text = json.dumps({"nftables": commands}).encode()
    with _lock:
        ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not ctx:
            raise BerthError("nft_ctx_new failed")
        try:
            lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON)
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            rc = lib.nft_run_cmd_from_buffer(ctx, text)
            out = lib.nft_ctx_get_output_buffer(ctx) or b""
            err = lib.nft_ctx_get_error_buffer(ctx) or b""
        finally:
            lib.nft_ctx_free(ctx)
    if rc != 0:
        raise BerthError("nftables: " + (err.decode(errors="replace").strip() or f"error {rc}"))
    out = out.decode(errors="replace").strip()
    if not out:
        return []
    try:
        return json.loads(out).get("nftables", [])
    except ValueError:
        return []


def list_tables():
    """-> [(family, name)]"""
    out = run([{"list": {"tables": {}}}])
    return [(o["table"]["family"], o["table"]["name"]) for o in out if "table" in o]


def delete_table(family, name):
    """Remove a table if it exists (add + delete in one batch: idempotent)."""
    replace_tables(name, {family: None})


def replace_table(family, name, body):
    """Atomically replace table family/name with body (a list of add
    commands for chains, sets and rules, written without the table keys,
    which are filled in here)."""
    replace_tables(name, {family: body})


def replace_tables(name, bodies):
    """{family: body, or None for a table that must go} -> the tables
    `family name` replaced (or removed) in one transaction."""
    cmds = []
    for family, body in bodies.items():
        table = {"table": {"family": family, "name": name}}
        cmds += [{"add": table}, {"delete": table}]
        if body is None:
            continue
        cmds.append({"add": table})
        for c in body:
            ((verb, obj),) = c.items()
            ((kind, spec),) = obj.items()
            cmds.append({verb: {kind: dict(spec, family=family, table=name)}})
    run(cmds)


# -- small builders for rule expressions ---------------------------------

def match(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


def meta(key):
    return {"meta": {"key": key}}


def payload(proto, field):
    return {"payload": {"protocol": proto, "field": field}}


def ct(key):
    return {"ct": {"key": key}}


def chain(name, hook=None, type_="filter", prio=0, policy="accept"):
    spec = {"name": name}
    if hook:
        spec.update({"type": type_, "hook": hook, "prio": prio, "policy": policy})
    return {"add": {"chain": spec}}


def rule(chain_name, *expr, comment=None):
    spec = {"chain": chain_name, "expr": list(expr)}
    if comment:
        spec["comment"] = comment[:127]
    return {"add": {"rule": spec}}
