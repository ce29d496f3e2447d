"""For orch's own tests (tests/test_crash_e2e.py); runs in the guest, not on
the host: a test that hangs must fail on its own timeout and the suite must
go on to the next test."""

import time


def test_hangs():
    time.sleep(3600)


def test_after_the_hang():
    assert True
