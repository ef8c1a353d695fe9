"""Runs last (tests/conftest.py moves it there): whatever the session left on
the host that was not there when it started is a bug in a test's teardown
or in the runtime's delete."""


def test_session_left_nothing_behind(host_snapshot):
    new = host_snapshot.new_since_start()
    report = "\n".join(f"{kind}:\n  " + "\n  ".join(entries)
                       for kind, entries in new.items())
    assert not new, "new since the session started:\n" + report
