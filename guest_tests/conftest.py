"""Helpers for the in-guest suite: cachestat(2), RWF_DONTCACHE I/O, null_blk.

These tests run inside the guest as root against whatever kernel booted.
They assert behaviour, never kernel versions.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

RWF_DONTCACHE = 0x80
SYS_CACHESTAT = 451  # x86_64
PAGE = os.sysconf("SC_PAGE_SIZE")
CONFIGFS = Path("/sys/kernel/config")


class CacheStatRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class CacheStat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


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


def dontcache_write(fd: int, data: bytes, off: int) -> int:
    return os.pwritev(fd, [data], off, RWF_DONTCACHE)


def kallsyms_has(symbol: str) -> bool:
    try:
        with open("/proc/kallsyms") as f:
            return any(line.split()[2] == symbol for line in f if len(line.split()) >= 3)
    except OSError:
        return False


@dataclass
class NullBlk:
    name: str
    path: Path
    irqmode: int
    size_mb: int


def _ensure_configfs() -> None:
    if not (CONFIGFS / "nullb").exists():
        if not os.path.ismount(CONFIGFS):
            os.system(f"mount -t configfs none {CONFIGFS} 2>/dev/null")
    if not (CONFIGFS / "nullb").exists():
        pytest.skip("null_blk configfs is not available in this kernel")


@pytest.fixture
def nullblk_factory(request):
    """Make memory-backed null_blk devices through configfs; removed after."""
    made: list[Path] = []
    holders: list[int] = []

    def make(irqmode: int, size_mb: int = 64, completion_nsec: int = 10000) -> NullBlk:
        _ensure_configfs()
        idx = len(list((CONFIGFS / "nullb").glob("orch*")))
        name = f"orch{os.getpid() % 1000}x{idx}"
        d = CONFIGFS / "nullb" / name
        d.mkdir()
        made.append(d)
        for attr, value in (("size", size_mb), ("blocksize", 4096), ("memory_backed", 1),
                            ("irqmode", irqmode), ("completion_nsec", completion_nsec),
                            ("power", 1)):
            (d / attr).write_text(f"{value}\n")
        index = (d / "index").read_text().strip()
        # Newer null_blk names configfs disks after the item, older ones nullbN.
        candidates = [Path(f"/dev/{name}"), Path(f"/dev/nullb{index}")]
        deadline = time.monotonic() + 5
        while not any(c.exists() for c in candidates):
            if time.monotonic() > deadline:
                pytest.fail(f"no device node for null_blk {name} ({candidates})")
            time.sleep(0.05)
        dev = next(c for c in candidates if c.exists())
        # Keep the device open for the whole test: the last close of a block
        # device syncs and drops its whole page cache (blkdev_flush_mapping),
        # which would make every "still cached?" check after a close vacuous.
        holders.append(os.open(dev, os.O_RDONLY))
        nb = NullBlk(name, dev, irqmode, size_mb)
        request.node.user_properties.append(("device", f"null_blk {dev} irqmode={irqmode}"))
        return nb

    yield make
    for fd in holders:
        os.close(fd)
    for d in reversed(made):
        try:
            (d / "power").write_text("0\n")
            d.rmdir()
        except OSError:
            pass


@pytest.fixture(autouse=True)
def _kernel_evidence(record_property):
    """Evidence for the report, never a switch for expectations."""
    record_property("kernel", os.uname().release)
    record_property("dropbehind_work_fn", str(kallsyms_has("dropbehind_work_fn")))


# ---------------------------------------------------------------------------
# Helpers shared by the larger suite (reads, integrity, filesystems, pressure)
# ---------------------------------------------------------------------------

O_DIRECT = getattr(os, "O_DIRECT", 0o40000)
SCRATCH_SERIAL = "orch-scratch"
KERNEL_PROBLEM_WORDS = ("WARNING:", "BUG:", "BUG ", "Oops", "kernel BUG", "general protection",
                        "Call Trace:", "list_del corruption", "refcount_t:", "Bad page")


def dontcache_read(fd: int, length: int, off: int) -> bytes:
    buf = bytearray(length)
    n = os.preadv(fd, [buf], off, RWF_DONTCACHE)
    return bytes(buf[:n])


def require_dontcache(fd: int, what: str = "block device") -> None:
    """Fail (the feature under test is missing) when `fd` rejects RWF_DONTCACHE.
    Probes with a one-byte DONTCACHE read at offset 0 (a zero-length iovec would
    return 0 before the flags are looked at)."""
    try:
        os.preadv(fd, [bytearray(1)], 0, RWF_DONTCACHE)
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            pytest.fail(f"{what} rejects RWF_DONTCACHE (EOPNOTSUPP)")
        raise
    # The probe read may have left readahead folios: make sure they are gone.
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def dontcache_supported(fd: int) -> bool:
    try:
        os.preadv(fd, [bytearray(1)], 0, RWF_DONTCACHE)
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            return False
        raise
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return True


def dc_write(fd: int, data, off: int, what: str = "block device") -> int:
    """A RWF_DONTCACHE write that fails the test (feature missing) on EOPNOTSUPP."""
    try:
        return os.pwritev(fd, [data], off, RWF_DONTCACHE)
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            pytest.fail(f"{what} rejects RWF_DONTCACHE writes (EOPNOTSUPP)")
        raise


def aligned_buffer(length: int):
    """A page-aligned writable buffer for O_DIRECT (anonymous mmap)."""
    import mmap
    return mmap.mmap(-1, max(PAGE, -(-length // PAGE) * PAGE))


def odirect_read(path, off: int, length: int) -> bytes:
    """Read [off, off+length) from the device, bypassing the page cache.
    off/length are widened to 4 KiB; a buffered read could evict or repopulate
    folios and hide what we want to check."""
    start = off - off % 4096
    end = -(-(off + length) // 4096) * 4096
    buf = aligned_buffer(end - start)
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
    buf = aligned_buffer(len(data))
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


def find_scratch_disk() -> Path | None:
    for serial in sorted(Path("/sys/block").glob("vd*/serial")):
        try:
            if serial.read_text().strip() == SCRATCH_SERIAL:
                return Path("/dev") / serial.parent.name
        except OSError:
            continue
    return None


@pytest.fixture
def scratch_disk(record_property):
    """The host-attached 256 MiB virtio-blk disk (serial orch-scratch)."""
    dev = find_scratch_disk()
    if dev is None or not dev.exists():
        pytest.skip(f"no virtio-blk disk with serial {SCRATCH_SERIAL} in /sys/block/vd*/serial")
    record_property("device", f"virtio-blk {dev} (virtqueue interrupt completion)")
    holder = os.open(dev, os.O_RDONLY)   # see nullblk_factory: last close drops the cache
    try:
        yield dev
    finally:
        os.close(holder)


def host_tool(name: str) -> str:
    import shutil
    found = shutil.which(name) or next(
        (p for p in (f"/sbin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None)
    if not found:
        pytest.skip(f"{name} is not available in the guest")
    return found


class KernelLog:
    """New kernel log lines since construction, from /dev/kmsg (non-blocking)."""

    def __init__(self) -> None:
        self.start_seq = self._last_seq()

    @staticmethod
    def _records():
        try:
            fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None
        out = []
        try:
            while True:
                try:
                    rec = os.read(fd, 8192)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno == errno.EPIPE:   # overwritten records: skip on
                        continue
                    raise
                if not rec:
                    break
                head, _, msg = rec.decode(errors="replace").partition(";")
                fields = head.split(",")
                try:
                    seq = int(fields[1])
                except (IndexError, ValueError):
                    continue
                out.append((seq, msg.split("\n", 1)[0]))
        finally:
            os.close(fd)
        return out

    def _last_seq(self) -> int:
        recs = self._records()
        return recs[-1][0] if recs else -1

    def new_lines(self) -> list[str]:
        recs = self._records() or []
        return [m for s, m in recs if s > self.start_seq]

    def problems(self) -> list[str]:
        return [m for m in self.new_lines() if any(w in m for w in KERNEL_PROBLEM_WORDS)]


@pytest.fixture
def kernel_log() -> KernelLog:
    if not os.path.exists("/dev/kmsg"):
        pytest.skip("/dev/kmsg is not available")
    return KernelLog()


def results_dir() -> Path:
    d = os.environ.get("ORCH_RESULTS")
    if d and os.path.isdir(d) and os.access(d, os.W_OK):
        return Path(d)
    import tempfile
    return Path(tempfile.gettempdir())
