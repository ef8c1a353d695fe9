"""`make bench` on a loaded machine: what fails is retried, or reported as
figures missing with the table written anyway, never the end of the run.
These are the decisions themselves (no daemon is started here)."""
import importlib.util
import sys
import types
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def net():
    return _load("net")


@pytest.fixture(scope="module")
def engine():
    return _load("engine")


def test_a_slow_daemon_gets_a_second_longer_try():
    sys.path.insert(0, str(BENCH))
    import retry
    calls, stops = [], []

    def start(timeout):
        calls.append(timeout)
        if len(calls) == 1:
            raise RuntimeError("berthd did not answer in 60s")
        return "up"
    assert retry.second_try("x", start, lambda: stops.append(1)) == "up"
    assert calls == list(retry.START_TIMEOUTS) and stops == [1]
    with pytest.raises(RuntimeError, match="never"):
        retry.second_try("x", lambda t: (_ for _ in ()).throw(RuntimeError("never")), lambda: None)


def test_a_busy_iperf3_server_is_tried_again(net, monkeypatch):
    answers = [RuntimeError("iperf3 to 127.0.0.1:5201: the server is busy running a test. "
                            "try again later"), RuntimeError("busy"), 9.5]

    def once(*a, **k):
        v = answers.pop(0)
        if isinstance(v, Exception):
            raise v
        return v
    monkeypatch.setattr(net, "iperf3_once", once)
    monkeypatch.setattr(net.time, "sleep", lambda s: None)
    assert net.iperf3("127.0.0.1", 5201, 1, []) == 9.5
    answers[:] = [RuntimeError("busy")] * net.RUN_TRIES
    with pytest.raises(RuntimeError):
        net.iperf3("127.0.0.1", 5201, 1, [])


def test_net_writes_its_table_with_a_peer_missing(net, monkeypatch):
    monkeypatch.setattr(net, "iperf3", lambda host, *a, **k: 10.0 if host == "127.0.0.1" else 10.5)
    targets = {"berth": {"published": ("127.0.0.1", 1), "direct": ("10.0.0.2", 5201)}}
    failures = []
    res = net.measure(targets, 1, 2, failures)
    args = types.SimpleNamespace(time=1, rounds=2)
    info = {"iperf3": "3.12", "missing": {"docker": "dockerd did not answer in 180s"},
            "failures": failures}
    lines, ok = net.report(res, ["berth", "docker"], args, info)
    text = "\n".join(lines)
    assert "docker: not measured: dockerd did not answer" in text
    row = next(ln for ln in lines if ln.startswith("published host -> container"))
    assert row.split()[-2:] == ["10.00", "-"]      # berth's figure, docker's missing
    assert ok


def test_a_run_that_keeps_failing_is_one_figure_missing(net, monkeypatch):
    def flaky(host, port, seconds, extra, **k):
        if extra:   # the -R direction never works
            raise RuntimeError("iperf3: control socket has closed unexpectedly")
        return 5.0
    monkeypatch.setattr(net, "iperf3", flaky)
    failures = []
    res = net.measure({"berth": {"published": ("127.0.0.1", 1), "direct": ("10.0.0.2", 2)}},
                      1, 1, failures)
    assert len(failures) == 2 and all("control socket" in f for f in failures)
    lines, ok = net.report(res, ["berth"], types.SimpleNamespace(time=1, rounds=1),
                           {"iperf3": "3.12", "failures": failures})
    assert not ok and any("missing figures" in ln for ln in lines)


def test_engine_report_without_docker(engine):
    args = types.SimpleNamespace(runs=2, warmup=0, containers=2, mem_containers=1, phase_runs=1,
                                 quick=True)
    res = {"run": {"berth": [0.1, 0.2]},
           "phases": {"berth": {"create": 1.0, "start": 2.0, "wait": 1.0, "delete": 1.0}}}
    info = {"missing": {"docker": "dockerd exited with status 1"},
            "failed": {"exec": "RuntimeError: berth: docker exec: gone"}}
    text = engine.report(res, args, info)
    assert "run --rm true, median" in text and "create" in text
    assert "docker: not measured: dockerd exited" in text and "exec: not measured" in text


def test_all_reports_a_hung_bench_and_goes_on(tmp_path, monkeypatch):
    allmod = _load("all")
    hang = tmp_path / "hang.py"
    hang.write_text("import signal, sys, time\n"
                    "signal.signal(signal.SIGTERM, lambda *a: (print('cleaned up'), sys.exit(143)))\n"
                    "print('started', flush=True)\ntime.sleep(60)\n")
    code, text = allmod.run_bench(hang, [], limit=2)
    assert code is None and "cleaned up" in text and "stopped after 2 s" in text
    partial = tmp_path / "partial.py"
    partial.write_text("print('table'); raise SystemExit(3)\n")
    assert allmod.run_bench(partial, [], limit=30) == (3, "table\n")
