"""`list`: containers under the root, as runc's table, -q ids or JSON."""
import os

from berth.errors import BerthError
from berth.oci import jsonio
from berth.runtime.container import Container, list_ids


def entries(ctx):
    out = []
    for cid in list_ids(ctx.root):
        try:
            c = Container.load(ctx.root, cid)
        except Exception:
            continue
        st = c.oci_state()
        st["owner"] = _owner(os.stat(c.dir).st_uid)
        st.pop("annotations", None)
        out.append(st)
    return out


def _owner(uid):
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return f"#{uid}"


def main(ctx, opts, args):
    items = entries(ctx)
    fmt = opts.get("format") or "table"
    if fmt not in ("table", "json"):
        raise BerthError(f"--format {fmt!r}: invalid format option", hint="table or json")
    if opts.get("quiet"):
        text = "".join(s["id"] + "\n" for s in items)
    elif fmt == "json":
        text = jsonio.dumps(items or None) + "\n"
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
                 for s in items]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        text = "".join("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n" for r in rows)
    os.write(1, text.encode())
    return 0
