"""CPU hotplug while DONTCACHE writeback completes: no leaked folios, no splats."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from dontcache_io import (PAGE, cached_pages, cachestat, dontcache_supported, dontcache_write,
                          drop_caches, odirect_read, wait_evicted)

CPU_ROOT = Path("/sys/devices/system/cpu")
NPAGES = 256
ROUNDS = 3
TRIES = 5             # per round, to catch writeback in flight
CONTROL_OFF = 32 << 20


def _hotpluggable_cpu() -> int:
    online = [c for c in range(os.cpu_count() or 1)
              if (CPU_ROOT / f"cpu{c}").exists()]
    if len(online) < 2:
        pytest.skip("only one CPU: cannot take one offline")
    for c in online[1:]:
        if (CPU_ROOT / f"cpu{c}" / "online").exists():
            return c
    pytest.skip("no CPU has a writable online file (HOTPLUG_CPU off?)")


def _set_online(cpu: int, on: bool) -> None:
    (CPU_ROOT / f"cpu{cpu}" / "online").write_text("1\n" if on else "0\n")


def _one_try(dev, cpu: int, off: int, data: bytes, cut: float, all_cpus) -> dict:
    """DONTCACHE-write `data` at `off` from a thread pinned to `cpu` (each
    write kicks writeback; the thread then fsyncs), and take `cpu` offline
    and back only if writeback is in flight right before the offline."""
    n = len(data)
    errors: list[BaseException] = []
    written = threading.Event()

    def writer():
        try:
            os.sched_setaffinity(0, {cpu})
            fd = os.open(dev.path, os.O_RDWR)
            try:
                for p in range(0, n, 16 * PAGE):
                    dontcache_write(fd, data[p:p + 16 * PAGE], off + p)
                written.set()      # writeback was kicked by each write
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    os.sched_setaffinity(0, all_cpus - {cpu} or all_cpus)
    while not written.wait(0.05) and t.is_alive():
        pass
    time.sleep(cut)                        # vary where in writeback we cut
    hfd = os.open(dev.path, os.O_RDONLY)
    try:
        before = cachestat(hfd, off, n)
        offlined = before.nr_writeback > 0
        after = None
        if offlined:
            _set_online(cpu, False)
            after = cachestat(hfd, off, n)
            time.sleep(0.2)
            _set_online(cpu, True)
    finally:
        os.close(hfd)
    t.join(120)
    assert not t.is_alive(), "writer hung across CPU hotplug"
    if errors:
        raise errors[0]
    return {"offlined": offlined, "before": before, "after": after}


def test_cpu_offline_during_dontcache_writeback(nullblk_factory, controls, kernel_log,
                                                record_property):
    """Take a CPU offline (and back) while DONTCACHE writeback submitted from
    it is completing (null_blk irqmode=2 timers fire on the submitting CPU,
    so deferred folios queue on that CPU). Control: writeback is in flight
    (cachestat nr_writeback > 0) right before each offline; a try that finds
    it done is repeated on a fresh range, up to TRIES times. Afterwards no
    folio may be leaked (the whole range can be evicted: no stray
    references), the data must be on the device, a normally written range
    must have stayed cached (positive control), and the kernel log must have
    no new WARNING/BUG/Oops."""
    controls.expect("writeback_in_flight", "cached")
    cpu = _hotpluggable_cpu()
    record_property("hotplug_cpu", str(cpu))
    # 20 ms per request keeps completions pending while the CPU goes away.
    dev = nullblk_factory(irqmode=2, size_mb=64, completion_nsec=20_000_000)
    n = NPAGES * PAGE
    fd = os.open(dev.path, os.O_RDWR)
    try:
        if not dontcache_supported(fd):
            pytest.fail("block device rejects RWF_DONTCACHE (EOPNOTSUPP)")
        os.pwrite(fd, os.urandom(n), CONTROL_OFF)     # positive control, cached throughout
        os.fsync(fd)
    finally:
        os.close(fd)
    all_cpus = os.sched_getaffinity(0)
    results, in_flight = [], []
    try:
        for r in range(ROUNDS):
            seen = []
            for attempt in range(1, TRIES + 1):
                off = (r * TRIES + attempt - 1) * n
                data = os.urandom(n)
                got = _one_try(dev, cpu, off, data, 0.005 * r, all_cpus)
                seen.append(str(got["before"].nr_writeback))
                if got["offlined"]:
                    break
            a = got["after"]
            in_flight.append(f"round {r}: {len(seen)} tries, writeback {','.join(seen)}/{NPAGES} "
                             f"before offline" + (f", {a.nr_writeback} after" if a else ""))
            if not got["offlined"]:
                controls.check("writeback_in_flight", False, "; ".join(in_flight),
                               "writeback in flight at CPU offline")
            fd = os.open(dev.path, os.O_RDONLY)
            try:
                left = wait_evicted(fd, off, n, timeout=2)
                os.posix_fadvise(fd, off, n, os.POSIX_FADV_DONTNEED)
                forced = cached_pages(fd, off, n)
            finally:
                os.close(fd)
            ok = odirect_read(dev.path, off, n) == data
            results.append((left, forced, ok))
        controls.check("writeback_in_flight", True, "; ".join(in_flight),
                       "writeback in flight at CPU offline")
    finally:
        os.sched_setaffinity(0, all_cpus)
        if (CPU_ROOT / f"cpu{cpu}" / "online").read_text().strip() != "1":
            _set_online(cpu, True)
    fd = os.open(dev.path, os.O_RDONLY)
    try:
        controls.still_cached(fd, CONTROL_OFF, n, f"normal write of {NPAGES} pages before the rounds")
        drop_caches(3)
        after_drop = cached_pages(fd, 0, dev.size_mb << 20)
    finally:
        os.close(fd)
    problems = kernel_log.problems()
    record_property("rounds", "; ".join(
        f"cached_after_fsync={a}/{NPAGES} after_fadvise={b} data_ok={c}" for a, b, c in results))
    record_property("pages_cached_after_drop_caches", str(after_drop))
    record_property("kernel_log_new_lines", str(len(kernel_log.new_lines())))
    record_property("kernel_problems", str(len(problems)))
    assert not problems, "new kernel log problems:\n" + "\n".join(problems[:20])
    assert all(ok for _, _, ok in results), "data lost across CPU hotplug"
    assert all(b == 0 for _, b, _ in results) and after_drop == 0, \
        f"folios could not be evicted (leaked references?): {results}, after drop_caches {after_drop}"
