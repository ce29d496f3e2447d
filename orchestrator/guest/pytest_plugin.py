"""pytest plugin loaded with `-p orchestrator.guest.pytest_plugin`, on the host and in
the guest, so both see exactly the same selection of tests.

On the host (ORCH_COLLECT=FILE) it writes the node ids pytest collected, so
orch knows what it expects before it builds anything. In the guest
(ORCH_MARKS=/dev/kmsg) it writes one line into the kernel log when a test
starts and one when it ends. pytest writes its JUnit file only when the
session ends, so a kernel that dies mid-suite would lose every result; the
kernel log goes out on the serial console as it is written, so the tests
that finished keep their outcome and the test the kernel died in is named.

The lines are `orch-test: start <nodeid>` and
`orch-test: end <PASS|FAIL|ERROR|SKIP> <nodeid>[  # <reason>]`; the host reads
them with orchestrator.guest.markers.
"""

from __future__ import annotations

import json
import os
import re

import pytest

PREFIX = "orch-test:"
_CTRL = re.compile(r"[\x00-\x1f\x7f]+")


def _mark(text: str) -> None:
    path = os.environ.get("ORCH_MARKS")
    if not path:
        return
    line = _CTRL.sub(" ", f"{PREFIX} {text}")[:400] + "\n"
    # One open per line: /dev/kmsg rate-limits per open file (10 lines per
    # 5 s), and a fresh open starts a fresh allowance.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        os.write(fd, line.encode(errors="replace"))
    except OSError:
        pass
    finally:
        os.close(fd)


def pytest_configure(config):
    if os.environ.get("ORCH_MARKS") == "/dev/kmsg":
        try:  # no rate limit at all for this boot, where the kernel allows it
            with open("/proc/sys/kernel/printk_devkmsg", "w") as f:
                f.write("on\n")
        except OSError:
            pass


def pytest_collection_finish(session):
    out = os.environ.get("ORCH_COLLECT")
    if out:
        with open(out, "w") as f:
            json.dump([item.nodeid for item in session.items], f)


_outcome: dict[str, tuple[str, str]] = {}


def _reason(report) -> str:
    """A skip's reason, or a failure's first `E` line: the JUnit file has
    the whole message; this is what is left if it never gets written."""
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:      # a skip: (file, line, reason)
        return str(lr[2]).removeprefix("Skipped: ")
    lines = (getattr(report, "longreprtext", "") or "").strip().splitlines()
    errors = [l[1:].strip() for l in lines if l.startswith("E ")]
    return errors[0] if errors else (lines or [""])[-1]


def pytest_runtest_logstart(nodeid, location):
    _outcome.pop(nodeid, None)
    _mark(f"start {nodeid}")


def pytest_runtest_logreport(report):
    status, why = _outcome.get(report.nodeid, ("PASS", ""))
    if report.when == "call":
        if report.failed:
            status, why = "FAIL", _reason(report)
        elif report.skipped:
            status, why = "SKIP", _reason(report)
    elif report.failed and status != "FAIL":   # setup or teardown broke
        status, why = "ERROR", _reason(report)
    elif report.skipped and report.when == "setup":
        status, why = "SKIP", _reason(report)
    _outcome[report.nodeid] = (status, why)


def pytest_runtest_logfinish(nodeid, location):
    status, why = _outcome.get(nodeid, ("ERROR", "no outcome reported"))
    _mark(f"end {status} {nodeid}" + (f"  # {why}" if why else ""))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    _mark(f"done {int(exitstatus)}")
