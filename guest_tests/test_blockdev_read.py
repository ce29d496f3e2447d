"""RWF_DONTCACHE reads from a block device: accepted, and nothing stays cached."""

from __future__ import annotations

import hashlib
import os

from dontcache_io import PAGE, cachestat, dontcache_read, odirect_write, wait_evicted

NPAGES = 64
CONTROL_OFF = 32 << 20   # the positive control's range, far from the DONTCACHE one


def test_dontcache_read_leaves_range_uncached(nullblk_factory, controls, record_property):
    """A DONTCACHE read (preadv2 flag 0x80) of a block device must be accepted
    once block devices advertise FOP_DONTCACHE, return the right data, and
    leave the range it read out of the page cache (the read side of uncached
    buffered I/O: folios are dropped as the read consumes them). Positive
    control: a normal read of the same size, waited on the same way, stays
    cached."""
    controls.expect("cached")
    dev = nullblk_factory(irqmode=2)
    n = NPAGES * PAGE
    data = os.urandom(n)
    odirect_write(dev.path, data, 0)          # on the device, not in the cache
    odirect_write(dev.path, os.urandom(n), CONTROL_OFF)
    fd = os.open(dev.path, os.O_RDONLY)
    try:
        before = cachestat(fd, 0, n).nr_cache
        record_property("pages_cached_before", str(before))
        assert before == 0, "O_DIRECT write left folios in the cache; cannot measure"
        got = dontcache_read(fd, n, 0)
        assert len(got) == n
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), \
            "DONTCACHE read returned wrong data"
        assert len(os.pread(fd, n, CONTROL_OFF)) == n                # positive control
        left = wait_evicted(fd, 0, n, timeout=5)
        record_property("pages_still_cached", str(left))
        # Readahead beyond the range is marked dropbehind but only evicted when read:
        # evidence only (up to the control's range).
        record_property("device_pages_cached", str(cachestat(fd, 0, CONTROL_OFF).nr_cache))
        controls.still_cached(fd, CONTROL_OFF, n, f"normal read of {NPAGES} pages, same wait")
        assert left == 0, f"{left}/{NPAGES} pages still cached after a DONTCACHE read"
    finally:
        os.close(fd)
