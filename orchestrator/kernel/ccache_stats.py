"""ccache's hit rate for one build, from its per-build stats log.

Global counters (ccache -s) mix every build on the machine; a stats log
written for this build only (CCACHE_STATSLOG) counts exactly its compiles.
"""

from __future__ import annotations

from pathlib import Path


def read(path: Path) -> dict:
    """Hits and misses of this build; with a shared (remote) ccache also how
    many compiles it answered (a hit whose result came from it: remote_hits,
    remote_hit_rate over all cacheable compiles), how many it was asked
    for and did not have, and its errors (a write a read-only user may not
    make, or a server down)."""
    hits = misses = other = remote_hits = remote_misses = remote_errors = 0
    entry: set[str] = set()

    def close() -> None:
        nonlocal hits, misses, other, remote_hits, remote_misses, remote_errors
        if not entry:
            return
        hit = bool(entry & {"direct_cache_hit", "preprocessed_cache_hit"})
        remote_hits += hit and "remote_storage_hit" in entry
        # ccache counts a read-only store's miss as a read miss only.
        remote_misses += not hit and bool(entry & {"remote_storage_miss",
                                                   "remote_storage_read_miss"})
        remote_errors += "remote_storage_error" in entry
        if hit:
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
    out = {"hits": hits, "misses": misses, "uncacheable": other,
           "hit_rate": round(hits / total, 3) if total else None}
    if remote_hits or remote_misses or remote_errors:
        out.update(remote_hits=remote_hits, remote_misses=remote_misses,
                   remote_errors=remote_errors,
                   remote_hit_rate=round(remote_hits / total, 3) if total else None)
    return out
