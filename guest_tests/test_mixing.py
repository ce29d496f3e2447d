"""RWF_DONTCACHE mixed with cached I/O on the same block device: cached
users keep their folios, and concurrent writers never tear blocks."""

from __future__ import annotations

import mmap
import os
import threading
import time

from dontcache_io import (PAGE, cached_pages, cachestat, dontcache_write, drop_caches,
                          odirect_read)

NPAGES = 16
SENTINEL_OFF = 32 << 20   # a DONTCACHE range nothing else caches
SENTINEL_WAIT = 10.0      # seconds for it to leave the cache
SENTINEL_TRIES = 3        # fresh ranges after a folio skipped for a busy lock


def _settle(fd, controls, off, length):
    """Wait until a DONTCACHE sentinel range has been evicted (dropbehind
    demonstrably acted on this device after the range under test was written
    back, deferred work included); then count what is cached of
    [off, off+length)."""
    controls.sentinel_evicted(fd, SENTINEL_OFF, length, tries=SENTINEL_TRIES,
                              timeout=SENTINEL_WAIT)
    return cached_pages(fd, off, length)


def test_cached_then_dontcache_stays_cached(nullblk_factory, controls, record_property):
    """A folio already in the cache from a normal write is never marked
    dropbehind: a later DONTCACHE write of the same range must not evict
    data another user cached."""
    controls.expect("sentinel_evicted")
    dev = nullblk_factory(irqmode=2)
    fd = os.open(dev.path, os.O_RDWR)
    try:
        n = NPAGES * PAGE
        os.pwrite(fd, os.urandom(n), 0)
        os.fsync(fd)
        data = os.urandom(n)
        assert dontcache_write(fd, data, 0) == n
        left = _settle(fd, controls, 0, n)
        record_property("pages_cached", f"{left}/{NPAGES}")
        assert left == NPAGES, f"DONTCACHE write evicted {NPAGES - left} already-cached folios"
        assert odirect_read(dev.path, 0, n) == data
    finally:
        os.close(fd)


def test_dontcache_then_normal_write_stays_cached(nullblk_factory, controls, record_property):
    """A normal write to a DONTCACHE folio before writeback clears its
    dropbehind mark: the normal writer asked for caching, so it stays.
    A 50 ms completion time keeps the DONTCACHE writeback (which the write
    itself kicks off) in flight while the normal write lands."""
    controls.expect("sentinel_evicted")
    dev = nullblk_factory(irqmode=2, completion_nsec=50_000_000)
    fd = os.open(dev.path, os.O_RDWR)
    try:
        n = NPAGES * PAGE
        assert dontcache_write(fd, os.urandom(n), 0) == n
        data = os.urandom(n)
        os.pwrite(fd, data, 0)        # DONTCACHE writes kick writeback: race is fine,
        left = _settle(fd, controls, 0, n)   # a normal write always re-caches the folio
        record_property("pages_cached", f"{left}/{NPAGES}")
        assert left == NPAGES, f"{NPAGES - left} folios evicted although normally rewritten"
        assert odirect_read(dev.path, 0, n) == data
    finally:
        os.close(fd)


def test_mmapped_range_stays_cached(nullblk_factory, controls, record_property):
    """Folios mapped into a process (mmap + touched) must not be invalidated
    by dropbehind: DONTCACHE write, then map and touch while its writeback
    is still in flight (200 ms completions; asserted), then writeback ends.
    The mapping must keep seeing the written data and the folios stay
    cached. Without the in-flight wait the writeback could end before the
    touch, the folios leave unmapped and the touch reads them back as
    plain cached folios: the test would pass on a kernel that evicts
    mapped folios (it did, on the evicts-mapped-folios mutant)."""
    controls.expect("writeback_in_flight", "sentinel_evicted")
    dev = nullblk_factory(irqmode=2, completion_nsec=200_000_000)
    fd = os.open(dev.path, os.O_RDWR)
    n = NPAGES * PAGE
    m = mmap.mmap(fd, n, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        data = os.urandom(n)
        assert dontcache_write(fd, data, 0) == n
        touched = sum(m[i * PAGE] for i in range(NPAGES))  # fault every page in
        cs = cachestat(fd, 0, n)
        controls.check("writeback_in_flight", cs.nr_writeback > 0,
                       f"right after the touch: {cs}",
                       "the race (writeback should still be in flight when the pages are mapped)")
        left = _settle(fd, controls, 0, n)
        record_property("pages_cached", f"{left}/{NPAGES}")
        record_property("touched_sum", str(touched))
        assert m[:] == data, "mapping does not show the DONTCACHE-written data"
        assert left == NPAGES, f"{NPAGES - left} mapped folios were evicted"
        assert odirect_read(dev.path, 0, n) == data
    finally:
        m.close()
        os.close(fd)


def test_concurrent_dontcache_and_normal_writers(nullblk_factory, record_property):
    """Two threads write the same blocks at once, one with DONTCACHE and one
    with normal writes (multi-block writes, opposite directions, for the same
    wall-clock time so that either may write a block last). Every 4 KiB block
    on the device must afterwards equal one writer's data for that block: no
    torn, stale or zeroed blocks when dropbehind races a cached writer."""
    dev = nullblk_factory(irqmode=2)
    nblocks, per_write, seconds = 64, 8, 1.5
    pattern = {w: [os.urandom(PAGE) for _ in range(nblocks)] for w in ("dc", "normal")}
    errors: list[BaseException] = []
    start = threading.Barrier(2)
    rounds: dict[str, int] = {}

    def writer(kind: str):
        try:
            fd = os.open(dev.path, os.O_RDWR)
            try:
                start.wait()
                deadline = time.monotonic() + seconds
                r = 0
                while time.monotonic() < deadline:
                    r += 1
                    order = range(0, nblocks, per_write)
                    for b in (order if (r % 2 == 0) == (kind == "dc") else reversed(order)):
                        buf = b"".join(pattern[kind][b:b + per_write])
                        if kind == "dc":
                            dontcache_write(fd, buf, b * PAGE)
                        else:
                            os.pwrite(fd, buf, b * PAGE)
                os.fsync(fd)
                rounds[kind] = r
            finally:
                os.close(fd)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in ("dc", "normal")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    record_property("rounds", f"dc={rounds.get('dc')} normal={rounds.get('normal')}")

    def check(label):
        got = odirect_read(dev.path, 0, nblocks * PAGE)
        counts = {"dc": 0, "normal": 0, "neither": []}
        for b in range(nblocks):
            blk = got[b * PAGE:(b + 1) * PAGE]
            if blk == pattern["dc"][b]:
                counts["dc"] += 1
            elif blk == pattern["normal"][b]:
                counts["normal"] += 1
            else:
                counts["neither"].append(b)
        record_property(f"blocks_{label}",
                        f"dc={counts['dc']} normal={counts['normal']} "
                        f"neither={len(counts['neither'])}")
        assert not counts["neither"], \
            f"{label}: blocks matching neither writer: {counts['neither'][:16]}"

    fd = os.open(dev.path, os.O_RDONLY)
    try:
        record_property("pages_cached_after", str(cached_pages(fd, 0, nblocks * PAGE)))
    finally:
        os.close(fd)
    check("after_writeback")
    drop_caches(3)
    check("after_drop_caches")
