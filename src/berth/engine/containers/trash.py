"""Deferred deletion of a removed container's files. `rm` renames its
directories into <data root>/trash (one rename each, atomic) and a single
background thread deletes them: the file tree is gone from the API's view
at once, and the slow part (thousands of unlinks on a loaded disk) no
longer sits in every removal's answer. Whatever a crash leaves in the
trash is deleted at the next start."""
import os
import queue
import secrets
import shutil
import threading


class Trash:
    def __init__(self, root):
        self.dir = os.path.join(root, "trash")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self._q = queue.Queue()
        self._thread = None
        self._lock = threading.Lock()
        for name in os.listdir(self.dir):
            self._q.put(os.path.join(self.dir, name))
        if not self._q.empty():
            self._wake()

    def discard(self, path):
        """path gone from where it was; deleted soon. Falls back to
        deleting it here where a rename cannot move it (another fs)."""
        if not os.path.lexists(path):
            return
        dest = os.path.join(self.dir, secrets.token_hex(8))
        try:
            os.rename(path, dest)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            return
        self._q.put(dest)
        self._wake()

    def _wake(self):
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="trash")
                self._thread.start()

    def _run(self):
        while True:
            try:
                path = self._q.get(timeout=5)
            except queue.Empty:
                with self._lock:
                    if self._q.empty():
                        self._thread = None
                        return
                continue
            shutil.rmtree(path, ignore_errors=True)

    def drain(self, timeout=30):
        """Until the trash is empty (tests, daemon stop)."""
        import time
        deadline = time.monotonic() + timeout
        while os.listdir(self.dir) and time.monotonic() < deadline:
            time.sleep(0.05)
