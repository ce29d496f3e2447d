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
    # The host's root comes in read-only over 9p ...
    with pytest.raises(OSError) as e:
        Path("/orch-guest-was-here").write_text("x")
    assert e.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    # ... and where the guest may write (/tmp, /var, ...: virtme's overlays,
    # which hold the repository too when it lives under /tmp) it writes to
    # its own memory. The host test checks that neither file reached it.
    Path("/tmp/orch-guest-was-here").write_text(str(os.getpid()))
    repo = Path(__file__).resolve().parent.parent
    try:
        (repo / "guest-was-here").write_text("x")
    except OSError:
        pass


def test_hangs():
    time.sleep(3600)


def test_after_the_hang():
    assert True
