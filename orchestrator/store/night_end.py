"""The end of a nightly, for the cache: the night's pin (pins.py), then an
automatic gc when the cache is over its cap (gc.py), after the night's
reports are written. Nothing here may change the night's exit status: a
failure is a warning line."""

from __future__ import annotations

from pathlib import Path

from orchestrator.core import cache_use
from orchestrator.core.paths import cache_dir
from orchestrator.store import gc, pins, usage


def after_night(out: Path, night: str, started: float, *, keep_nights: int,
                max_size: int | None, max_age: float | None,
                cache: Path | None = None) -> list[str]:
    """Pin the last `keep_nights` nights of `out` (with what this process
    used since `started`), and gc the cache when it is over `max_size`.
    The lines to print (stderr)."""
    cache = cache or cache_dir()
    lines = []
    try:
        pins.write(out, night, keep_nights, cache_use.used_since(started, cache), cache)
    except Exception as e:    # no pin: gc may take tonight's kernels, the night stands
        lines.append(f"orch: warning: the nightly's pin in {cache} was not written: "
                     f"{type(e).__name__}: {e}")
    if max_size is None:
        return lines
    try:
        u = usage.scan(cache)
        size = u.total
        if size <= max_size:
            return lines
        # The night is done: what it used is pinned (or may go), no longer held.
        cache_use.release_all(cache)
        rep = gc.run(cache, max_size=max_size, max_age=max_age, keep_nights=keep_nights,
                     scanned=u)
        lines.append(f"orch: cache over its cap ({cache_use.human(size)} > "
                     f"{cache_use.human(max_size)}): gc removed {len(rep.removed)} entries; "
                     + gc.text(rep).splitlines()[-1])
        if rep.failed:
            lines.append(f"orch: warning: gc could not remove {rep.failed[0].name}: "
                         f"{rep.failed[0].why}" + (f" (and {len(rep.failed) - 1} more)"
                                                  if len(rep.failed) > 1 else ""))
    except Exception as e:
        lines.append(f"orch: warning: the cache's gc after the night failed: "
                     f"{type(e).__name__}: {e}")
    return lines
