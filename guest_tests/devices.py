"""Block devices for the in-guest suite: null_blk through configfs and the
host's virtio-blk scratch disk, with what each one reads back about how it
completes I/O (the completion context decides the result: see
../../shared/notes/field-notes.md)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CONFIGFS = Path("/sys/kernel/config")
SCRATCH_SERIAL = "orch-scratch"

# Where null_blk ends a request, per irqmode (drivers/block/null_blk).
IRQMODE_CONTEXT = {
    0: "none: completes inline in the submitting task",
    1: "softirq",
    2: "timer: completes in hard IRQ (hrtimer)",
}


def handlers_threaded() -> str:
    """Why IRQ handlers and hrtimers might run in task context here (then no
    completion is in IRQ and the case under test never happens), or ""."""
    why = []
    try:
        if "threadirqs" in Path("/proc/cmdline").read_text().split():
            why.append("threadirqs on the command line")
    except OSError:
        pass
    if "PREEMPT_RT" in os.uname().version:
        why.append("PREEMPT_RT kernel")
    return ", ".join(why)


@dataclass
class NullBlk:
    name: str
    path: Path
    irqmode: int
    size_mb: int
    completion_nsec: int
    readback: dict[str, str] = field(default_factory=dict)

    @property
    def completion(self) -> str:
        """How this device completes, from what configfs read back."""
        mode = int(self.readback.get("irqmode", -1))
        text = (f"null_blk irqmode={mode} ({IRQMODE_CONTEXT.get(mode, 'unknown')}), "
                f"completion_nsec={self.readback.get('completion_nsec')}")
        threaded = handlers_threaded()
        return text + (f"; {threaded}" if threaded else "")


def ensure_configfs() -> None:
    if not (CONFIGFS / "nullb").exists():
        if not os.path.ismount(CONFIGFS):
            os.system(f"mount -t configfs none {CONFIGFS} 2>/dev/null")
    if not (CONFIGFS / "nullb").exists():
        pytest.skip("null_blk configfs is not available in this kernel")


NULLBLK_SETTINGS = ("size", "blocksize", "memory_backed", "irqmode", "completion_nsec")


def create_nullblk(irqmode: int, size_mb: int, completion_nsec: int) -> tuple[NullBlk, Path]:
    """Configure, power and find a memory-backed null_blk; the settings are
    read back from configfs after power-on. Returns the device and its
    configfs directory (for remove_nullblk)."""
    ensure_configfs()
    idx = len(list((CONFIGFS / "nullb").glob("orch*")))
    name = f"orch{os.getpid() % 1000}x{idx}"
    d = CONFIGFS / "nullb" / name
    d.mkdir()
    asked = {"size": size_mb, "blocksize": 4096, "memory_backed": 1, "irqmode": irqmode,
             "completion_nsec": completion_nsec}
    try:
        for attr in NULLBLK_SETTINGS:
            (d / attr).write_text(f"{asked[attr]}\n")
        (d / "power").write_text("1\n")
        readback = {a: (d / a).read_text().strip() for a in (*NULLBLK_SETTINGS, "power")}
        index = (d / "index").read_text().strip()
        # Newer null_blk names configfs disks after the item, older ones nullbN.
        candidates = [Path(f"/dev/{name}"), Path(f"/dev/nullb{index}")]
        deadline = time.monotonic() + 5
        while not any(c.exists() for c in candidates):
            if time.monotonic() > deadline:
                pytest.fail(f"no device node for null_blk {name} ({candidates})")
            time.sleep(0.05)
    except BaseException:
        remove_nullblk(d)
        raise
    dev = next(c for c in candidates if c.exists())
    return NullBlk(name, dev, irqmode, size_mb, completion_nsec, readback), d


def nullblk_mismatch(nb: NullBlk) -> list[str]:
    """The settings that did not read back as asked (power must read 1)."""
    asked = {"size": nb.size_mb, "blocksize": 4096, "memory_backed": 1,
             "irqmode": nb.irqmode, "completion_nsec": nb.completion_nsec, "power": 1}
    return [f"{k}={nb.readback.get(k)} (asked {v})" for k, v in asked.items()
            if nb.readback.get(k) != str(v)]


def remove_nullblk(d: Path) -> None:
    try:
        (d / "power").write_text("0\n")
    except OSError:
        pass
    try:
        d.rmdir()
    except OSError:
        pass


@dataclass
class ScratchDisk:
    path: Path
    virtio: str          # the virtio device behind it (virtioN), "" if unknown

    def __fspath__(self) -> str:
        return str(self.path)

    def interrupts(self) -> int | None:
        """Interrupts taken so far by this disk's virtqueues (/proc/interrupts
        lines named virtioN-*, or virtioN when shared), None if none is listed."""
        if not self.virtio:
            return None
        total, seen = 0, False
        for line in Path("/proc/interrupts").read_text().splitlines()[1:]:
            parts = line.split()
            if not parts or not any(p == self.virtio or p.startswith(self.virtio + "-")
                                    for p in parts[-2:]):
                continue
            seen = True
            total += sum(int(p) for p in parts[1:] if p.isdigit())
        return total if seen else None


def find_scratch_disk() -> ScratchDisk | None:
    for serial in sorted(Path("/sys/block").glob("vd*/serial")):
        try:
            if serial.read_text().strip() != SCRATCH_SERIAL:
                continue
        except OSError:
            continue
        blk = serial.parent
        virtio = Path(os.path.realpath(blk / "device")).name
        return ScratchDisk(Path("/dev") / blk.name, virtio if virtio.startswith("virtio") else "")
    return None
