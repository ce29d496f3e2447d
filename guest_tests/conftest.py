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
        dev = Path(f"/dev/nullb{index}")
        deadline = time.monotonic() + 5
        while not dev.exists():
            if time.monotonic() > deadline:
                pytest.fail(f"{dev} did not appear")
            time.sleep(0.05)
        nb = NullBlk(name, dev, irqmode, size_mb)
        request.node.user_properties.append(("device", f"null_blk {dev} irqmode={irqmode}"))
        return nb

    yield make
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
