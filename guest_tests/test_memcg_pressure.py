"""DONTCACHE writes under a small memory cgroup: no OOM, little file memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dontcache_io import dontcache_supported

CG_ROOT = Path("/sys/fs/cgroup")
LIMIT = 32 << 20
TOTAL = 4 * LIMIT        # bytes written per run: four times the limit
CHUNK = 1 << 20

WRITER = r"""
import json, os, sys
dev, total, chunk, flags, cg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def stat_file():
    with open(cg + "/memory.stat") as f:
        for line in f:
            k, v = line.split()
            if k == "file":
                return int(v)
    return -1
buf = os.urandom(chunk)
fd = os.open(dev, os.O_RDWR)
peak = 0
for off in range(0, total, chunk):
    os.pwritev(fd, [buf], off, flags)
    if (off // chunk) % 4 == 3:
        peak = max(peak, stat_file())
os.fsync(fd)
after_fsync = stat_file()
import time
time.sleep(1.0)                 # deferred dropbehind work, if any
end = stat_file()
os.close(fd)
print(json.dumps({"peak_file": max(peak, after_fsync, end), "file_after_fsync": after_fsync,
                  "end_file": end}))
"""


def _cgroup2() -> Path:
    if not (CG_ROOT / "cgroup.controllers").exists():
        CG_ROOT.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["mount", "-t", "cgroup2", "none", str(CG_ROOT)],
                          capture_output=True).returncode:
            pytest.skip("cannot mount cgroup2 (CONFIG_CGROUPS off?)")
    if "memory" not in (CG_ROOT / "cgroup.controllers").read_text().split():
        pytest.skip("no memory controller in cgroup2 (CONFIG_MEMCG off)")
    ctl = CG_ROOT / "cgroup.subtree_control"
    if "memory" not in ctl.read_text().split():
        ctl.write_text("+memory\n")
    return CG_ROOT


def _events(cg: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (l.split() for l in (cg / "memory.events").read_text().splitlines())}


def _run_in_cgroup(name: str, dev: Path, flags: int) -> dict:
    root = _cgroup2()
    cg = root / f"orch-{name}-{os.getpid()}"
    cg.mkdir()
    try:
        (cg / "memory.max").write_text(f"{LIMIT}\n")
        if (cg / "memory.swap.max").exists():
            (cg / "memory.swap.max").write_text("0\n")
        procs = str(cg / "cgroup.procs")

        def enter():
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-c", WRITER, str(dev), str(TOTAL), str(CHUNK),
                            str(flags), str(cg)],
                           preexec_fn=enter, capture_output=True, text=True, timeout=300)
        seconds = time.monotonic() - t0
        ev = _events(cg)
        peak_path = cg / "memory.peak"
        peak_all = int(peak_path.read_text()) if peak_path.exists() else -1
        out = {"rc": r.returncode, "seconds": round(seconds, 2), "oom": ev.get("oom", 0),
               "oom_kill": ev.get("oom_kill", 0), "max_events": ev.get("max", 0),
               "memory_peak": peak_all,
               "stderr": r.stderr.strip()[-400:]}
        if r.returncode == 0 and r.stdout.strip():
            out.update(json.loads(r.stdout.strip().splitlines()[-1]))
        return out
    finally:
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)


@pytest.mark.parametrize("irqmode", [2, 0], ids=["irq", "task"])
def test_dontcache_under_memcg_limit(irqmode, nullblk_factory, controls, record_property):
    """A writer confined to a 32 MiB memory cgroup writes 128 MiB to a block
    device (null_blk; irqmode=2: completion in hard IRQ, the case the series
    defers; irqmode=0: completion in the submitting task, the control). With
    RWF_DONTCACHE it must not be OOM-killed and its cgroup must end with
    little page cache (at most a quarter of the limit: folios leave as
    writeback completes). Control: the same writer with normal buffered
    writes must end above that threshold, or the setup did not reproduce the
    pressure and the test fails with ControlError instead of passing."""
    controls.expect("pressure")
    threshold = LIMIT // 4
    dev = nullblk_factory(irqmode=irqmode, size_mb=(TOTAL >> 20) + 16)
    fd = os.open(dev.path, os.O_RDWR)
    try:
        if not dontcache_supported(fd):
            pytest.fail("block device rejects RWF_DONTCACHE (EOPNOTSUPP)")
        normal = _run_in_cgroup("normal", dev.path, 0)
        record_property("normal_writes", json.dumps(normal))
        record_property("limit_bytes", str(LIMIT))
        record_property("threshold_bytes", str(threshold))
        end = normal.get("end_file", -1)
        controls.check("pressure", normal["rc"] == 0 and end > threshold,
                       f"normal writer rc={normal['rc']} ended with {end >> 10} KiB file pages "
                       f"(threshold {threshold >> 10} KiB, limit {LIMIT >> 10} KiB)",
                       "the pressure (normal writes should end above the threshold)")
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)   # start the second run clean
        dc = _run_in_cgroup("dontcache", dev.path, 0x80)
    finally:
        os.close(fd)
    record_property("dontcache_writes", json.dumps(dc))
    assert dc["rc"] == 0, f"DONTCACHE writer failed: {dc}"
    assert dc["oom_kill"] == 0, f"DONTCACHE writer's cgroup saw OOM kills: {dc}"
    assert dc["end_file"] <= threshold, (
        f"DONTCACHE writer left {dc['end_file'] >> 10} KiB of file pages in its "
        f"{LIMIT >> 20} MiB cgroup (normal writes: {end >> 10} KiB)")
