"""For orch's own tests (tests/test_crash_e2e.py); runs in the guest, not on
the host: a test that hangs must fail on its own timeout and the suite must
go on to the next test, and the guest must not be able to write to the host
outside its results directory."""

import errno
import os
import time
from pathlib import Path

import pytest


def test_host_outside_results_is_read_only():
    repo = Path(__file__).resolve().parent.parent
    with pytest.raises(OSError) as e:
        (repo / "guest-was-here").write_text("x")
    assert e.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    # /tmp is writable in the guest, but it is the guest's own overlay.
    Path("/tmp/orch-guest-was-here").write_text(str(os.getpid()))


def test_hangs():
    time.sleep(3600)


def test_after_the_hang():
    assert True
