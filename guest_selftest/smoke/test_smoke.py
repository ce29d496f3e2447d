"""Checks that hold on any Linux kernel: what a suite of one's own looks like."""

from __future__ import annotations

import os

from smoke_helpers import page_size


def test_page_size_is_a_power_of_two(pagesize, record_property):
    record_property("page_size", str(pagesize))
    assert pagesize == page_size() and pagesize & (pagesize - 1) == 0


def test_proc_reports_the_running_kernel():
    with open("/proc/version") as f:
        assert f.read().startswith("Linux version " + os.uname().release)
