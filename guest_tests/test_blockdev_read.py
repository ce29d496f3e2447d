"""RWF_DONTCACHE reads from a block device: accepted, and nothing stays cached."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from conftest import PAGE, RWF_DONTCACHE, cachestat, odirect_write, wait_evicted

NPAGES = 64


def test_dontcache_read_leaves_range_uncached(nullblk_factory, record_property):
    """A DONTCACHE read (preadv2 flag 0x80) of a block device must be accepted
    once block devices advertise FOP_DONTCACHE, return the right data, and
    leave the range it read out of the page cache (the read side of uncached
    buffered I/O: folios are dropped as the read consumes them)."""
    dev = nullblk_factory(irqmode=2)
    data = os.urandom(NPAGES * PAGE)
    odirect_write(dev.path, data, 0)          # on the device, not in the cache
    fd = os.open(dev.path, os.O_RDONLY)
    try:
        before = cachestat(fd, 0, len(data)).nr_cache
        record_property("pages_cached_before", str(before))
        assert before == 0, "O_DIRECT write left folios in the cache; cannot measure"
        buf = bytearray(len(data))
        try:
            n = os.preadv(fd, [buf], 0, RWF_DONTCACHE)
        except OSError as e:
            if e.errno == errno.EOPNOTSUPP:
                pytest.fail("block device rejects RWF_DONTCACHE reads (EOPNOTSUPP)")
            raise
        assert n == len(data)
        assert hashlib.sha256(buf).digest() == hashlib.sha256(data).digest(), \
            "DONTCACHE read returned wrong data"
        left = wait_evicted(fd, 0, len(data), timeout=5)
        record_property("pages_still_cached", str(left))
        # Readahead beyond the range is marked dropbehind but only evicted when read:
        # evidence only.
        record_property("device_pages_cached",
                        str(cachestat(fd, 0, dev.size_mb << 20).nr_cache))
        assert left == 0, f"{left}/{NPAGES} pages still cached after a DONTCACHE read"
    finally:
        os.close(fd)
