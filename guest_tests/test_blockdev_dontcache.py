"""RWF_DONTCACHE on block devices: accepted, and the folios leave the cache."""

from __future__ import annotations

import os

from dontcache_io import PAGE, dontcache_write, wait_evicted

NPAGES = 16
CONTROL_OFF = 32 << 20   # the positive control's range, far from the DONTCACHE one


def _write_and_check(dev, controls, record_property, figure):
    controls.expect("cached")
    fd = os.open(dev.path, os.O_RDWR)
    try:
        n = NPAGES * PAGE
        data = os.urandom(n)
        assert dontcache_write(fd, data, 0) == n
        assert os.pwrite(fd, os.urandom(n), CONTROL_OFF) == n    # positive control
        os.fsync(fd)
        left = wait_evicted(fd, 0, n)
        record_property("pages_written", str(NPAGES))
        record_property("pages_still_cached", str(left))
        figure("evicted", (NPAGES - left) / NPAGES)     # the nightly's eviction picture
        controls.still_cached(fd, CONTROL_OFF, n, f"normal write of {NPAGES} pages, same fsync and wait")
        assert left == 0, f"{left}/{NPAGES} DONTCACHE folios still cached after fsync"
    finally:
        os.close(fd)


def test_dontcache_write_irq_completion_evicts(nullblk_factory, controls, record_property,
                                               figure):
    """Writeback completing in hard IRQ (null_blk irqmode=2, timer) is the
    case the series fixes: folio_end_dropbehind() skipped invalidation when
    !in_task(), so the folios stayed cached."""
    _write_and_check(nullblk_factory(irqmode=2), controls, record_property, figure)


def test_dontcache_write_task_completion_evicts(nullblk_factory, controls, record_property,
                                                figure):
    """Control: with completion inline in the submitting task (irqmode=0)
    eviction works even without the deferral, once the flag is accepted."""
    _write_and_check(nullblk_factory(irqmode=0), controls, record_property, figure)
