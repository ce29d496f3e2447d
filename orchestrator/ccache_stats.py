"""ccache's hit rate for one build, from its per-build stats log.

Global counters (ccache -s) mix every build on the machine; a stats log
written for this build only (CCACHE_STATSLOG) counts exactly its compiles.
"""

from __future__ import annotations

from pathlib import Path


def read(path: Path) -> dict:
    hits = misses = other = 0
    entry: set[str] = set()

    def close() -> None:
        nonlocal hits, misses, other
        if not entry:
            return
        if entry & {"direct_cache_hit", "preprocessed_cache_hit"}:
            hits += 1
        elif "cache_miss" in entry:
            misses += 1
        else:
            other += 1

    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {"hits": 0, "misses": 0, "uncacheable": 0, "hit_rate": None}
    for line in lines:
        if line.startswith("# "):
            close()
            entry = set()
        elif line.strip():
            entry.add(line.strip())
    close()
    total = hits + misses
    return {"hits": hits, "misses": misses, "uncacheable": other,
            "hit_rate": round(hits / total, 3) if total else None}
