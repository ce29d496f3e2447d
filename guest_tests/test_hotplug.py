"""CPU hotplug while DONTCACHE writeback completes: no leaked folios, no splats."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from conftest import PAGE, cached_pages, cachestat, dc_write, drop_caches, odirect_read, wait_evicted

CPU_ROOT = Path("/sys/devices/system/cpu")
NPAGES = 256
ROUNDS = 3


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


def test_cpu_offline_during_dontcache_writeback(nullblk_factory, kernel_log, record_property):
    """Take a CPU offline (and back) while DONTCACHE writeback submitted from
    it is completing (null_blk irqmode=2 timers fire on the submitting CPU,
    so deferred folios queue on that CPU). Afterwards no folio may be leaked
    (the whole range can be evicted: no stray references), the data must be
    on the device, and the kernel log must have no new WARNING/BUG/Oops."""
    cpu = _hotpluggable_cpu()
    record_property("hotplug_cpu", str(cpu))
    # 20 ms per request keeps completions pending while the CPU goes away.
    dev = nullblk_factory(irqmode=2, size_mb=64, completion_nsec=20_000_000)
    n = NPAGES * PAGE
    all_cpus = os.sched_getaffinity(0)
    results = []
    try:
        for r in range(ROUNDS):
            off = r * n
            data = os.urandom(n)
            errors: list[BaseException] = []
            written = threading.Event()

            def writer():
                try:
                    os.sched_setaffinity(0, {cpu})
                    fd = os.open(dev.path, os.O_RDWR)
                    try:
                        for p in range(0, n, 16 * PAGE):
                            dc_write(fd, data[p:p + 16 * PAGE], off + p)
                        written.set()      # writeback was kicked by each write
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)

            t = threading.Thread(target=writer)
            t.start()
            os.sched_setaffinity(0, all_cpus - {cpu} or all_cpus)
            written.wait(60)
            time.sleep(0.005 * r)              # vary where in writeback we cut
            hfd = os.open(dev.path, os.O_RDONLY)
            try:
                cs = cachestat(hfd, off, n)
            finally:
                os.close(hfd)
            alive = f"{cs.nr_dirty + cs.nr_writeback}/{NPAGES}"
            _set_online(cpu, False)
            time.sleep(0.2)
            _set_online(cpu, True)
            t.join(120)
            assert not t.is_alive(), "writer hung across CPU hotplug"
            if errors:
                raise errors[0]
            fd = os.open(dev.path, os.O_RDONLY)
            try:
                left = wait_evicted(fd, off, n, timeout=2)
                os.posix_fadvise(fd, off, n, os.POSIX_FADV_DONTNEED)
                forced = cached_pages(fd, off, n)
            finally:
                os.close(fd)
            ok = odirect_read(dev.path, off, n) == data
            results.append((left, forced, ok, alive))
    finally:
        os.sched_setaffinity(0, all_cpus)
        if (CPU_ROOT / f"cpu{cpu}" / "online").read_text().strip() != "1":
            _set_online(cpu, True)
    drop_caches(3)
    fd = os.open(dev.path, os.O_RDONLY)
    try:
        after_drop = cached_pages(fd, 0, ROUNDS * n)
    finally:
        os.close(fd)
    problems = kernel_log.problems()
    record_property("rounds", "; ".join(
        f"in_flight_at_offline={d} cached_after_fsync={a}/{NPAGES} after_fadvise={b} data_ok={c}"
        for a, b, c, d in results))
    record_property("pages_cached_after_drop_caches", str(after_drop))
    record_property("kernel_log_new_lines", str(len(kernel_log.new_lines())))
    record_property("kernel_problems", str(len(problems)))
    assert not problems, "new kernel log problems:\n" + "\n".join(problems[:20])
    assert all(ok for _, _, ok, _ in results), "data lost across CPU hotplug"
    assert all(b == 0 for _, b, _, _ in results) and after_drop == 0, \
        f"folios could not be evicted (leaked references?): {results}, after drop_caches {after_drop}"
