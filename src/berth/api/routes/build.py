"""POST /build: the legacy builder (engine/images/build.py does the work).

The body, a tar (plain or gzip) of the build context, goes through the
hardened unpacker into a temp dir under the data root, removed when the
response ends. A bad request (no Dockerfile, an unknown instruction, bad
JSON in buildargs) is a 400 before the stream starts; a step that fails is
an error line in the stream ({"errorDetail": ..., "error": ...}), which the
docker CLI shows and turns into a non-zero exit.

Query parameters: t (repeatable), dockerfile, buildargs, labels, q, target
(the stage, by name, to build up to: a multi-stage Dockerfile), nocache,
cachefrom, networkmode, extrahosts; rm and forcerm are accepted (berth
always removes the build's containers); pull=1 is refused: the builder
never contacts a registry. remote (a URL context) is refused too. The
X-Registry-Config header is ignored."""
import os
import shutil
import tempfile
import zlib

from berth.api.errors import BadRequest
from berth.api.http import Response, json_stream
from berth.engine.images import build as B
from berth.engine.images import names
from berth.engine.storage.unpack import extract
from berth.errors import BerthError

_MAX_CONTEXT = 8 << 30


def _error_line(e):
    msg = str(e)
    return {"errorDetail": {"message": msg}, "error": msg}


class _Stream:
    """The build's lines; close() (the HTTP layer calls it at the end, also
    when the client went away) stops the build and removes the context."""

    def __init__(self, gen, tmp):
        self.gen = gen
        self.tmp = tmp
        self.it = json_stream(self._lines())

    def _lines(self):
        try:
            yield from self.gen
        except BerthError as e:
            yield _error_line(e)
        except Exception as e:  # noqa: BLE001 - the stream is under way: report in it
            yield _error_line(f"build: internal error: {type(e).__name__}: {e}")

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.it)

    def close(self):
        try:
            self.it.close()
            self.gen.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __del__(self):
        if os.path.exists(self.tmp):
            shutil.rmtree(self.tmp, ignore_errors=True)


def _dict_param(req, name):
    v = req.qjson(name, {})
    if not isinstance(v, dict):
        raise BadRequest(f"query parameter {name}: expected a JSON object")
    out = {}
    for k, val in v.items():
        if val is None:
            continue
        if not isinstance(val, str):
            raise BadRequest(f"query parameter {name}: {k}: expected a string value")
        out[k] = val
    return out


class context_stream:
    """The request body as a tar that ends as a tar should. The docker CLI
    sends the context with a Dockerfile from outside it appended, and no
    padding or end blocks after it (dockerd reads it all the same): those
    are added here. A gzip body is decompressed first, 1 MiB at a time."""

    def __init__(self, raw):
        self.raw, self.count, self.pending, self.ended = raw, 0, b"", False
        self.gz, self.started = None, False

    def read(self, n=-1):
        while not self.pending and not self.ended:
            self._fill()
        take = len(self.pending) if n is None or n < 0 else n
        out, self.pending = self.pending[:take], self.pending[take:]
        return out

    def _fill(self):
        if self.gz is not None and self.gz.unconsumed_tail:
            out = self.gz.decompress(self.gz.unconsumed_tail, 1 << 20)
        else:
            data = self.raw.read(1 << 16)
            if not self.started:
                self.started = True
                if data[:2] == b"\x1f\x8b":
                    self.gz = zlib.decompressobj(16 + zlib.MAX_WBITS)
            if data:
                out = self.gz.decompress(data, 1 << 20) if self.gz else data
            else:
                out = self.gz.flush() if self.gz else b""
                self.ended = True
        self.count += len(out)
        self.pending += out
        if self.ended:
            self.pending += b"\0" * (-self.count % 512 + 1024)


def drop_ignored(ctx, dockerfile):
    """dockerd's one use of .dockerignore (clients apply it when they make
    the context): the Dockerfile and .dockerignore leave the context when
    it names them (the docker CLI lists a Dockerfile it appends there)."""
    from berth.engine.images import ignore
    path = os.path.join(ctx, ".dockerignore")
    if not os.path.isfile(path) or os.path.islink(path):
        return
    with open(path, errors="replace") as f:
        patterns = ignore.read(f.read())
    for name in (".dockerignore", dockerfile):
        rel = os.path.normpath(name)
        target = os.path.join(ctx, rel)
        if not rel.startswith("..") and ignore.matches(rel, patterns) and \
                os.path.isfile(target) and not os.path.islink(target):
            os.unlink(target)


def register(router, engine):
    def build(req):
        if req.qbool("pull"):
            raise BadRequest("build: pull is not supported: berth's builder never contacts a "
                             "registry; pull or load the base image first")
        if req.q("remote"):
            raise BadRequest("build: remote contexts are not supported: send the context as "
                             "the request body")
        tags = []
        for t in req.query.get("t", []):
            if not t:
                continue
            try:
                tags.append(str(names.parse(t)))
            except BerthError as e:
                raise BadRequest(f"invalid tag {t!r}: {e}") from None
        buildargs = _dict_param(req, "buildargs")
        labels = _dict_param(req, "labels")
        tmp = tempfile.mkdtemp(prefix="build-", dir=engine.paths.root)
        try:
            ctx = os.path.join(tmp, "context")
            os.mkdir(ctx, 0o700)
            try:
                extract(context_stream(req.stream()), ctx, rootless=engine.config.rootless,
                        max_bytes=_MAX_CONTEXT)
            except BerthError as e:
                raise BadRequest(f"build context: {e}") from None
            dockerfile = req.q("dockerfile") or "Dockerfile"
            try:
                ins = B.parse_context(ctx, dockerfile)
            except BerthError as e:
                raise BadRequest(str(e)) from None
            drop_ignored(ctx, dockerfile)
            cache_from = req.qjson("cachefrom", [])
            if not isinstance(cache_from, list) or not all(isinstance(r, str)
                                                           for r in cache_from):
                raise BadRequest("query parameter cachefrom: expected a JSON list of images")
            hosts = [h for h in (req.q("extrahosts") or "").split(",") if h]
            try:
                b = B.Build(engine, ctx, ins, buildargs=buildargs, labels=labels, tags=tags,
                            quiet=req.qbool("q"), network=req.q("networkmode") or "default",
                            target=req.q("target") or None, nocache=req.qbool("nocache"),
                            cache_from=cache_from, extra_hosts=hosts)
            except BerthError as e:
                raise BadRequest(str(e)) from None
            stream = _Stream(b.run(), tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Response(200, stream)

    router.add("POST", "/build", build)
