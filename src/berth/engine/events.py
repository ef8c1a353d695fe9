"""The daemon's event stream (GET /events): a bounded history and
subscribers, each a queue, so a slow client never blocks an emitter."""
import queue
import threading
import time

HISTORY = 1000


class Events:
    def __init__(self):
        self._lock = threading.Lock()
        self._history = []
        self._subs = set()

    def emit(self, type_, action, actor_id, attributes=None):
        now = time.time_ns()
        ev = {"Type": type_, "Action": action,
              "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
              "scope": "local", "time": now // 10**9, "timeNano": now}
        if type_ == "container":
            # the pre-1.22 fields the docker CLI still reads
            ev.update({"status": action, "id": actor_id,
                       "from": ev["Actor"]["Attributes"].get("image", "")})
        with self._lock:
            self._history.append(ev)
            del self._history[:-HISTORY]
            subs = list(self._subs)
        for q in subs:
            try:
                q.put_nowait(ev)
            except queue.Full:
                pass
        return ev

    def subscribe(self, since_ns=None):
        """-> (past events since since_ns, a queue of new ones); call
        unsubscribe(q) when done."""
        q = queue.Queue(10000)
        with self._lock:
            past = [e for e in self._history if since_ns is not None and e["timeNano"] >= since_ns]
            self._subs.add(q)
        return past, q

    def unsubscribe(self, q):
        with self._lock:
            self._subs.discard(q)
