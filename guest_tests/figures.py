"""Figures: the numbers a test reports for the nightly's pictures.

A figure is declared once, in DECLARED (its title, its unit, which way is
better, and for a sweep what x is), and a test records it with the `figure`
fixture (conftest.py):

    figure("evicted", (NPAGES - left) / NPAGES)   # one value: drawn over the nights
    figure("mib_per_s", mean, at=n)               # a point of a sweep: drawn against x

Each call is a JUnit property, `figure.<name>` or `figure.<name>@<x>`, and a
test's first call of a name adds its declaration as properties
`figure.<name>.<title|unit|better|x|min|max>`. orch draws whatever is
declared so (orchestrator/core/figures.py reads it; README.md has the
rules). orch also reads DECLARED itself, as a literal and never run, to draw
nights recorded before figures carried their declarations: keep it a plain
dict literal.
"""

from __future__ import annotations

import math

DECLARED = {
    "evicted": {"title": "DONTCACHE pages evicted", "unit": "fraction evicted",
                "better": "higher", "min": 0, "max": 1},
    "mib_per_s": {"title": "throughput vs writers", "unit": "MiB/s, all writers",
                  "better": "higher", "x": "writers (N devices)"},
    "contentions": {"title": "lock contentions vs writers",
                    "unit": "lock contentions (lock_stat)", "better": "lower",
                    "x": "writers (N devices)"},
}
PREFIX = "figure."
PARTS = ("title", "unit", "better", "x", "min", "max")


def _number(v: float) -> str:
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"a figure is a finite number, not {v!r}")
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


class Recorder:
    """Records one test's figures into its JUnit properties."""

    def __init__(self, user_properties: list, declared: dict | None = None):
        self._props = user_properties
        self._declared = DECLARED if declared is None else declared
        self._done: set[str] = set()

    def __call__(self, name: str, value: float, at: float | None = None) -> None:
        decl = self._declared[name]          # KeyError: declare it in DECLARED first
        if ("x" in decl) != (at is not None):
            raise ValueError(f"figure {name}: a sweep's point (declared with x) takes at=, "
                             "and only a sweep's")
        where = "" if at is None else f"@{_number(at)}"
        self._props.append((f"{PREFIX}{name}{where}", _number(value)))
        if name not in self._done:
            self._done.add(name)
            self._props += [(f"{PREFIX}{name}.{part}", str(decl[part]))
                            for part in PARTS if part in decl]
