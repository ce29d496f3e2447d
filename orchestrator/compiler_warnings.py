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

from .junit import clean

SNAPSHOT = ".orch-warnings.json"
_STEP = re.compile(r"^\s{2}([A-Z][A-Z0-9_]{1,11})\s+(\S+)\s*$")   # "  CC      mm/filemap.o"
# gcc quotes with ‘’ in a UTF-8 locale and ccache replays what it stored:
# compare messages with plain quotes whatever locale produced them.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_WARN = re.compile(r"^(?P<file>[^\s:]+):(?:(?P<line>\d+):(?:\d+:)?)? warning: (?P<msg>.+)$")


def _normal_path(path: str, src: Path, builddir: Path) -> str:
    p = Path(path)
    try:
        full = (p if p.is_absolute() else builddir / p).resolve()
        return str(full.relative_to(src.resolve()))
    except (ValueError, OSError):
        return path.lstrip("./")


def parse_log(text: str, src: Path, builddir: Path) -> dict[str, list[str]]:
    """unit -> ['file: message', ...] for every unit this log built.

    Needs make's --output-sync: a unit's step line and its compiler output
    then come out together.
    """
    units: dict[str, list[str]] = {}
    unit = None
    for line in text.splitlines():
        m = _STEP.match(line)
        if m:
            unit = m.group(2)
            units.setdefault(unit, [])
            continue
        w = _WARN.match(line)
        if w and unit is not None:
            msg = w.group("msg").translate(_QUOTES)
            item = clean(f"{_normal_path(w.group('file'), src, builddir)}: {msg}", 300)
            units[unit].append(item)
    return units


def load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) and "units" in data else None
    except (OSError, ValueError):
        return None


def update(builddir: Path, built: dict[str, list[str]], full_build: bool) -> dict:
    """Fold this build's units into the build directory's snapshot."""
    old = load(builddir / SNAPSHOT)
    snap = {"complete": full_build or bool(old and old.get("complete")),
            "units": dict(old["units"]) if old else {}}
    snap["units"].update(built)
    (builddir / SNAPSHOT).write_text(json.dumps(snap))
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
