"""A second chance for what a loaded machine makes slow or flaky: a daemon
that does not answer in time is stopped and started once more with a
longer wait, before the bench gives its figures up."""
import subprocess
import sys

START_TIMEOUTS = (60, 180)   # seconds a daemon gets to answer: first try, second try


def second_try(what, start, stop):
    """start(timeout) with START_TIMEOUTS[0]; if it fails (a slow start on a
    busy host), stop() and once more with the longer wait. Raises the second
    failure."""
    for i, timeout in enumerate(START_TIMEOUTS):
        try:
            return start(timeout)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
            last = i == len(START_TIMEOUTS) - 1
            print(f"{what} did not start ({str(err)[:300]}); "
                  + ("not measured" if last else "trying again"), file=sys.stderr, flush=True)
            try:
                stop()
            except Exception as e:  # noqa: BLE001 - the failure to report is the start's
                print(f"{what}: stopping after the failed start: {e}", file=sys.stderr)
            if last:
                raise
