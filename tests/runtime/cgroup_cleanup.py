"""Last-resort removal of cgroups a failed test left: thaw, SIGKILL what is
inside, rmdir children before parents. Only names carrying "berth-test-"
are touched, so a mistake here cannot reach anybody else's cgroups."""
import os
import signal
import time


def remove_cgroups(dirs):
    everything = []
    for d in dirs:
        if "berth-test-" not in os.path.basename(d):
            raise ValueError(f"refusing to remove cgroup {d}")
        for dirpath, _subdirs, _ in os.walk(d):
            everything.append(dirpath)
    everything = sorted(set(everything), key=len, reverse=True)
    for d in everything:
        for f, v in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            # never O_CREAT: where a controller's directory is a plain one
            # on /sys/fs/cgroup's tmpfs (someone's mkdir -p), a new file in
            # it would make the rmdir below fail
            try:
                fd = os.open(os.path.join(d, f), os.O_WRONLY)
            except OSError:
                continue
            try:
                os.write(fd, v.encode())
            except OSError:
                pass
            finally:
                os.close(fd)
    for d in everything:
        for _ in range(100):
            try:
                with open(os.path.join(d, "cgroup.procs")) as fh:
                    pids = fh.read().split()
            except OSError:
                pids = []
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
