"""HEALTHCHECK: a thread per running container that runs the test with
`exec` every Interval and keeps Docker's State.Health (Status, streak, the
last five results)."""
import threading
import time

from berth.engine.containers.record import now_rfc3339

_NS = 1e9
LOG_KEEP = 5


def _cmd(test):
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    if test[0] == "CMD":
        return list(test[1:])
    return list(test)


def start(containers, c):
    hc = c.config.get("Healthcheck") or {}
    cmd = _cmd(hc.get("Test") or [])
    if not cmd:
        return
    with c.cond:
        c.state["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        c.save()
    t = threading.Thread(target=_loop, args=(containers, c, cmd, hc), daemon=True,
                         name=f"health-{c.id[:12]}")
    t.start()


def _loop(containers, c, cmd, hc):
    interval = (hc.get("Interval") or 30 * _NS) / _NS
    timeout = (hc.get("Timeout") or 30 * _NS) / _NS
    retries = hc.get("Retries") or 3
    start_period = (hc.get("StartPeriod") or 0) / _NS
    began = time.monotonic()
    pid = c.state["Pid"]
    while True:
        time.sleep(interval)
        if not c.running or c.state["Pid"] != pid or containers._closing:
            return
        if c.state["Paused"]:
            continue
        t0 = now_rfc3339()
        try:
            code, out = containers.execs.run_captured(c, cmd, timeout)
        except Exception as e:  # noqa: BLE001 - a failed probe is a result, not a crash
            code, out = -1, str(e)
        with c.cond:
            h = c.state.get("Health") or {"Status": "starting", "FailingStreak": 0, "Log": []}
            h["Log"] = (h["Log"] + [{"Start": t0, "End": now_rfc3339(), "ExitCode": code,
                                     "Output": out}])[-LOG_KEEP:]
            old = h["Status"]
            if code == 0:
                h["Status"], h["FailingStreak"] = "healthy", 0
            elif time.monotonic() - began > start_period:
                h["FailingStreak"] += 1
                if h["FailingStreak"] >= retries:
                    h["Status"] = "unhealthy"
            c.state["Health"] = h
            c.save()
        if h["Status"] != old:
            containers.e.events.emit("container", "health_status: " + h["Status"], c.id,
                                     containers._attrs(c))
