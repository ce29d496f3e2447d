"""Fixtures for the in-guest suite (run inside the guest as root, against
whatever kernel booted; tests assert behaviour, never kernel versions).

Helpers live beside this file: dontcache_io.py (cachestat, DONTCACHE and
O_DIRECT I/O), devices.py (null_blk, the virtio-blk scratch disk),
controls.py (asserted controls), kmsg.py (new kernel log lines),
figures.py (declared figures for the nightly's pictures).
"""

from __future__ import annotations

import os

import pytest

from controls import ControlError, Controls
from devices import create_nullblk, find_scratch_disk, remove_nullblk, SCRATCH_SERIAL
from figures import Recorder
from kmsg import KernelLog


def _kallsyms_has(symbol: str) -> bool:
    try:
        with open("/proc/kallsyms") as f:
            return any(line.split()[2] == symbol for line in f if len(line.split()) >= 3)
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _kernel_evidence(record_property):
    """Evidence for the report, never a switch for expectations."""
    record_property("kernel", os.uname().release)
    record_property("dropbehind_work_fn", str(_kallsyms_has("dropbehind_work_fn")))


@pytest.fixture
def figure(request) -> Recorder:
    """Records a figure declared in figures.py: figure(name, value[, at=x])."""
    return Recorder(request.node.user_properties)


@pytest.fixture
def controls(request) -> Controls:
    """The test's asserted controls (see controls.py); their outcome becomes
    the `control` property."""
    c = Controls(request.node)
    request.node._orch_controls = c
    return c


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    c = getattr(item, "_orch_controls", None)
    if c is not None and call.when == "call":
        raised = call.excinfo is not None and call.excinfo.errisinstance(ControlError)
        # JUnit takes properties from the teardown report, made after this.
        item.user_properties.append(("control", c.summary(raised)))
    return report


@pytest.fixture
def nullblk_factory(request, controls):
    """Make memory-backed null_blk devices through configfs; removed after.
    Each device's settings are read back after power-on and asserted (the
    `device` control); `completion` records what was read back."""
    made = []
    holders: list[int] = []
    recorded: set[str] = set()

    def make(irqmode: int, size_mb: int = 64, completion_nsec: int = 10000):
        nb, d = create_nullblk(irqmode, size_mb, completion_nsec)
        made.append(d)
        # Keep the device open for the whole test: the last close of a block
        # device syncs and drops its whole page cache (blkdev_flush_mapping),
        # which would make every "still cached?" check after a close vacuous.
        holders.append(os.open(nb.path, os.O_RDONLY))
        request.node.user_properties.append(("device", f"null_blk {nb.path} irqmode={irqmode}"))
        controls.device(nb)
        if nb.completion not in recorded:
            recorded.add(nb.completion)
            request.node.user_properties.append(("completion", nb.completion))
        return nb

    yield make
    for fd in holders:
        os.close(fd)
    for d in reversed(made):
        remove_nullblk(d)


@pytest.fixture
def scratch_disk(record_property):
    """The host-attached 256 MiB virtio-blk disk (serial orch-scratch), a
    devices.ScratchDisk (os.open() takes it as a path)."""
    disk = find_scratch_disk()
    if disk is None or not disk.path.exists():
        pytest.skip(f"no virtio-blk disk with serial {SCRATCH_SERIAL} in /sys/block/vd*/serial")
    record_property("device", f"virtio-blk {disk.path} ({disk.virtio or '?'})")
    holder = os.open(disk.path, os.O_RDONLY)   # see nullblk_factory: last close drops the cache
    try:
        yield disk
    finally:
        os.close(holder)


@pytest.fixture
def kernel_log() -> KernelLog:
    if not os.path.exists("/dev/kmsg"):
        pytest.skip("/dev/kmsg is not available")
    return KernelLog()
