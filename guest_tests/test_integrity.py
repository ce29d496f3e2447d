"""Data integrity of RWF_DONTCACHE block-device writes: nothing is lost when
the folios are dropped behind writeback."""

from __future__ import annotations

import hashlib
import os

from dontcache_io import (PAGE, cached_pages, dontcache_write, drop_caches, odirect_read,
                          odirect_write, wait_evicted)

REGION = 8 << 20  # bytes of the device the test models
CONTROL_OFF = 32 << 20   # the positive control's range
CONTROL_LEN = 64 << 10


def _sha(b) -> str:
    return hashlib.sha256(b).hexdigest()[:16]


def test_dontcache_writes_keep_data(nullblk_factory, controls, record_property):
    """Random data written with DONTCACHE, page-aligned and unaligned in offset
    and length (read-modify-write of partial folios), must read back bit-exact
    with O_DIRECT once the folios have been evicted (asserted, with a normal
    write as positive control), and again after drop_caches: eviction must
    never drop dirty or in-flight data."""
    controls.expect("cached")
    dev = nullblk_factory(irqmode=2)
    size = dev.size_mb << 20
    model = bytearray(os.urandom(REGION))
    odirect_write(dev.path, bytes(model), 0)      # known background bytes
    writes = [
        (0, 64 << 10),                            # aligned, 16 pages
        (1 << 20, PAGE),                          # aligned, one page
        (20 * PAGE + 123, 10000),                 # unaligned start and length
        ((2 << 20) - 100, 300),                   # straddles a page boundary
        (5 * (1 << 20) + 7, 3 * PAGE + 5),        # unaligned, several pages
        (REGION - 4096 - 17, 4096 + 17),          # ends exactly at the region end
        (3 * PAGE + 1, 1),                        # a single byte
    ]
    tail = (size - 1000, 1000)                    # last bytes of the device
    tail_data = os.urandom(tail[1])
    fd = os.open(dev.path, os.O_RDWR)
    try:
        for off, length in writes:
            chunk = os.urandom(length)
            assert dontcache_write(fd, chunk, off) == length
            model[off:off + length] = chunk
        assert dontcache_write(fd, tail_data, tail[0]) == tail[1]
        assert os.pwrite(fd, os.urandom(CONTROL_LEN), CONTROL_OFF) == CONTROL_LEN
        os.fsync(fd)
        left = wait_evicted(fd, 0, REGION, timeout=10) + wait_evicted(fd, *tail, timeout=1)
        record_property("pages_still_cached_after_fsync", str(left))
        controls.still_cached(fd, CONTROL_OFF, CONTROL_LEN,
                              "normal write of 16 pages, same fsync and wait")
        got = odirect_read(dev.path, 0, REGION)
        got_tail = odirect_read(dev.path, *tail)
        record_property("sha_expected", _sha(model))
        record_property("sha_after_eviction", _sha(got))
        bad = [(o, l) for o, l in writes if got[o:o + l] != model[o:o + l]]
        assert not bad, f"writes lost or corrupted after eviction: {bad}"
        assert got == model, "bytes around the writes changed (read-modify-write broke)"
        assert got_tail == tail_data, "write at the end of the device lost"
        assert left == 0, f"{left} DONTCACHE-written pages still cached 10 s after fsync"
        drop_caches(3)
        assert cached_pages(fd, 0, size) == 0
        got2 = odirect_read(dev.path, 0, REGION)
        record_property("sha_after_drop_caches", _sha(got2))
        assert got2 == model, "data differs after drop_caches"
        assert odirect_read(dev.path, *tail) == tail_data
    finally:
        os.close(fd)
