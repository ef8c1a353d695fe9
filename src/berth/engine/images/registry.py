"""Pull and push over the OCI distribution API (registry v2).

Blobs stream straight into the store with their digest checked on the
way (registry_blobs.py); the HTTP client and auth are in
registry_client.py. The store's writer lock is held from the first blob
to the image record, so a failed pull can collect what it staged and leave
the store as it was."""
from berth.engine.images import names
from berth.engine.images.archive import DiffTap, DEFAULT_MAX_BYTES, MT_DOCKER_LAYER_ZSTD
from berth.engine.images.oci_layout import (
    INDEXES, LAYERS, MANIFESTS, MT_DOCKER_MANIFEST, MT_OCI_CONFIG, MT_OCI_MANIFEST,
    OCI_LAYER_OF_KIND)
from berth.engine.images.registry_blobs import (  # noqa: F401 (tests reach these)
    _fetch, _Meter, _progress, _push_blob, _short)
from berth.engine.images.registry_client import (  # noqa: F401 (callers use these names)
    ACCEPT, _Client, _host_arch, _read_small, _sha, base_url, is_loopback, login, LoginRefused,
    manifest_path, parse_www_authenticate, select_platform, split_host)
from berth.engine.images.store import check_digest
from berth.engine.storage import compression
from berth.errors import BerthError, NotFound
from berth.oci import jsonio


# pull

def describe(ref, *, auth=None, insecure_loopback_ok=True):
    """What GET /distribution/{name}/json tells: (the descriptor of the
    manifest ref names, the platforms it offers: each entry's of a
    manifest list, the image config's of a single image)."""
    r = names.parse(ref) if isinstance(ref, str) else ref
    client = _Client(r, auth, "pull", insecure_loopback_ok)
    reference = r.digest or r.tag
    where = f"{client.what}: manifest {reference}"
    resp = client.request("GET", manifest_path(r.repository, reference), {"Accept": ACCEPT})
    if resp.status != 200:
        raise client.fail(resp, f"manifest {reference}")
    data = _read_small(resp)
    doc = jsonio.loads(data, where)
    if not isinstance(doc, dict):
        raise BerthError(f"{where}: expected a json object")
    mt = doc.get("mediaType") or (resp.getheader("Content-Type") or "").split(";")[0].strip()
    if mt in INDEXES:
        platforms = [m.get("platform") or {} for m in doc.get("manifests") or []
                     if isinstance(m, dict)]
    else:
        digest = check_digest((doc.get("config") or {}).get("digest"), f"{where} config.digest")
        cfg = jsonio.loads(_read_small(client.open_blob(digest, 0)), f"{where} config")
        platforms = [{k: cfg[k] for k in ("architecture", "os", "variant")
                      if isinstance(cfg, dict) and cfg.get(k)}]
    return {"mediaType": mt, "digest": _sha(data), "size": len(data)}, platforms


def pull(store, ref, *, auth=None, progress=None, insecure_loopback_ok=True, policy=None):
    """Pull ref (name[:tag] or name@digest) into store and return the image
    id. auth: (user, password), or a dict with username/password or auth.
    policy: the trust policy file; a policy.json is checked against the
    registry's signatures before any blob is fetched."""
    r = names.parse(ref) if isinstance(ref, str) else ref
    client = _Client(r, auth, "pull", insecure_loopback_ok)
    reference = r.digest or r.tag
    _progress(progress, status=f"Pulling from {r.familiar_name()}", id=reference)
    client.ping()
    doc, mt, top_digest = client.manifest(reference)
    sigs = []
    if policy:
        from berth.engine.images import trust
        sigs = trust.admit_pull(policy, r, client, top_digest)
    if mt in INDEXES:
        desc = select_platform(doc, what=f"{client.what}: manifest list {reference}")
        check_digest(desc.get("digest"), f"{client.what}: manifest list entry digest")
        doc, mt, _ = client.manifest(desc["digest"])
    if mt not in MANIFESTS:
        raise BerthError(f"{client.what}: manifest {reference}: media type {mt!r} is not "
                         "an image manifest", hint="schema1 manifests are not supported")
    where = f"{client.what}: manifest {reference}"
    cdesc = doc.get("config")
    ldescs = doc.get("layers")
    if not isinstance(cdesc, dict) or not isinstance(ldescs, list):
        raise BerthError(f"{where}: config and layers are required")
    config_digest = check_digest(cdesc.get("digest"), f"{where} config.digest")
    with store:
        try:
            if not store.has_blob(config_digest):
                _fetch(store, client, config_digest, _size(cdesc, where), None,
                       lambda n: None)
            cfg = store.config(config_digest)
            diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") if isinstance(cfg, dict) else None
            if not isinstance(diff_ids, list) or len(diff_ids) != len(ldescs):
                raise BerthError(f"{where}: layers and config rootfs.diff_ids differ in length")
            layers, sizes = [], []
            for j, ld in enumerate(ldescs):
                d, size = _pull_layer(store, client, ld, diff_ids[j], f"{where} layers[{j}]",
                                      progress)
                layers.append(d)
                sizes.append(size)
            try:
                before = store.record(config_digest).get("repo_digests", [])
            except NotFound:
                before = None
            image_id = store.add_image(config_digest, layers, doc, diff_sizes=sizes,
                                       repo_digests=[f"{r.name}@{top_digest}"])
            if sigs:
                from berth.engine.images import sigstore
                sigstore.save(store, image_id, sigs)
            if r.tag is not None:
                store.tag(image_id, r.with_tag(r.tag))
        finally:
            store.gc()
    _progress(progress, status=f"Digest: {top_digest}")
    fresh = before is None or f"{r.name}@{top_digest}" not in before
    _progress(progress, status=f"Status: Downloaded newer image for {r.familiar()}" if fresh
              else f"Status: Image is up to date for {r.familiar()}")
    return image_id


def _size(desc, where):
    size = desc.get("size")
    if not isinstance(size, int) or size < 0:
        raise BerthError(f"{where}.size: expected a non-negative integer")
    return size


def _pull_layer(store, client, ld, want_diff, what, progress):
    if not isinstance(ld, dict) or ld.get("mediaType") not in LAYERS:
        raise BerthError(f"{what}.mediaType: {ld.get('mediaType') if isinstance(ld, dict) else ld!r}"
                         " is not a supported layer type")
    digest = check_digest(ld.get("digest"), f"{what}.digest")
    want_diff = check_digest(want_diff, f"{what}: config diff id")
    size = _size(ld, what)
    short = _short(digest)
    tap = DiffTap(f"{client.what}: layer {digest}", DEFAULT_MAX_BYTES)
    if store.has_blob(digest):
        # the blob is content-addressed; only its diff id and size are needed
        with store.open_blob(digest) as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                tap(chunk)
        _progress(progress, id=short, status="Already exists")
    else:
        _progress(progress, id=short, status="Pulling fs layer")
        _fetch(store, client, digest, size, tap, _Meter(progress, short, "Downloading", size))
        _progress(progress, id=short, status="Verifying Checksum")
        _progress(progress, id=short, status="Download complete")
    diff_id, usize = tap.finish()
    if diff_id != want_diff:
        raise BerthError(f"{what}: blob {digest} uncompresses to {diff_id}, "
                         f"the config says {want_diff}")
    _progress(progress, id=short, status="Pull complete")
    return digest, usize


# push

def push(store, ref, *, auth=None, progress=None, chunk_size=None,
         insecure_loopback_ok=True):
    """Push the image ref names to its registry; returns the manifest
    digest. chunk_size uploads blobs in PATCH chunks of that many bytes
    instead of one PUT."""
    r = names.parse(ref) if isinstance(ref, str) else ref
    if r.tag is None:
        raise BerthError(f"push {r}: a tag is required, a digest cannot be pushed to")
    image_id = store.resolve(str(r))
    rec = store.record(image_id)
    client = _Client(r, auth, "pull,push", insecure_loopback_ok)
    _progress(progress, status=f"The push refers to repository [{r.name}]")
    client.ping()
    manifest = _manifest_for(store, image_id, rec)
    blobs = [(d["digest"], d["size"]) for d in manifest["layers"]]
    blobs.append((manifest["config"]["digest"], manifest["config"]["size"]))
    for digest, size in blobs:
        _push_blob(store, client, digest, size, progress, chunk_size)
    body = jsonio.dumps(manifest).encode()
    digest = _sha(body)
    mt = manifest["mediaType"]
    resp = client.request("PUT", manifest_path(r.repository, r.tag),
                          {"Content-Type": mt, "Content-Length": str(len(body))}, body)
    data = _read_small(resp, 1 << 16)
    if resp.status not in (200, 201):
        raise client.fail(resp, f"manifest PUT {r.tag}", data)
    got = resp.getheader("Docker-Content-Digest")
    if got and got != digest:
        raise BerthError(f"{client.what}: manifest {r.tag}: registry says digest {got}, "
                         f"we sent {digest}")
    _progress(progress, status=f"{r.tag}: digest: {digest} size: {len(body)}")
    return digest


def _manifest_for(store, image_id, rec):
    """The stored manifest if it still describes the stored blobs, else a
    fresh one: Docker schema2, or OCI when a layer is zstd (schema2 has no
    zstd type that other tools accept)."""
    m = rec.get("manifest")
    layers = rec["layers"]
    try:
        ok = (m["mediaType"] in MANIFESTS and m["config"]["digest"] == image_id
              and [d["digest"] for d in m["layers"]] == layers
              and all(d["size"] == store.blob_size(d["digest"]) for d in m["layers"])
              and m["config"]["size"] == store.blob_size(image_id)
              and not (m["mediaType"] == MT_DOCKER_MANIFEST
                       and any(d["mediaType"] == MT_DOCKER_LAYER_ZSTD for d in m["layers"])))
    except (KeyError, TypeError):
        ok = False
    if ok:
        return m
    from berth.engine.images.archive import MT_DOCKER_CONFIG, layer_media_kind
    kinds = []
    for d in layers:
        with store.open_blob(d) as f:
            kinds.append(compression.kind_of(f.read(4)))
    oci = "zstd" in kinds
    descs = [{"mediaType": OCI_LAYER_OF_KIND[k] if oci else layer_media_kind(k),
              "size": store.blob_size(d), "digest": d} for d, k in zip(layers, kinds)]
    return {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST if oci else MT_DOCKER_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG if oci else MT_DOCKER_CONFIG,
                       "size": store.blob_size(image_id), "digest": image_id},
            "layers": descs}
