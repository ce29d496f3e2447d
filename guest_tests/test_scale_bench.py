"""Scale benchmark: N DONTCACHE writers on N null_blk irqmode=2 devices.

Numbers, not a verdict: it passes when it ran. Written to
$ORCH_RESULTS/scale.json beside the JUnit file.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from dontcache_io import RWF_DONTCACHE, cached_pages, dontcache_supported

SECONDS_PER_N = float(os.environ.get("ORCH_SCALE_SECONDS", "3"))
DEV_MB = 32
CHUNK = 256 << 10
LOCK_STAT = Path("/proc/lock_stat")


def results_dir() -> Path:
    d = os.environ.get("ORCH_RESULTS")
    if d and os.path.isdir(d) and os.access(d, os.W_OK):
        return Path(d)
    import tempfile
    return Path(tempfile.gettempdir())


def _lock_stat(pattern: str = "dropbehind") -> dict[str, dict[str, float]] | None:
    """Per lock class matching `pattern`: con-bounces and contentions (the
    first two numbers after the class name in /proc/lock_stat)."""
    if not LOCK_STAT.exists():
        return None
    # Collection is off until enabled (Documentation/locking/lockstat.rst).
    switch = Path("/proc/sys/kernel/lock_stat")
    if switch.exists() and switch.read_text().strip() != "1":
        switch.write_text("1\n")
    out: dict[str, dict[str, float]] = {}
    for line in LOCK_STAT.read_text().splitlines():
        if pattern not in line or ":" not in line or line.lstrip().startswith("-"):
            continue
        name, _, rest = line.strip().rpartition(":")
        nums = re.findall(r"[\d.]+", rest)
        if len(nums) >= 2 and name:
            out[name.strip()] = {"con_bounces": float(nums[0]), "contentions": float(nums[1])}
    return out


def _writer(path: Path, deadline: float, wfd: int) -> None:
    """Child process: write DONTCACHE chunks round the device until deadline."""
    written = 0
    try:
        buf = os.urandom(CHUNK)
        fd = os.open(path, os.O_RDWR)
        size = DEV_MB << 20
        off = 0
        while time.monotonic() < deadline:
            os.pwritev(fd, [buf], off, RWF_DONTCACHE)
            written += CHUNK
            off = (off + CHUNK) % size
        os.fsync(fd)
        os.close(fd)
        os.write(wfd, f"{written}\n".encode())
        os._exit(0)
    except BaseException as e:  # noqa: BLE001
        os.write(wfd, f"ERR {e}\n".encode())
        os._exit(1)


def _run_n(n: int, devs) -> dict:
    lock_before = _lock_stat()
    pipes, pids = [], []
    t0 = time.monotonic()
    deadline = t0 + SECONDS_PER_N
    for i in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[i % len(os.sched_getaffinity(0))]})
            except OSError:
                pass
            _writer(devs[i].path, deadline, w)
        os.close(w)
        pipes.append(r)
        pids.append(pid)
    per_writer, errors = [], []
    for r, pid in zip(pipes, pids):
        with os.fdopen(r) as f:
            line = f.read().strip()
        os.waitpid(pid, 0)
        if line.startswith("ERR") or not line:
            errors.append(line or "no result")
        else:
            per_writer.append(int(line))
    seconds = time.monotonic() - t0
    cached = 0
    for d in devs[:n]:
        fd = os.open(d.path, os.O_RDONLY)
        try:
            cached += cached_pages(fd, 0, DEV_MB << 20)
        finally:
            os.close(fd)
    total = sum(per_writer)
    res = {"n": n, "seconds": round(seconds, 3), "bytes": total,
           "mib_per_s": round(total / seconds / (1 << 20), 2) if seconds else 0,
           "per_writer_mib": [round(b / (1 << 20), 1) for b in per_writer],
           "pages_cached_after": cached, "errors": errors}
    lock_after = _lock_stat()
    if lock_after is not None:
        res["lock_stat_dropbehind"] = {
            k: {f: v[f] - (lock_before or {}).get(k, {}).get(f, 0) for f in v}
            for k, v in lock_after.items()}
    return res


def test_scale_dontcache_writers(nullblk_factory, record_property):
    """N processes (each pinned to one CPU) write with DONTCACHE to N separate
    null_blk irqmode=2 devices, N = 1..online CPUs, a few seconds each: the
    throughput per N, and when CONFIG_LOCK_STAT gives /proc/lock_stat, the
    contention on lock classes named *dropbehind* (Jens Axboe's concern about
    v2's global dropbehind_lock). Passes when it ran."""
    ncpu = len(os.sched_getaffinity(0))
    out_path = results_dir() / "scale.json"
    report = {"kernel": os.uname().release, "cpus": ncpu, "seconds_per_n": SECONDS_PER_N,
              "device": "null_blk irqmode=2 memory_backed", "chunk_bytes": CHUNK,
              "lock_stat": LOCK_STAT.exists(), "runs": []}
    devs = [nullblk_factory(irqmode=2, size_mb=DEV_MB) for _ in range(ncpu)]
    fd = os.open(devs[0].path, os.O_RDWR)
    try:
        supported = dontcache_supported(fd)
    finally:
        os.close(fd)
    if not supported:
        report["skipped"] = "block device rejects RWF_DONTCACHE (EOPNOTSUPP)"
        out_path.write_text(json.dumps(report, indent=2) + "\n")
        pytest.skip("block devices reject RWF_DONTCACHE (EOPNOTSUPP): nothing to measure")
    for n in range(1, ncpu + 1):
        report["runs"].append(_run_n(n, devs))
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    record_property("scale_json", str(out_path))
    for run in report["runs"]:
        record_property(f"n{run['n']}_mib_per_s", str(run["mib_per_s"]))
        if "lock_stat_dropbehind" in run:
            record_property(f"n{run['n']}_lock_stat", json.dumps(run["lock_stat_dropbehind"]))
    if not report["lock_stat"]:
        record_property("lock_stat", "absent (CONFIG_LOCK_STAT off)")
    errors = [e for r in report["runs"] for e in r["errors"]]
    assert not errors, f"writers failed: {errors}"
