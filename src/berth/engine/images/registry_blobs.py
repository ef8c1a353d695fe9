"""Blob transfers to and from a registry: downloads that resume with a
Range request after a broken connection (what a failed pull got stays in
the store's tmp/ as pull.<pid>.<hex> for the next pull to go on from),
uploads in one PUT or PATCH chunks, and byte progress."""
import http.client
import os
import urllib.parse

from berth.engine.images.registry_client import (
    _drain, _read_small, blob_path, upload_path, with_query)
from berth.errors import BerthError

_READ = 1 << 16
_RETRIES = 5
_STEP = 256 << 10


def _short(digest):
    return digest[7:19]


class _TransferBroken(BerthError):
    """The network gave up on a blob; what arrived is worth keeping."""


class _BlobReader:
    """File-like view of a remote blob that reconnects with a Range
    request when the transfer breaks, so put_blob sees one clean stream."""

    def __init__(self, client, digest, size, report):
        self.client = client
        self.digest = digest
        self.size = size
        self.report = report
        self.offset = 0
        self.resp = None
        self.failures = 0
        self.skip = 0

    def _open(self):
        resp = self.client.open_blob(self.digest, self.offset)
        self.skip = 0
        if self.offset and resp.status == 200:
            # the server ignored Range: read past what we have already
            self.skip = self.offset
        elif self.offset:
            start = (resp.getheader("Content-Range") or "").replace("bytes ", "").split("-")[0]
            if start.strip() != str(self.offset):
                resp.close()
                raise BerthError(f"{self.client.what}: blob {self.digest}: asked for bytes from "
                                 f"{self.offset}, got range {resp.getheader('Content-Range')!r}")
        self.resp = resp

    def _broken(self, why):
        if self.resp is not None:
            self.resp.close()
            self.resp = None
        self.failures += 1
        if self.failures > _RETRIES:
            raise _TransferBroken(f"{self.client.what}: blob {self.digest}: transfer broke "
                             f"{self.failures} times, last at byte {self.offset}: {why}")

    def read(self, n=-1):
        n = _READ if n is None or n < 0 else min(n, _READ)
        if self.resp is None and self.offset >= self.size:
            return b""
        while True:
            if self.resp is None:
                self._open()
            try:
                data = self.resp.read(n)
            except (OSError, http.client.HTTPException) as e:
                self._broken(e)
                continue
            if self.skip:
                cut = min(self.skip, len(data))
                self.skip -= cut
                data = data[cut:]
                if not data and self.skip:
                    continue
            if not data:
                if self.offset < self.size:
                    self._broken("connection closed early")
                    continue
                self.resp.close()
                return b""
            self.offset += len(data)
            self.report(self.offset)
            return data

    def close(self):
        if self.resp is not None:
            self.resp.close()
            self.resp = None


class _Meter:
    """Byte progress for one blob, at most every _STEP bytes and at the end."""

    def __init__(self, progress, short, status, total):
        self.progress, self.short, self.status, self.total = progress, short, status, total
        self.last = -1

    def __call__(self, current):
        if self.progress is None:
            return
        if current - self.last >= _STEP or current == self.total:
            self.last = current
            _progress(self.progress, id=self.short, status=self.status, current=current,
                      total=self.total)


def _progress(progress, **event):
    if progress is not None:
        if "current" in event:
            event["progressDetail"] = {"current": event["current"], "total": event["total"]}
        progress(event)


def _partial(store, digest):
    """Path of this process's partial download of digest, taking over one
    an interrupted pull left behind. Pulls hold the store lock, so no
    other pull can be writing it."""
    tmp = store.tmp_dir()
    mine = os.path.join(tmp, f"pull.{os.getpid()}.{digest[7:]}")
    for name in os.listdir(tmp):
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "pull" and parts[2] == digest[7:]:
            path = os.path.join(tmp, name)
            if path != mine:
                try:
                    os.rename(path, mine)
                except FileNotFoundError:
                    continue
            break
    return mine


class _Resumed:
    """What an earlier pull got of a blob, then the rest from the network,
    copied to the partial file as it goes so a later pull can go on."""

    def __init__(self, path, reader):
        self.reader = reader
        self.out = open(path, "ab")
        self.have = self.out.tell()
        self.replay = open(path, "rb") if self.have else None
        reader.offset = self.have

    def read(self, n=-1):
        if self.replay is not None:
            data = self.replay.read(_READ if n is None or n < 0 else n)
            if data:
                return data
            self.replay.close()
            self.replay = None
        data = self.reader.read(n)
        if data:
            self.out.write(data)
        return data

    def close(self):
        if self.replay is not None:
            self.replay.close()
        self.out.close()
        self.reader.close()


def _fetch(store, client, digest, size, tap, meter):
    """Download a blob into the store, checking its digest and size."""
    path = _partial(store, digest)
    src = _Resumed(path, _BlobReader(client, digest, size, meter))
    if src.have:
        meter(min(src.have, size))
    keep = False
    try:
        return store.put_blob(src, digest, max_bytes=size, tap=tap)
    except BerthError as e:
        keep = isinstance(e, _TransferBroken)
        if "digest mismatch" in str(e):
            raise BerthError(f"{client.what}: blob {digest}: content does not match its digest",
                             hint="the registry's copy is corrupt or was altered") from None
        if "larger than" in str(e) and "uncompressed" not in str(e):
            raise BerthError(f"{client.what}: blob {digest} is larger than the "
                             f"{size} bytes its descriptor says") from None
        raise
    except BaseException:
        keep = True  # interrupted: the next pull picks up from here
        raise
    finally:
        src.close()
        if not keep:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


class _Counted:
    """A slice of a store blob as a request body, reporting progress."""

    def __init__(self, f, length, report):
        self.f = f
        self.left = length
        self.report = report
        self.sent = 0

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        self.sent += len(data)
        self.report(len(data))
        return data


def _push_blob(store, client, digest, size, progress, chunk_size):
    short = _short(digest)
    repo = client.ref.repository
    resp = client.request("HEAD", blob_path(repo, digest))
    _drain(resp)
    if resp.status == 200:
        _progress(progress, id=short, status="Layer already exists")
        return
    if resp.status != 404:
        raise client.fail(resp, f"blob HEAD {digest}", b"")
    _progress(progress, id=short, status="Preparing")
    resp = client.request("POST", upload_path(repo), {"Content-Length": "0"}, b"")
    data = _read_small(resp, 1 << 16)
    if resp.status != 202 or not resp.getheader("Location"):
        raise client.fail(resp, f"starting the upload of blob {digest}", data)
    location = urllib.parse.urljoin(client.url(upload_path(repo)), resp.getheader("Location"))
    done = [0]
    meter = _Meter(progress, short, "Pushing", size)

    def report(n):
        done[0] += n
        meter(done[0])

    with store.open_blob(digest) as f:
        if chunk_size:
            offset = 0
            while offset < size:
                n = min(chunk_size, size - offset)
                f.seek(offset)
                body = _Counted(f, n, report)
                resp = client.request("PATCH", location, {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(n),
                    "Content-Range": f"{offset}-{offset + n - 1}"}, body)
                data = _read_small(resp, 1 << 16)
                if resp.status != 202 or not resp.getheader("Location"):
                    raise client.fail(resp, f"uploading blob {digest} at byte {offset}", data)
                location = urllib.parse.urljoin(location, resp.getheader("Location"))
                offset += n
            resp = client.request("PUT", with_query(location, digest=digest),
                                  {"Content-Length": "0"}, b"")
        else:
            def body():
                f.seek(0)
                done[0] = 0
                return _Counted(f, size, report)
            resp = client.request("PUT", with_query(location, digest=digest), {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size)}, body)
    data = _read_small(resp, 1 << 16)
    if resp.status != 201:
        raise client.fail(resp, f"finishing the upload of blob {digest}", data)
    _progress(progress, id=short, status="Pushed")
