"""Asserted controls: a test proves it can see what it claims to measure.

Each control records its evidence as the JUnit property `control_<name>`
and, when it does not hold, raises ControlError ("control did not
reproduce ..."). That is not an AssertionError, but pytest's JUnit writer
still files any exception of the call phase as <failure>, so orch counts a
failed control as FAIL; the property `control` (written by conftest.py for
every test that checks controls) says `failed: <name>` then, `passed: ...`
when every control held, and `not reached` when the test stopped before
its controls (e.g. EOPNOTSUPP on an unpatched kernel).
"""

from __future__ import annotations

import os

from devices import handlers_threaded, nullblk_mismatch
from dontcache_io import PAGE, cachestat, dontcache_write, wait_evicted


class ControlError(Exception):
    """A control did not hold: the test's measurement means nothing."""


class Controls:
    def __init__(self, node) -> None:
        self._node = node
        self.passed: list[str] = []
        self.failed: str | None = None
        self.expected: list[str] = []

    def check(self, name: str, ok: bool, evidence: str, what: str) -> None:
        """Record `evidence`; raise ControlError unless `ok`. `what` completes
        "control did not reproduce ..."."""
        self._node.user_properties.append((f"control_{name}", evidence))
        if not ok:
            self.failed = name
            raise ControlError(f"control did not reproduce {what}: {evidence}")
        self.passed.append(name)

    def still_cached(self, fd: int, off: int, length: int, how: str) -> None:
        """Positive control: a normal write of `length` bytes at `off`, written
        back and waited on like the DONTCACHE range, is fully cached and clean
        (its writeback completed and the folios stayed). Check it at the moment
        the DONTCACHE range is judged."""
        pages = -(-length // PAGE)
        cs = cachestat(fd, off, length)
        self.check("cached", cs.nr_cache == pages and cs.nr_dirty == 0 and cs.nr_writeback == 0,
                   f"{how}: {cs.nr_cache}/{pages} cached ({cs})",
                   "caching (a normal write should stay cached and clean)")

    def sentinel_evicted(self, fd: int, off: int, length: int, tries: int = 3,
                         timeout: float = 10.0) -> None:
        """Sentinel control: a DONTCACHE range that nothing else caches,
        written and fsynced, leaves the cache, so dropbehind does act here
        and "stayed cached" means something.

        folio_end_dropbehind() skips a folio whose lock is busy when its
        writeback ends (by design: it may not sleep there). Under host
        contention one sentinel folio of 16 once stayed that way, and that
        says nothing about whether dropbehind acts on this device. So a
        sentinel that does not fully leave is followed by a fresh range
        (after the previous one), up to `tries` ranges; the control holds
        when one of them leaves completely. A kernel that does not evict
        fails every try."""
        pages = -(-length // PAGE)
        tried = []
        for i in range(tries):
            start = off + i * length
            if dontcache_write(fd, os.urandom(length), start) != length:
                raise ControlError(f"short DONTCACHE write of the sentinel at {start}")
            os.fsync(fd)
            left = wait_evicted(fd, start, length, timeout)
            tried.append(f"{left}/{pages}")
            if left == 0:
                break
        self.check("sentinel_evicted", left == 0,
                   f"DONTCACHE sentinel of {pages} pages: still cached after {timeout:g} s: "
                   f"{', '.join(tried)} ({len(tried)} range(s))",
                   "eviction (a DONTCACHE sentinel range should leave the cache)")

    def device(self, nb) -> None:
        """A null_blk completes the way the test says: its configfs settings,
        read back after power-on, are what the test asked for."""
        bad = nullblk_mismatch(nb)
        if nb.irqmode == 2 and "PREEMPT_RT" in os.uname().version:
            bad.append("PREEMPT_RT kernel (timer completions leave hard IRQ)")
        self.check("device", not bad,
                   f"{nb.path}: " + (", ".join(bad) if bad else
                                     " ".join(f"{k}={v}" for k, v in nb.readback.items())),
                   "the device setup (null_blk settings read back from configfs)")

    def irq_completion(self, disk, interrupts_before: int | None) -> str:
        """The virtio-blk disk completed the test's writes in its virtqueue
        interrupt: its interrupt count went up, and handlers are not threaded.
        Returns the completion text to record."""
        after = disk.interrupts()
        threaded = handlers_threaded()
        n = None if after is None or interrupts_before is None else after - interrupts_before
        evidence = (f"{disk.path} ({disk.virtio or '?'}): "
                    + (f"{n} virtqueue interrupts during the writes" if n is not None
                       else "no virtqueue interrupt line in /proc/interrupts")
                    + (f"; {threaded}" if threaded else ""))
        self.check("device", bool(n) and not threaded, evidence,
                   "completion in the virtqueue interrupt")
        return f"virtio-blk virtqueue interrupt ({n} interrupts during the writes)"

    def expect(self, *names: str) -> None:
        """Name the controls this test means to check, so that the `control`
        property can say which were not reached."""
        self.expected.extend(n for n in names if n not in self.expected)

    def summary(self, raised_control: bool) -> str:
        passed = list(dict.fromkeys(self.passed))
        missing = [n for n in self.expected if n not in passed and n != self.failed]
        parts = []
        if raised_control or self.failed:
            parts.append(f"failed: {self.failed}")
        if passed:
            parts.append("passed: " + ", ".join(passed))
        if missing and not (raised_control or self.failed):
            parts.append("not reached: " + ", ".join(missing))
        return "; ".join(parts) or "not reached"
