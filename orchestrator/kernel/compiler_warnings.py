"""Compiler warnings of a build, per compilation unit, and what a series adds.

An incremental build only compiles what changed, so its log alone cannot
say which warnings the tree has. Each build directory keeps a snapshot
(unit -> warnings); a build replaces the entries of the units it compiled,
so the snapshot follows the source state. The diff compares snapshots with
line numbers dropped (a patch moves lines; that is not a new warning).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from orchestrator.core.sanitize import clean

_STEP = re.compile(r"^\s{2}([A-Z][A-Z0-9_]{1,11})\s+(\S+)\s*$")   # "  CC      mm/filemap.o"
# gcc quotes with ‘’ in a UTF-8 locale and ccache replays what it stored:
# compare messages with plain quotes whatever locale produced them.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_WARN = re.compile(r"^(?P<file>[^\s:]+):(?:(?P<line>\d+):(?:\d+:)?)? warning: (?P<msg>.+)$")


# A source file in another machine's (or cache's) worktree: ccache replays
# the warnings a compiler printed on the runner that filled it, with that
# runner's paths, so a CI series job pulling the baseline job's ccache saw
# the baseline's own warning as added (and its own as removed).
_WORKTREE = re.compile(r"(?:^|/)work/[^/]+/src/(?P<rel>.+)$")


def _normal_path(path: str, src: Path, builddir: Path) -> str:
    p = Path(path)
    try:
        full = (p if p.is_absolute() else builddir / p).resolve()
        return str(full.relative_to(src.resolve()))
    except (ValueError, OSError):
        m = _WORKTREE.search(path)
        return m.group("rel") if m else path.lstrip("./")


_CHAIN = re.compile(r"^(?:In file included from|\s+from) (?P<file>[^\s:]+):\d+[:,]")
_CONTEXT = re.compile(r"^[^\s:]+: (?:In (?:function|member function|static function)|At top level)")


def _unit_of(source: str) -> str:
    stem, dot, ext = source.rpartition(".")
    return f"{stem}.o" if dot and ext in ("c", "S") else source


def parse_log(text: str, src: Path, builddir: Path) -> dict[str, list[str]]:
    """unit -> ['file: message', ...] for every unit this log built.

    Parallel make interleaves compilers' output, so a warning is not
    attributed to the last step line but to the compilation unit gcc names
    itself: the file of the warning, or for a header the .c file at the end
    of its "In file included from" chain.
    """
    units: dict[str, list[str]] = {}
    main: str | None = None     # the .c file of the include chain being read
    for line in text.splitlines():
        m = _STEP.match(line)
        if m:
            units.setdefault(m.group(2), [])
            main = None
            continue
        c = _CHAIN.match(line)
        if c:
            main = _normal_path(c.group("file"), src, builddir)
            continue
        if _CONTEXT.match(line):
            continue
        w = _WARN.match(line)
        if w:
            where = _normal_path(w.group("file"), src, builddir)
            unit = _unit_of(main if main and main.endswith((".c", ".S")) else where)
            msg = w.group("msg").translate(_QUOTES)
            units.setdefault(unit, []).append(clean(f"{where}: {msg}", 300))
        main = None
    return units


def load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) and "units" in data else None
    except (OSError, ValueError):
        return None


def update(snapshot: Path, built: dict[str, list[str]], full_build: bool) -> dict:
    """Fold this build's units into the build directory's snapshot (kept in
    orch's notes on it, buildtree.BuildDir.meta, outside the build's view)."""
    old = load(snapshot)
    snap = {"complete": full_build or bool(old and old.get("complete")),
            "units": dict(old["units"]) if old else {}}
    snap["units"].update(built)
    snapshot.write_text(json.dumps(snap))
    return snap


def diff(baseline: dict | None, patched: dict | None) -> dict:
    """Warnings the patched tree has and the baseline has not, and the reverse."""
    if baseline is None or patched is None:
        return {"status": "unknown", "reason": "no warning record for "
                + ("the baseline" if baseline is None else "the patched") + " kernel "
                "(cached by an older orch)", "added": [], "removed": []}
    # A unit either record lacks while that record is partial is not compared:
    # its warnings there are not known.
    bu, pu = baseline["units"].keys(), patched["units"].keys()
    units = ((bu | pu) if baseline.get("complete") and patched.get("complete") else
             (bu & pu) | (pu - bu if baseline.get("complete") else set())
             | (bu - pu if patched.get("complete") else set()))
    b = Counter(w.translate(_QUOTES) for u in units for w in baseline["units"].get(u, []))
    p = Counter(w.translate(_QUOTES) for u in units for w in patched["units"].get(u, []))
    complete = bool(baseline.get("complete") and patched.get("complete"))
    return {"status": "compared" if complete else "compared-partial",
            "added": sorted((p - b).elements()), "removed": sorted((b - p).elements())}
