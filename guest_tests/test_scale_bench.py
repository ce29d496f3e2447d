"""Scale benchmark: N DONTCACHE writers on N null_blk irqmode=2 devices.

Numbers, not a verdict: it passes when it ran and every write was whole.
Written to $ORCH_RESULTS/scale.json beside the JUnit file; the means per N
are also its figures (figures.py), which the nightly draws against N.

What it measures, and how it keeps to that:
- Fresh ranges: every (N, repeat) gets N new null_blk devices, removed
  after it (which frees their memory and page cache), and each writer
  writes its device sequentially from offset 0 and never wraps. No writer
  ever rewrites a page written before in the run, so a kernel that does
  not evict cannot look faster by hitting folios it left cached. A writer
  that reaches the end of its device stops there (`capped`); devices are
  sized from MemAvailable so a run fits in memory.
- Every pwritev return is checked against the length asked for; a short
  or failed write fails the test.
- Each N runs ORCH_SCALE_REPEATS times (at least 3, interleaved with the
  other Ns); each figure comes with its repeats, mean, stdev, min, max.
- With CONFIG_LOCK_STAT, /proc/lock_stat is cleared right before the
  writers start and read right after they end; the top LOCK_TOP lock
  classes by contentions (and by total wait time) are recorded, whatever
  their names.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest

from devices import create_nullblk, remove_nullblk
from dontcache_io import RWF_DONTCACHE, cachestat, dontcache_supported

SECONDS_PER_RUN = float(os.environ.get("ORCH_SCALE_SECONDS", "3"))
MIN_REPEATS = 3
REPEATS = max(MIN_REPEATS, int(os.environ.get("ORCH_SCALE_REPEATS", str(MIN_REPEATS))))
CHUNK = 256 << 10
MIB = 1 << 20
DEV_MB_MIN, DEV_MB_MAX = 16, 1024
LOCK_TOP = 10
LOCK_STAT = Path("/proc/lock_stat")
LOCK_STAT_NOTE = (
    "Top lock classes by contentions over the writers' run, no name filter. A local_lock "
    "(v3's per-CPU dropbehind batch) on a kernel without PREEMPT_RT only disables preemption "
    "or interrupts: lockdep tracks it, but there is nothing to wait on, so lock_stat never "
    "records a contention for it; its absence here is not a measured 0. Judge such a design "
    "by the classes that do contend (and by where its work runs). Figures stop if lockdep "
    "turned itself off after a splat (debug_locks 0).")
NUMERIC_FIELDS = ("con_bounces", "contentions", "waittime_min_us", "waittime_max_us",
                  "waittime_total_us", "waittime_avg_us", "acq_bounces", "acquisitions",
                  "holdtime_min_us", "holdtime_max_us", "holdtime_total_us", "holdtime_avg_us")


def results_dir() -> Path:
    d = os.environ.get("ORCH_RESULTS")
    if d and os.path.isdir(d) and os.access(d, os.W_OK):
        return Path(d)
    import tempfile
    return Path(tempfile.gettempdir())


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 512 * MIB


def _spread(values: list[float], digits: int = 2) -> dict:
    return {"mean": round(statistics.mean(values), digits),
            "stdev": round(statistics.stdev(values), digits) if len(values) > 1 else None,
            "min": round(min(values), digits), "max": round(max(values), digits),
            "repeats": [round(v, digits) for v in values]}


# lock_stat ------------------------------------------------------------------

def _lock_stat_absent_reason() -> str | None:
    if not LOCK_STAT.exists():
        return "/proc/lock_stat absent: kernel built without CONFIG_LOCK_STAT (orch test --config lockstat)"
    return None


def _lock_stat_clear() -> None:
    switch = Path("/proc/sys/kernel/lock_stat")   # collection switch (lockstat.rst)
    if switch.exists() and switch.read_text().strip() != "1":
        switch.write_text("1\n")
    LOCK_STAT.write_text("0\n")


def _debug_locks() -> int | None:
    try:
        for line in Path("/proc/lockdep_stats").read_text().splitlines():
            if line.strip().startswith("debug_locks:"):
                return int(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return None


def parse_lock_stat(text: str) -> dict[str, dict[str, float]]:
    """Every lock class line of /proc/lock_stat (version 0.4): the class name
    (with -R/-W for the read and write side) and its 12 figures. Contention
    point lines (name, count, [<ip>] symbol) do not have 12 figures."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 13 or not parts[-13].endswith(":"):
            continue
        try:
            nums = [float(p) for p in parts[-12:]]
        except ValueError:
            continue
        name = " ".join(parts[:-12])[:-1].strip()
        if name:
            out[name] = dict(zip(NUMERIC_FIELDS, nums))
    return out


def _top(table: dict[str, dict[str, float]], key: str) -> list[dict]:
    rows = sorted(((k, v) for k, v in table.items() if v[key] > 0),
                  key=lambda kv: kv[1][key], reverse=True)[:LOCK_TOP]
    return [{"class": k, "contentions": int(v["contentions"]), "con_bounces": int(v["con_bounces"]),
             "waittime_total_us": v["waittime_total_us"], "waittime_max_us": v["waittime_max_us"],
             "acquisitions": int(v["acquisitions"])} for k, v in rows]


def _lock_summary(tables: list[dict[str, dict[str, float]]]) -> dict:
    """Per N over its repeats: the LOCK_TOP classes by mean contentions, each
    with its spread (0 in a repeat where it did not contend)."""
    names = {k for t in tables for k, v in t.items() if v["contentions"] > 0}
    rows = []
    for k in names:
        cont = [t.get(k, {}).get("contentions", 0.0) for t in tables]
        wait = [t.get(k, {}).get("waittime_total_us", 0.0) for t in tables]
        rows.append({"class": k, "contentions": _spread(cont, 1),
                     "waittime_total_us": _spread(wait, 2)})
    rows.sort(key=lambda r: (r["contentions"]["mean"], r["waittime_total_us"]["mean"]), reverse=True)
    return {"classes_contended": _spread([float(sum(1 for v in t.values() if v["contentions"] > 0))
                                          for t in tables], 1),
            "top_by_contentions": rows[:LOCK_TOP]}


# writers --------------------------------------------------------------------

def _writer(path: Path, size: int, go: int, wfd: int) -> None:
    """Child process: wait for the start, then write DONTCACHE chunks
    sequentially from offset 0 (never the same range twice) until the time is
    up or the device is full; fsync; report one JSON line."""
    try:
        buf = os.urandom(CHUNK)
        fd = os.open(path, os.O_RDWR)
        os.read(go, 1)
        t0 = time.monotonic()
        deadline = t0 + SECONDS_PER_RUN
        off = 0
        while time.monotonic() < deadline and off + CHUNK <= size:
            n = os.pwritev(fd, [buf], off, RWF_DONTCACHE)
            if n != CHUNK:
                raise OSError(f"short write at offset {off}: {n} of {CHUNK} bytes")
            off += CHUNK
        capped = off + CHUNK > size
        os.fsync(fd)
        seconds = time.monotonic() - t0
        os.close(fd)
        os.write(wfd, (json.dumps({"bytes": off, "seconds": seconds, "capped": capped})
                       + "\n").encode())
        os._exit(0)
    except BaseException as e:  # noqa: BLE001
        os.write(wfd, f"ERR {path}: {e}\n".encode())
        os._exit(1)


def _run_once(n: int, controls) -> tuple[dict, dict | None]:
    """One repeat for N writers on N fresh devices; returns the figures and
    the lock_stat table (None without lock_stat)."""
    dev_mb = max(DEV_MB_MIN, min(DEV_MB_MAX, _mem_available() // 4 // n // MIB))
    made, holders = [], []
    try:
        for _ in range(n):
            nb, d = create_nullblk(2, dev_mb, 10000)
            made.append(d)
            controls.device(nb)
            # Keep each device open until its cache is measured (the last
            # close drops a block device's page cache).
            holders.append((nb, os.open(nb.path, os.O_RDONLY)))
        fresh = sum(cachestat(fd, 0, dev_mb * MIB).nr_cache for _, fd in holders)
        ncpus = sorted(os.sched_getaffinity(0))
        go_r, go_w = os.pipe()
        pipes, pids = [], []
        for i, (nb, _) in enumerate(holders):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                os.close(go_w)
                try:
                    os.sched_setaffinity(0, {ncpus[i % len(ncpus)]})
                except OSError:
                    pass
                _writer(nb.path, dev_mb * MIB, go_r, w)
            os.close(w)
            pipes.append(r)
            pids.append(pid)
        os.close(go_r)
        if LOCK_STAT.exists():
            _lock_stat_clear()
        t0 = time.monotonic()
        os.write(go_w, b"g" * n)
        os.close(go_w)
        writers, errors = [], []
        for (_, fd), r, pid in zip(holders, pipes, pids):
            with os.fdopen(r) as f:
                line = f.read().strip()
            os.waitpid(pid, 0)
            if not line or line.startswith("ERR"):
                errors.append(line or "writer died without a result")
            else:
                writers.append((fd, json.loads(line)))
        wall = time.monotonic() - t0
        table = parse_lock_stat(LOCK_STAT.read_text()) if LOCK_STAT.exists() else None
        cached = written_pages = 0
        for fd, w in writers:
            if w["bytes"]:
                cached += cachestat(fd, 0, w["bytes"]).nr_cache
            written_pages += w["bytes"] // 4096
    finally:
        for _, fd in holders:
            os.close(fd)
        for d in reversed(made):
            remove_nullblk(d)
    writers = [w for _, w in writers]
    total = sum(w["bytes"] for w in writers)
    res = {"n": n, "device_mb": dev_mb, "pages_cached_before": fresh,
           "seconds": round(wall, 3), "bytes_written": total,
           "mib_per_s": round(total / wall / MIB, 2) if wall else 0.0,
           "per_writer": [{"bytes": w["bytes"], "seconds": round(w["seconds"], 3),
                           "mib_per_s": round(w["bytes"] / w["seconds"] / MIB, 2) if w["seconds"] else 0.0,
                           "capped": w["capped"]} for w in writers],
           "pages_written": written_pages, "pages_cached_after": cached, "errors": errors}
    if table is not None:
        res["lock_stat"] = {"top_by_contentions": _top(table, "contentions"),
                            "top_by_waittime_total": _top(table, "waittime_total_us"),
                            "classes_contended": sum(1 for v in table.values() if v["contentions"] > 0)}
    return res, table


def test_scale_dontcache_writers(nullblk_factory, controls, record_property, figure):
    """N processes (each pinned to one CPU) write with DONTCACHE to N fresh
    null_blk irqmode=2 devices, N = 1..online CPUs, each N at least 3 times:
    throughput with its spread, pages left cached, and with CONFIG_LOCK_STAT
    the most contended lock classes of each run (Jens Axboe's question on
    v2's global dropbehind_lock). Benchmark only: passes when it ran and
    every write was whole; SKIPs where block devices reject DONTCACHE."""
    started = time.monotonic()
    ncpu = len(os.sched_getaffinity(0))
    out_path = results_dir() / "scale.json"
    absent = _lock_stat_absent_reason()
    report = {"kernel": os.uname().release, "cpus": ncpu,
              "preempt_rt": "PREEMPT_RT" in os.uname().version,
              "seconds_per_run": SECONDS_PER_RUN, "repeats": REPEATS,
              "device": "null_blk irqmode=2 memory_backed, fresh per run", "chunk_bytes": CHUNK,
              "ranges": "each writer writes its fresh device sequentially from 0, never a range twice",
              "lock_stat": None if absent else {"note": LOCK_STAT_NOTE, "top": LOCK_TOP,
                                                "debug_locks_before": _debug_locks()},
              "runs": [], "summary": []}
    if absent:
        report["lock_stat_reason"] = absent
    probe = nullblk_factory(irqmode=2, size_mb=16)
    fd = os.open(probe.path, os.O_RDWR)
    try:
        supported = dontcache_supported(fd)
    finally:
        os.close(fd)
    if not supported:
        report["skipped"] = "block device rejects RWF_DONTCACHE (EOPNOTSUPP)"
        out_path.write_text(json.dumps(report, indent=2) + "\n")
        pytest.skip("block devices reject RWF_DONTCACHE (EOPNOTSUPP): nothing to measure")
    tables: dict[int, list] = {n: [] for n in range(1, ncpu + 1)}
    for rep in range(REPEATS):
        for n in range(1, ncpu + 1):
            res, table = _run_once(n, controls)
            res["repeat"] = rep
            report["runs"].append(res)
            if table is not None:
                tables[n].append(table)
    for n in range(1, ncpu + 1):
        runs = [r for r in report["runs"] if r["n"] == n]
        s = {"n": n, "mib_per_s": _spread([r["mib_per_s"] for r in runs]),
             "bytes_written": _spread([float(r["bytes_written"]) for r in runs], 0),
             "cached_fraction_after": _spread([r["pages_cached_after"] / r["pages_written"]
                                               if r["pages_written"] else 0.0 for r in runs], 3),
             "capped_writers": sum(w["capped"] for r in runs for w in r["per_writer"])}
        if tables[n]:
            s["lock_stat"] = _lock_summary(tables[n])
        report["summary"].append(s)
    if report["lock_stat"] is not None:
        report["lock_stat"]["debug_locks_after"] = _debug_locks()
    report["benchmark_seconds"] = round(time.monotonic() - started, 1)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    record_property("scale_json", str(out_path))
    for s in report["summary"]:
        m = s["mib_per_s"]
        record_property(f"n{s['n']}_mib_per_s",
                        f"mean {m['mean']} stdev {m['stdev']} min {m['min']} max {m['max']}")
        figure("mib_per_s", m["mean"], at=s["n"])
        if "lock_stat" in s:
            top = s["lock_stat"]["top_by_contentions"]
            record_property(f"n{s['n']}_lock_stat_top", json.dumps(
                [(r["class"], r["contentions"]["mean"]) for r in top]))
            figure("contentions", round(sum(r["contentions"]["mean"] for r in top), 1), at=s["n"])
    record_property("lock_stat", absent or "top contended classes in scale.json")
    errors = [e for r in report["runs"] for e in r["errors"]]
    assert not errors, f"writers failed: {errors}"
