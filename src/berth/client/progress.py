"""Docker's JSON progress stream (pull, push, load, import) shown as the
docker CLI shows it: on a terminal one line per layer id, rewritten in place
with ANSI cursor moves; otherwise plain lines, without the progress updates.

Messages: {"status", "id", "progress", "progressDetail": {"current", "total"}},
{"stream": text}, {"aux": {...}}, {"error", "errorDetail": {"message"}}."""


class StreamError(Exception):
    """An {"error": ...} message in the stream."""


def _bar(detail, width=50):
    cur, total = detail.get("current") or 0, detail.get("total") or 0
    if total <= 0 or cur > total:
        return ""
    from berth.client.format import human_size
    n = min(int(cur / total * 100) // 2, width)
    return f"[{'=' * n}>{' ' * (width - n)}] {human_size(cur)}/{human_size(total)}"


def show(messages, out, tty=None, quiet=False):
    """Renders the stream to `out` (a text file); returns the list of aux
    objects; raises StreamError on an error message."""
    if tty is None:
        tty = out.isatty()
    lines = {}  # id -> line index from the top of our block
    count = 0
    aux = []
    for msg in messages:
        if msg.get("error") or msg.get("errorDetail"):
            text = msg.get("error") or (msg.get("errorDetail") or {}).get("message", "")
            raise StreamError(text)
        if "aux" in msg:
            aux.append(msg["aux"])
            continue
        if quiet:
            continue
        if "stream" in msg:
            out.write(msg["stream"])
            out.flush()
            continue
        status = msg.get("status", "")
        ident = msg.get("id")
        progress = msg.get("progress") or _bar(msg.get("progressDetail") or {})
        if not tty:
            if progress or (msg.get("progressDetail") or {}).get("current"):
                continue
            out.write(f"{ident}: {status}\n" if ident else f"{status}\n")
            out.flush()
            continue
        text = f"{ident}: {status} {progress}".rstrip() if ident else f"{status} {progress}".rstrip()
        if ident and ident in lines:
            up = count - lines[ident]
            out.write(f"\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B")
        else:
            if ident:
                lines[ident] = count
            out.write(f"\x1b[2K{text}\n")
            count += 1
        out.flush()
    return aux
