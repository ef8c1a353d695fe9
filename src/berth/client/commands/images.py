"""images, pull, push, load, save, import, tag, rmi, history, image
inspect/prune/sign/verify."""
import os
import sys

from berth.client import creds
from berth.client.args import UsageError
from berth.client.commands import Exit, filters

IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_HEADERS = {"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                  "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "Size": "SIZE"}


def split_ref(ref):
    """'reg:5000/a/b:tag' -> ('reg:5000/a/b', 'tag'); digests -> (name, 'sha256:..')."""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return name, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, ""


def full_name(ref):
    """Docker's familiar -> fully qualified name: alpine -> docker.io/library/alpine:latest."""
    name, tag = split_ref(ref)
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + ("library/" + name if "/" not in name else name)
    return f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag or 'latest'}"


def short_id(image_id, trunc=True):
    return image_id.split(":", 1)[-1][:12] if trunc else image_id


def _progress(ctx, resp, quiet=False, out=None):
    from berth.client.progress import StreamError, show
    try:
        return show(resp.json_stream(), out or ctx.out, quiet=quiet)
    except StreamError as e:
        ctx.fail(str(e))
        raise Exit(1)


def cmd_images(ctx, argv):
    from berth.client.format import Row, ago, human_size, local_time, render
    o, args = ctx.parse(argv, "images", max_args=1)
    flt = filters(o["filter"]) or {}
    if args:
        flt.setdefault("reference", []).append(args[0])
    imgs = ctx.client.get("/images/json", all=o["all"] or None, filters=flt or None,
                          digests=o["digests"] or None)
    trunc = not o["no_trunc"]
    if o["quiet"]:
        seen = []
        for i in imgs:
            sid = short_id(i["Id"], trunc)
            if sid not in seen:
                seen.append(sid)
        ctx.out.write("".join(s + "\n" for s in seen))
        return
    rows = []
    for i in imgs:
        digests = i.get("RepoDigests") or []
        tags = [t for t in i.get("RepoTags") or [] if t != "<none>:<none>"]
        pairs = [split_ref(t) for t in tags]
        if not pairs:
            pairs = [(split_ref(d)[0], "<none>") for d in digests if d != "<none>@<none>"][:1] or [("<none>", "<none>")]
        for repo, tag in pairs:
            dig = next((split_ref(d)[1] for d in digests if split_ref(d)[0] == repo), "<none>")
            rows.append(Row("image", {"ID": short_id(i["Id"], trunc), "Repository": repo, "Tag": tag, "Digest": dig,
                         "CreatedSince": ago(i.get("Created", 0)),
                         "CreatedAt": local_time(i.get("Created", 0)),
                         "Size": human_size(i.get("Size", 0), 3),
                         "VirtualSize": human_size(i.get("VirtualSize", i.get("Size", 0)), 3),
                         "SharedSize": human_size(i.get("SharedSize", 0), 3) if i.get("SharedSize", -1) >= 0 else "N/A",
                         "Containers": str(i["Containers"]) if i.get("Containers", -1) >= 0 else "N/A",
                         "Labels": ",".join(f"{k}={v}" for k, v in (i.get("Labels") or {}).items())},
                            labels=i.get("Labels")))
    table = IMAGES_TABLE.replace("{{.Tag}}\t", "{{.Tag}}\t{{.Digest}}\t") if o["digests"] else IMAGES_TABLE
    ctx.out.write(render(rows, o["format"], table, IMAGES_HEADERS))


def pull(ctx, ref, quiet=False, all_tags=False, out=None):
    """Pulls ref, showing progress on `out`; returns the full name."""
    name, tag = split_ref(ref)
    if not tag and not all_tags:
        tag = "latest"
        if not quiet:
            (out or ctx.out).write("Using default tag: latest\n")
    resp = ctx.client.request("POST", "/images/create", {"fromImage": name, "tag": tag or None},
                              headers=creds.header_for(name))
    _progress(ctx, resp, quiet, out)
    return full_name(f"{name}:{tag}" if tag and not tag.startswith("sha256:") else
                     f"{name}@{tag}" if tag else name)


def cmd_pull(ctx, argv):
    o, args = ctx.parse(argv, "pull", min_args=1, max_args=1)
    ctx.out.write(pull(ctx, args[0], o["quiet"], o["all_tags"]) + "\n")


def cmd_push(ctx, argv):
    o, args = ctx.parse(argv, "push", min_args=1, max_args=1)
    name, tag = split_ref(args[0])
    if not tag and not o["all_tags"]:
        ctx.out.write("Using default tag: latest\n")
        tag = "latest"
    resp = ctx.client.request("POST", f"/images/{name}/push", {"tag": tag or None},
                              headers=creds.header_for(name))
    _progress(ctx, resp, o["quiet"])


def _input(ctx, path, what):
    if path and path != "-":
        try:
            return open(path, "rb")
        except OSError as e:
            ctx.fail(f"open {path}: {e.strerror}")
            raise Exit(1)
    if sys.stdin.isatty():
        ctx.fail(f"requested {what} from stdin, but stdin is a terminal: use -i FILE or redirect")
        raise Exit(1)
    return sys.stdin.buffer


def _output(ctx, path):
    if path and path != "-":
        return open(path, "wb")
    if sys.stdout.isatty():
        ctx.fail("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        raise Exit(1)
    return sys.stdout.buffer


def cmd_load(ctx, argv):
    o, _ = ctx.parse(argv, "load", max_args=0)
    with _input(ctx, o["input"], "load") as f:
        resp = ctx.client.request("POST", "/images/load", {"quiet": o["quiet"]}, body=f)
        _progress(ctx, resp)


def cmd_save(ctx, argv):
    o, args = ctx.parse(argv, "save", min_args=1)
    resp = ctx.client.request("GET", "/images/get", {"names": args})
    out = _output(ctx, o["output"])
    try:
        for piece in resp.chunks():
            out.write(piece)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()


def cmd_import(ctx, argv):
    o, args = ctx.parse(argv, "import", min_args=1, max_args=2)
    params = {"message": o["message"] or None, "changes": o["change"] or None}
    if len(args) > 1:
        params["repo"], params["tag"] = split_ref(args[1])
    src = args[0]
    if src.startswith(("http://", "https://")):
        params["fromSrc"] = src
        resp = ctx.client.request("POST", "/images/create", params)
    else:
        params["fromSrc"] = "-"
        with _input(ctx, src, "import") as f:
            resp = ctx.client.request("POST", "/images/create", params, body=f)
    _progress(ctx, resp)


def cmd_tag(ctx, argv):
    _, args = ctx.parse(argv, "tag", min_args=2, max_args=2)
    repo, tag = split_ref(args[1])
    ctx.client.request("POST", f"/images/{args[0]}/tag", {"repo": repo, "tag": tag or "latest"}).close()


def cmd_rmi(ctx, argv):
    o, args = ctx.parse(argv, "rmi", min_args=1)

    def one(name):
        for d in ctx.client.delete(f"/images/{name}", force=o["force"] or None,
                                   noprune=o["no_prune"] or None) or []:
            for k, v in d.items():
                ctx.out.write(f"{k}: {v}\n")
    ctx.each(args, one, echo=False)


def cmd_history(ctx, argv):
    from berth.client.format import ago, ellipsis, human_size, render
    o, args = ctx.parse(argv, "history",
                        min_args=1, max_args=1)
    human = "--human=false" not in argv and "-H=false" not in argv
    hist = ctx.client.get(f"/images/{args[0]}/history")
    trunc = not o["no_trunc"]
    if o["quiet"]:
        ctx.out.write("".join(short_id(h["Id"], trunc) + "\n" for h in hist))
        return
    rows = []
    for h in hist:
        by = (h.get("CreatedBy") or "").replace("\t", " ")
        created = h.get("Created", 0)
        if not human:
            import time
            when = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(created))
        rows.append({"ID": h["Id"] if h["Id"] == "<missing>" else short_id(h["Id"], trunc),
                     "CreatedSince": ago(created) if human else when,
                     "CreatedBy": ellipsis(by, 45) if trunc else by,
                     "Size": human_size(h.get("Size", 0), 3) if human else str(h.get("Size", 0)),
                     "Comment": h.get("Comment", ""), "Tags": ",".join(h.get("Tags") or [])})
    ctx.out.write(render(rows, o["format"],
                         "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
                         {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY"},
                         kind="history"))


def cmd_inspect(ctx, argv):
    from berth.client.commands.system import inspect
    inspect(ctx, argv, "image")


def cmd_prune(ctx, argv):
    o, _ = ctx.parse(argv, "image prune", max_args=0)
    if not o["force"] and not ctx.confirm(
            "This will remove all images without at least one container associated to them."
            if o["all"] else "This will remove all dangling images."):
        return
    flt = dict(filters(o["filter"]) or {}, dangling=["false" if o["all"] else "true"])
    r = ctx.client.post("/images/prune", filters=flt) or {}
    from berth.client.format import human_size
    if r.get("ImagesDeleted"):
        ctx.out.write("Deleted Images:\n" + "".join(
            "".join(f"{k.lower()}: {v}\n" for k, v in d.items()) for d in r["ImagesDeleted"]) + "\n")
    ctx.out.write(f"Total reclaimed space: {human_size(r.get('SpaceReclaimed') or 0)}\n")


def _trust(ctx, action, params, name):
    from berth.client.api import APIError
    try:
        return ctx.client.post(f"/berth/images/{name}/{action}", **params)
    except APIError as e:
        if e.status == 404 and str(e).startswith("page not found"):
            ctx.fail(f"not available: daemon has no /berth/images/{{name}}/{action} endpoint")
            raise Exit(1)
        raise


def cmd_sign(ctx, argv):
    """With a cosign key: a sigstore signature, made here (the key and its
    password never leave this process) over the payload berthd hands out,
    pushed by berthd beside the image (POST /berth/images/{name}/sigstore/...).
    With --signer: berth's own local signature, by a key file on the
    daemon's host (POST /berth/images/{name}/sign?key=PATH&signer=NAME)."""
    o, args = ctx.parse(argv, "image sign", min_args=1, max_args=1)
    if not o["key"]:
        raise UsageError("image sign: --key is required")
    if o["signer"]:
        r = _trust(ctx, "sign", {"key": os.path.abspath(o["key"]), "signer": o["signer"]}, args[0])
        ctx.out.write(f"Signed {args[0]} as {o['signer']}"
                      + (f": {r['Signature']}" if r and r.get("Signature") else "") + "\n")
        return
    import base64
    import json
    from berth.client import cosign_keys
    key = _local(ctx, cosign_keys.load_private, o["key"],
                 _password(ctx, "Enter password for private key: "))
    name, hdr = args[0], creds.header_for(args[0])
    p = ctx.client.request("POST", f"/berth/images/{name}/sigstore/payload", headers=hdr).json()
    signature = _local(ctx, cosign_keys.sign, key, base64.b64decode(p["Payload"]))
    body = json.dumps({"Payload": p["Payload"],
                       "Signature": base64.b64encode(signature).decode()}).encode()
    r = ctx.client.request("POST", f"/berth/images/{name}/sigstore/signatures", body=body,
                           headers=dict(hdr, **{"Content-Type": "application/json"})).json()
    ctx.out.write(f"Signed {r['Reference']} ({r['ManifestDigest']}): pushed {r['Tag']}\n")


def _local(ctx, fn, *args):
    """fn's result; its BerthError (a key file's problem) as berth's one-line error."""
    from berth.errors import BerthError
    try:
        return fn(*args)
    except BerthError as e:
        ctx.fail(str(e))
        raise Exit(1)


def _password(ctx, prompt, confirm=False):
    if "COSIGN_PASSWORD" in os.environ:
        return os.environ["COSIGN_PASSWORD"]
    if not sys.stdin.isatty():
        ctx.fail("no password: set COSIGN_PASSWORD or run on a terminal")
        raise Exit(1)
    import getpass
    pw = getpass.getpass(prompt)
    if confirm and getpass.getpass("Enter password for private key again: ") != pw:
        ctx.fail("passwords do not match")
        raise Exit(1)
    return pw


def cmd_keygen(ctx, argv):
    """A cosign-compatible key pair (ECDSA P-256): PREFIX.key, encrypted
    with the password, and PREFIX.pub; made here, never by the daemon."""
    o, args = ctx.parse(argv, "image keygen", max_args=0)
    from berth.client import cosign_keys
    prefix = o["output_key_prefix"] or "cosign"
    key, pub = _local(ctx, cosign_keys.write_pair, prefix,
                      _password(ctx, "Enter password for private key: ", confirm=True))
    ctx.out.write(f"Private key written to {key}\nPublic key written to {pub}\n")


def cmd_verify(ctx, argv):
    """--key FILE.pub: the registry's sigstore signatures of IMAGE, checked by
    berthd under that key (cosign verify). --keys PATH: berth's local
    signatures, keys on the daemon's host (a .pub file or a directory)."""
    o, args = ctx.parse(argv, "image verify",
                        min_args=1, max_args=1)
    local = o["keys"] or (o["key"] if o["key"] and os.path.isdir(o["key"]) else None)
    if local:
        r = _trust(ctx, "verify", {"keys": os.path.abspath(local)}, args[0])
        ctx.out.write(f"Verified {args[0]}: signed by {', '.join((r or {}).get('Signers') or [])}\n")
        return
    if not o["key"]:
        raise UsageError("image verify: --key (or --keys) is required")
    import json
    try:
        with open(o["key"]) as f:
            pem = f.read(1 << 16)
    except OSError as e:
        ctx.fail(f"open {o['key']}: {e.strerror}")
        raise Exit(1)
    body = json.dumps({"PublicKey": pem}).encode()
    r = ctx.client.request("POST", f"/berth/images/{args[0]}/sigstore/verify", body=body,
                           headers=dict(creds.header_for(args[0]),
                                        **{"Content-Type": "application/json"})).json()
    ctx.out.write(f"Verified {args[0]} ({r['ManifestDigest']}): signed as "
                  f"{', '.join(r['Verified'])}\n")


def cmd_scan(ctx, argv):
    from berth.client.commands.security import cmd_scan as scan
    return scan(ctx, argv)
