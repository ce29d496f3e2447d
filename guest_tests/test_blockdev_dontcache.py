"""RWF_DONTCACHE on block devices: accepted, and the folios leave the cache."""

from __future__ import annotations

import errno
import os

import pytest

from conftest import PAGE, cached_pages, dontcache_write, wait_evicted

NPAGES = 16


def _write_and_check(dev, record_property):
    fd = os.open(dev.path, os.O_RDWR)
    try:
        data = os.urandom(NPAGES * PAGE)
        try:
            n = dontcache_write(fd, data, 0)
        except OSError as e:
            if e.errno == errno.EOPNOTSUPP:
                pytest.fail("block device rejects RWF_DONTCACHE writes (EOPNOTSUPP)")
            raise
        assert n == len(data)
        os.fsync(fd)
        left = wait_evicted(fd, 0, len(data))
        record_property("pages_still_cached", str(left))
        assert left == 0, f"{left}/{NPAGES} DONTCACHE folios still cached after fsync"
    finally:
        os.close(fd)


def test_dontcache_write_irq_completion_evicts(nullblk_factory, record_property):
    """Writeback completing in hard IRQ (null_blk irqmode=2, timer) is the
    case the series fixes: folio_end_dropbehind() skipped invalidation when
    !in_task(), so the folios stayed cached."""
    _write_and_check(nullblk_factory(irqmode=2), record_property)


def test_dontcache_write_task_completion_evicts(nullblk_factory, record_property):
    """Control: with completion inline in the submitting task (irqmode=0)
    eviction works even without the deferral, once the flag is accepted."""
    _write_and_check(nullblk_factory(irqmode=0), record_property)
