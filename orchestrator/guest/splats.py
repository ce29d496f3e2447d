"""Kernel splats in a console log: panics, oopses, BUGs, WARNINGs, lockdep,
KASAN, sleeping-in-atomic, hung tasks, RCU stalls, soft lockups and
workqueue hogs. Each becomes a Splat with a fingerprint from its title and
top stack frames, so the same splat on baseline and patched matches."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from orchestrator.core.sanitize import clean
from orchestrator.guest.markers import is_mark

# Console lines carry a "[   12.345678] " timestamp (PRINTK_TIME).
_TS = re.compile(r"^\[\s*\d+\.\d+\]\s?")
_STAMP = re.compile(r"\[\s*\d+\.\d+\]")

KINDS: list[tuple[str, re.Pattern]] = [
    ("panic", re.compile(r"Kernel panic - not syncing: (.*)")),
    ("oops", re.compile(r"Oops: (.*)")),
    ("bug", re.compile(r"(BUG: .*|kernel BUG at .*)")),
    ("warning", re.compile(r"WARNING: (?!.*(possible circular|inconsistent lock|suspicious RCU))(.*)")),
    ("lockdep", re.compile(r"WARNING: (possible circular locking dependency detected"
                           r"|inconsistent lock state|possible recursive locking detected"
                           r"|suspicious RCU usage)")),
    ("kasan", re.compile(r"(BUG: KASAN: .*)")),
    ("sleep-in-atomic", re.compile(r"(BUG: sleeping function called from invalid context.*)")),
    ("hung-task", re.compile(r"(INFO: task .* blocked for more than \d+ seconds)")),
    ("rcu-stall", re.compile(r"(rcu: INFO: .*detected stalls? on CPUs?.*|INFO: rcu_\w+ detected stalls.*)")),
    ("soft-lockup", re.compile(r"(watchdog: BUG: soft lockup.*)")),
    ("wq-hog", re.compile(r"(workqueue: .* hogged CPU for .*)")),
]
# Order matters: the more specific kinds win over the generic BUG/WARNING.
_PRIORITY = ["kasan", "sleep-in-atomic", "soft-lockup", "lockdep", "panic", "oops", "bug",
             "hung-task", "rcu-stall", "wq-hog", "warning"]
_FRAME = re.compile(r"^\s*(?:\? )?([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+")
MAX_SPLATS = 50


@dataclass
class Splat:
    kind: str
    title: str
    frames: list[str] = field(default_factory=list)
    line: int = 0

    @property
    def fingerprint(self) -> str:
        # Addresses, pids and CPU numbers differ between boots: keep words.
        title = re.sub(r"0x[0-9a-f]+|\b\d+\b", "N", self.title)
        key = "|".join([self.kind, title, *self.frames[:5]])
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    def as_dict(self) -> dict:
        return {"kind": self.kind, "title": self.title, "frames": self.frames,
                "line": self.line, "fingerprint": self.fingerprint}


def _classify(text: str) -> tuple[str, str] | None:
    found = {}
    for kind, pat in KINDS:
        m = pat.search(text)
        if m:
            found[kind] = m.group(0)
    for kind in _PRIORITY:
        if kind in found:
            return kind, found[kind]
    return None


def scan(console: str) -> list[Splat]:
    # The guest plugin's own marks are orch's, not the kernel's: a skip
    # reason that quotes "WARNING:" is not a splat.
    raw = console.splitlines()
    # In a console whose kernel lines carry printk's timestamp, a line
    # without one is not the kernel's: virtme-ng's own "WARNING: stdin/stdout/
    # stderr not accessible ..." (host side) or a guest program's output is
    # no splat. Anywhere in the line: a kernel line may follow a program's
    # unfinished one on the serial console.
    timed = any(_TS.match(l) for l in raw)
    lines = ["" if is_mark(l) or (timed and not _STAMP.search(l)) else _TS.sub("", l)
             for l in raw]
    splats: list[Splat] = []
    i = 0
    while i < len(lines) and len(splats) < MAX_SPLATS:
        hit = _classify(lines[i])
        if not hit:
            i += 1
            continue
        kind, title = hit
        s = Splat(kind, clean(title.strip(), 200), [], i + 1)
        # Frames of the call trace that follows, up to the end marker.
        j = i + 1
        while j < len(lines) and j < i + 80:
            if lines[j].startswith("---[ end trace") or _classify(lines[j]):
                break
            m = _FRAME.match(lines[j])
            if m and len(s.frames) < 8:
                s.frames.append(m.group(1))
            j += 1
        splats.append(s)
        i = j if j > i else i + 1
    return splats
