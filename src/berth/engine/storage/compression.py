"""How a layer blob is compressed (plain tar, gzip or zstd) and zstd's
streams, pull-style (a reader for unpacking, saving) and push-style (a tap
fed the chunks of a blob as it is stored).

Decoding is PyPI's `zstandard` (libzstd); its streaming APIs stop quietly
when the input ends inside a frame, so FrameCheck walks the frame and block
headers (RFC 8878, section 3.1) alongside and says when a stream is cut
short. Output is produced in bounded pieces: a zstd bomb never holds more
than one piece in memory, and the callers' byte caps stop it as they stop
a gzip bomb."""
from berth.errors import BerthError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SKIPPABLE = 0x184D2A50   # ..5F: skippable frames (the low nibble is free)
_PIECE = 1 << 20


def kind_of(head):
    """"gzip", "zstd" or "tar" from a blob's first four bytes."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == ZSTD_MAGIC:
        return "zstd"
    return "tar"


def _zstd():
    try:
        import zstandard
    except ImportError:
        raise BerthError("zstd layers need the python package zstandard",
                         hint="pip install zstandard==0.25.0") from None
    return zstandard


class FrameCheck:
    """Fed the compressed bytes in order; finish() raises if they end
    anywhere but between two frames. Only headers are read, never data."""

    def __init__(self, what):
        self.what = what
        self._state = "magic"
        self._want = 4
        self._buf = b""
        self._skip = 0
        self._checksum = False
        self.frames = 0

    def feed(self, data):
        view = memoryview(data)
        while len(view):
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
                continue
            take = self._want - len(self._buf)
            self._buf += bytes(view[:take])
            view = view[take:]
            if len(self._buf) == self._want:
                buf, self._buf = self._buf, b""
                self._step(buf)

    def _step(self, buf):
        if self._state == "magic":
            if buf == ZSTD_MAGIC:
                self._state, self._want = "header", 1
            elif int.from_bytes(buf, "little") & ~0xF == _SKIPPABLE:
                self._state, self._want = "skippable", 4
            else:
                raise BerthError(f"{self.what}: corrupt zstd data: "
                                 "neither a frame nor the end after the last frame")
        elif self._state == "skippable":
            self._skip = int.from_bytes(buf, "little")
            self._state, self._want = "magic", 4
        elif self._state == "header":
            fhd = buf[0]
            if fhd & 0x08:
                raise BerthError(f"{self.what}: corrupt zstd data: reserved frame header bit set")
            single = bool(fhd & 0x20)
            self._checksum = bool(fhd & 0x04)
            fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
            rest = (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
            self._skip = rest
            self._state, self._want = "block", 3
        elif self._state == "block":
            h = int.from_bytes(buf, "little")
            last, btype, size = h & 1, (h >> 1) & 3, h >> 3
            if btype == 3:
                raise BerthError(f"{self.what}: corrupt zstd data: reserved block type")
            self._skip = 1 if btype == 1 else size
            if last:
                self.frames += 1
                if self._checksum:
                    self._state, self._want = "checksum", 4
                else:
                    self._state, self._want = "magic", 4
        elif self._state == "checksum":
            self._state, self._want = "magic", 4

    def finish(self):
        if self._state != "magic" or self._buf or self._skip or not self.frames:
            raise BerthError(f"{self.what}: zstd stream is truncated")


class ZstdReader:
    """A file-like reader of the data in a zstd stream read from raw (all
    its frames), raising BerthError on corrupt or truncated input."""

    def __init__(self, raw, what="layer"):
        self.what = what
        self.check = FrameCheck(what)
        self._reader = _zstd().ZstdDecompressor().stream_reader(
            _Tee(raw, self.check), read_across_frames=True, closefd=False)
        self._done = False

    def read(self, n=-1):
        if self._done:
            return b""
        # the binding allocates n bytes up front: never more than a piece
        n = _PIECE if n is None or n < 0 else min(n, _PIECE)
        try:
            data = self._reader.read(n)
        except _zstd().ZstdError as e:
            raise BerthError(f"{self.what}: corrupt zstd data: {_reason(e)}") from None
        if not data and n:
            self._done = True
            self.check.finish()
        return data

    def close(self):
        self._reader.close()


class _Tee:
    """The compressed source, shown to the frame check on the way."""

    def __init__(self, raw, check):
        self.raw = raw
        self.check = check

    def read(self, n=-1):
        data = self.raw.read(_PIECE if n is None or n < 0 else n)
        self.check.feed(data)
        return data


class ZstdTap:
    """Push-style: feed(chunk) with the compressed bytes, out(data) is
    called with the decompressed data in pieces of at most 1 MiB."""

    def __init__(self, out, what="layer"):
        self.what = what
        self.check = FrameCheck(what)
        self._writer = _zstd().ZstdDecompressor().stream_writer(
            _Sink(out), write_size=_PIECE, closefd=False)

    def feed(self, chunk):
        self.check.feed(chunk)
        try:
            self._writer.write(chunk)
        except _zstd().ZstdError as e:
            raise BerthError(f"{self.what}: corrupt zstd data: {_reason(e)}") from None

    def finish(self):
        self.check.finish()


class _Sink:
    def __init__(self, out):
        self.out = out

    def write(self, data):
        self.out(bytes(data))
        return len(data)


def _reason(e):
    return str(e).replace("zstd decompress error: ", "").lower()
