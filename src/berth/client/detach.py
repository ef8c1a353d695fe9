"""Detach keys: the key sequence that leaves an attached session with the
container still running (Ctrl-P Ctrl-Q unless --detach-keys or the
client config's "detachKeys" say otherwise).

With a TTY the CLI watches what is typed itself, as docker's escape proxy
does: bytes that may start the sequence are held back until it completes
(detach) or breaks (they are sent on). The daemon is told the keys as well
(the attach's detachKeys, the exec's DetachKeys), for sessions without a TTY."""
import json

from berth.client.args import UsageError

DEFAULT = "ctrl-p,ctrl-q"
_CTRL = "@abcdefghijklmnopqrstuvwxyz[\\]^_"


def parse(spec):
    """'ctrl-p,ctrl-q' -> b'\\x10\\x11'; a single character stands for itself."""
    out = bytearray()
    for key in spec.split(","):
        k = key.strip().lower()
        if len(key) == 1:
            out.append(ord(key))
        elif k.startswith("ctrl-") and len(k) == 6 and k[5] in _CTRL:
            out.append(_CTRL.index(k[5]))
        else:
            raise UsageError(f"invalid detach keys {spec!r}: expected a comma-separated list of "
                             "characters or ctrl-<a-z, @, [, \\, ], ^, _>, e.g. ctrl-p,ctrl-q")
    if not out:
        raise UsageError(f"invalid detach keys {spec!r}: empty")
    return bytes(out)


def configured(flag, config_path):
    """The keys in force: the flag, else the client config's, else the default."""
    if flag:
        return flag
    try:
        with open(config_path) as f:
            keys = json.load(f).get("detachKeys")
        if isinstance(keys, str) and keys:
            return keys
    except (OSError, ValueError, AttributeError):
        pass
    return DEFAULT


class Escape:
    def __init__(self, keys):
        self.keys = keys
        self.held = b""

    def feed(self, data):
        """-> (bytes to send on, True when the sequence is complete)."""
        out = bytearray()
        for b in data:
            if b == self.keys[len(self.held)]:
                self.held += bytes([b])
                if len(self.held) == len(self.keys):
                    self.held = b""
                    return bytes(out), True
                continue
            out += self.held
            self.held = b""
            if b == self.keys[0]:
                self.held = bytes([b])
            else:
                out.append(b)
        return bytes(out), False
