"""RWF_DONTCACHE I/O and page-cache residency for the in-guest suite.

cachestat(2) tells what is cached; DONTCACHE writes and reads go through
pwritev2/preadv2 (Python's os.pwritev/os.preadv with flags); O_DIRECT
reads and writes check and prepare the device without touching the cache.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import time
from pathlib import Path

import pytest

RWF_DONTCACHE = 0x80
SYS_CACHESTAT = 451  # x86_64
PAGE = os.sysconf("SC_PAGE_SIZE")
O_DIRECT = getattr(os, "O_DIRECT", 0o40000)


class CacheStatRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class CacheStat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]

    def __str__(self) -> str:
        return (f"cache={self.nr_cache} dirty={self.nr_dirty} writeback={self.nr_writeback} "
                f"evicted={self.nr_evicted}")


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def cachestat(fd: int, off: int, length: int) -> CacheStat:
    rng, cs = CacheStatRange(off, length), CacheStat()
    if _libc.syscall(ctypes.c_long(SYS_CACHESTAT), ctypes.c_int(fd), ctypes.byref(rng),
                     ctypes.byref(cs), ctypes.c_uint(0)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return cs


def cached_pages(fd: int, off: int, length: int) -> int:
    return cachestat(fd, off, length).nr_cache


def wait_evicted(fd: int, off: int, length: int, timeout: float = 10.0) -> int:
    """Eviction after writeback may be deferred to a worker: poll for it.
    Returns the number of pages still cached when it gave up (0 = evicted)."""
    deadline = time.monotonic() + timeout
    while True:
        left = cached_pages(fd, off, length)
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _rejected(what: str, op: str) -> None:
    pytest.fail(f"{what} rejects RWF_DONTCACHE {op} (EOPNOTSUPP)")


def dontcache_write(fd: int, data, off: int, what: str = "block device") -> int:
    """A RWF_DONTCACHE write. EOPNOTSUPP FAILs the test: the feature under
    test is missing."""
    try:
        return os.pwritev(fd, [data], off, RWF_DONTCACHE)
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            _rejected(what, "writes")
        raise


def dontcache_read(fd: int, length: int, off: int, what: str = "block device") -> bytes:
    """A RWF_DONTCACHE read; EOPNOTSUPP FAILs the test like dontcache_write."""
    buf = bytearray(length)
    try:
        n = os.preadv(fd, [buf], off, RWF_DONTCACHE)
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            _rejected(what, "reads")
        raise
    return bytes(buf[:n])


def dontcache_supported(fd: int) -> bool:
    """Does `fd` accept RWF_DONTCACHE? Probes with a one-byte DONTCACHE read
    at offset 0 (a zero-length iovec returns 0 before the flags are looked
    at), then drops whatever the probe read in."""
    try:
        os.preadv(fd, [bytearray(1)], 0, RWF_DONTCACHE)
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            return False
        raise
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return True


def _aligned_buffer(length: int) -> mmap.mmap:
    """A page-aligned writable buffer for O_DIRECT (anonymous mmap)."""
    return mmap.mmap(-1, max(PAGE, -(-length // PAGE) * PAGE))


def odirect_read(path, off: int, length: int) -> bytes:
    """Read [off, off+length) from the device, bypassing the page cache.
    off/length are widened to 4 KiB; a buffered read could evict or repopulate
    folios and hide what we want to check."""
    start = off - off % 4096
    end = -(-(off + length) // 4096) * 4096
    buf = _aligned_buffer(end - start)
    fd = os.open(path, os.O_RDONLY | O_DIRECT)
    try:
        got = 0
        with memoryview(buf) as whole:
            while got < end - start:
                with whole[got:end - start] as view:
                    n = os.preadv(fd, [view], start + got)
                if n <= 0:
                    break
                got += n
        data = bytes(buf[off - start:off - start + length])
    finally:
        os.close(fd)
        buf.close()
    return data


def odirect_write(path, data: bytes, off: int) -> None:
    assert off % 4096 == 0 and len(data) % 4096 == 0
    buf = _aligned_buffer(len(data))
    buf[:len(data)] = data
    fd = os.open(path, os.O_WRONLY | O_DIRECT)
    try:
        with memoryview(buf) as whole, whole[:len(data)] as view:
            n = os.pwritev(fd, [view], off)
        assert n == len(data)
    finally:
        os.close(fd)
        buf.close()


def drop_caches(level: int = 3) -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text(f"{level}\n")
