"""Trimming the cache (`orch cache gc`, and the nightly's automatic gc).

In this order:
  1. the trash an interrupted gc left is removed, and the private
     directories of builds and imports whose orch is gone;
  2. every entry not used within --max-age (its last use: usage.py) is
     removed, and ccache drops its files older than that (`ccache
     --evict-older-than`);
  3. while the cache is over --max-size: ccache is trimmed to its share
     (a quarter of the cap) by ccache itself (CCACHE_MAXSIZE=SHARE ccache
     --cleanup, or --clear for a share under 1 MiB), then entries are
     removed least recently used first.
Never removed: an entry a running orch holds (core.cache_use: the lock a
run takes before it first looks at an entry; a workspace's own lock too),
one the nightly's last nights pin (pins.py), the work in progress of a
live orch, anything that is not an entry (locks, pins, build layers,
kvm-probe.json). ccache's files are left to ccache, which runs in the build
sandbox (its directory is written by builds) with orch's own ccache.conf:
no ccache.conf in the cache is read or written.

What was removed, and what was kept and why, is the Report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import cache_use, proc, sandbox
from orchestrator.core.paths import cache_dir
from orchestrator.core.sanitize import clean
from orchestrator.kernel import build
from orchestrator.store import kinds, pins, usage
from orchestrator.store.usage import Entry

CCACHE_SHARE = 4             # ccache's share of the cap: 1/4
CCACHE_MIN = 1 << 20         # below this share ccache is cleared
CCACHE_TIMEOUT = 1800
LEFTOVER_AGE = 3600          # a dead pid's private directory, at least this old


@dataclass
class Decision:
    kind: str
    key: str
    bytes: int
    last_used: float
    why: str

    @property
    def name(self) -> str:
        return f"{self.kind}/{clean(self.key, 100)}"


@dataclass
class Report:
    cache: Path
    dry_run: bool
    max_size: int | None
    max_age: float | None
    keep_nights: int
    before: int = 0
    after: int = 0
    removed: list[Decision] = field(default_factory=list)
    kept: list[Decision] = field(default_factory=list)      # held or pinned
    failed: list[Decision] = field(default_factory=list)    # could not be removed
    newer: int = 0           # entries kept because they were used more recently
    newer_bytes: int = 0
    ccache: list[str] = field(default_factory=list)
    pins_dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return max(0, self.before - self.after)


def run(cache: Path | None = None, *, max_size: int | None, max_age: float | None,
        keep_nights: int, dry_run: bool = False, now: float | None = None,
        scanned: usage.Usage | None = None) -> Report:
    """`scanned`: the cache's usage its caller has just taken (the end of a
    night measures the cache to decide whether to gc at all): not walked
    twice."""
    cache = cache or cache_dir()
    now = time.time() if now is None else now
    rep = Report(cache, dry_run, max_size, max_age, keep_nights)
    if not dry_run:
        rep.notes += [f"trash not removed: {e}" for e in cache_use.empty_trash(cache)]
    u = scanned or usage.scan(cache)
    rep.before = rep.after = u.total
    if not u.exists:
        return rep
    kept = pins.load(keep_nights, cache, dry_run)
    rep.pins_dropped = kept.dropped
    todo: list[Entry] = []
    for e in u.entries():
        if e.private is not None:
            if proc.gone(e.private.pid) and now - e.last_used > LEFTOVER_AGE:
                _remove(rep, e, f"left by orch process {e.private.pid}, which is gone",
                        kept, respect_pins=False)
            continue
        todo.append(e)
    # 2. by age
    if max_age is not None:
        young = []
        for e in todo:
            if now - e.last_used > max_age:
                _remove(rep, e, f"not used for {cache_use.human_age(now - e.last_used)} "
                        f"(max age {cache_use.human_age(max_age)})", kept)
            else:
                young.append(e)
        todo = young
        _ccache(rep, u, ["--evict-older-than", f"{int(max_age)}s"],
                f"files older than {cache_use.human_age(max_age)}")
    # 3. by size, least recently used first
    if max_size is not None and rep.after > max_size:
        share = max_size // CCACHE_SHARE
        cc = u.kinds[kinds.CCACHE].bytes
        if cc > share:
            how = (["--clear"] if share < CCACHE_MIN
                   else ["--cleanup"])
            _ccache(rep, u, how, f"to its share {cache_use.human(share)} of the cap",
                    maxsize=share)
        todo.sort(key=lambda e: e.last_used)
        rest = []
        for i, e in enumerate(todo):
            if rep.after <= max_size:
                rest = todo[i:]
                break
            _remove(rep, e, f"least recently used ({cache_use.human_age(now - e.last_used)} "
                    f"ago), the cache over {cache_use.human(max_size)}", kept)
        todo = rest
    done = {(d.kind, d.key) for d in (*rep.removed, *rep.kept, *rep.failed)}
    left = [e for e in todo if (e.kind, e.key) not in done]
    rep.newer, rep.newer_bytes = len(left), sum(e.bytes for e in left)
    return rep


def _remove(rep: Report, e: Entry, why: str, kept: pins.Kept, respect_pins: bool = True) -> None:
    pin = kept.keys.get((e.kind, e.key)) if respect_pins else None
    if pin is not None:
        rep.kept.append(Decision(e.kind, e.key, e.bytes, e.last_used,
                                 f"pinned by the nightly at {clean(pin[0], 200)} "
                                 f"(night {pin[1]})"))
        return
    inner = e.path / kinds.INNER[e.kind] if e.kind in kinds.INNER else None
    try:
        if rep.dry_run:
            ok = cache_use.free(e.kind, e.key, e.path, inner=inner)
        else:
            ok = cache_use.evict(e.kind, e.key, e.path, inner=inner)
    except OSError as err:
        rep.failed.append(Decision(e.kind, e.key, e.bytes, e.last_used,
                                   f"not removed: {err.strerror or err}"))
        return
    if not ok:
        rep.kept.append(Decision(e.kind, e.key, e.bytes, e.last_used,
                                 "held by a running orch"))
        return
    rep.removed.append(Decision(e.kind, e.key, e.bytes, e.last_used, why))
    rep.after -= e.bytes


def _ccache(rep: Report, u: usage.Usage, args: list[str], what: str,
            maxsize: int | None = None) -> None:
    """ccache's own trimming of its directory, in the build sandbox."""
    ku = u.kinds[kinds.CCACHE]
    if ku.bytes == 0 and ku.files == 0:
        return
    if rep.dry_run:
        rep.ccache.append(f"ccache: would trim {what} ({cache_use.human(ku.bytes)} now)")
        return
    ccdir = rep.cache / kinds.CCACHE
    env = {"CCACHE_DIR": str(ccdir), "CCACHE_CONFIGPATH": str(build.CCACHE_CONF),
           "CCACHE_TEMPDIR": str(ccdir / "tmp"), "LC_ALL": "C"}
    if maxsize is not None:
        env["CCACHE_MAXSIZE"] = f"{max(1, maxsize // 1024)}Ki"
    argv = ["ccache", *args]
    try:
        ok, _why = sandbox.probe()
        if ok:
            r = sandbox.run(argv, sandbox.View(readable=(build.CCACHE_CONF,),
                                               writable=(ccdir,), env=env),
                            ccdir, timeout=CCACHE_TIMEOUT)
        else:
            r = proc.run(argv, env=env, cwd=ccdir, timeout=CCACHE_TIMEOUT)
    except OSError as e:
        rep.ccache.append(f"ccache: not trimmed: {e.strerror or e}")
        return
    if not r.ok:
        rep.ccache.append(f"ccache: not trimmed ({' '.join(args)}): "
                          f"{clean(r.output.strip()[-200:]) or f'exit {r.returncode}'}")
        return
    after, files = usage.size_of(ccdir)
    rep.after -= max(0, ku.bytes - after)
    rep.ccache.append(f"ccache: trimmed {what} by ccache ({' '.join(args)}): "
                      f"{cache_use.human(ku.bytes)} -> {cache_use.human(after)}")
    ku.bytes, ku.files = after, files


# -- what `orch cache gc` prints ---------------------------------------------------------


def text(rep: Report) -> str:
    would = "would remove" if rep.dry_run else "removed"
    lines = []
    for d in rep.removed:
        lines.append(f"{would} {d.name} {cache_use.human(d.bytes)}: {d.why}")
    for d in rep.failed:
        lines.append(f"failed  {d.name} {cache_use.human(d.bytes)}: {d.why}")
    for d in rep.kept:
        lines.append(f"kept    {d.name} {cache_use.human(d.bytes)}: {d.why}")
    if rep.newer:
        why = []
        if rep.max_age is not None:
            why.append(f"used within {cache_use.human_age(rep.max_age)}")
        if rep.max_size is not None:
            why.append("used more recently than what was removed, the cache under its cap"
                       if rep.after <= rep.max_size else "used more recently")
        lines.append(f"kept    {rep.newer} more entries ({cache_use.human(rep.newer_bytes)}): "
                     f"newer: {', '.join(why) or 'no cap or age given'}")
    lines += rep.ccache + [f"dropped {p}" if not rep.dry_run else f"would drop {p}"
                           for p in rep.pins_dropped]
    lines += [f"note: {n}" for n in rep.notes]
    cap = []
    if rep.max_size is not None:
        cap.append(f"cap {cache_use.human(rep.max_size)}")
    if rep.max_age is not None:
        cap.append(f"max age {cache_use.human_age(rep.max_age)}")
    if rep.dry_run:
        head = f"would free {cache_use.human(rep.freed)}"
    else:
        head = f"freed {cache_use.human(rep.freed)}"
    tail = f"{head}: the cache {rep.cache} is {cache_use.human(rep.after)}" + (
        f" ({', '.join(cap)})" if cap else "")
    if rep.max_size is not None and rep.after > rep.max_size:
        tail += "; still over the cap: what is left is held, pinned or not an entry"
    lines.append(tail)
    return "\n".join(lines)


def as_json(rep: Report) -> dict:
    def rows(ds: list[Decision]) -> list[dict]:
        return [{"kind": d.kind, "key": clean(d.key, 300), "bytes": d.bytes,
                 "last_used": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d.last_used)),
                 "why": d.why} for d in ds]
    return {"cache": str(rep.cache), "dry_run": rep.dry_run, "max_size": rep.max_size,
            "max_age": rep.max_age, "keep_nights": rep.keep_nights, "before": rep.before,
            "after": rep.after, "freed": rep.freed, "removed": rows(rep.removed),
            "kept": rows(rep.kept), "failed": rows(rep.failed),
            "newer": {"entries": rep.newer, "bytes": rep.newer_bytes},
            "ccache": rep.ccache, "pins_dropped": rep.pins_dropped, "notes": rep.notes}
