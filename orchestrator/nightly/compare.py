"""What changed since the last night with a result: the headline of every
nightly report, and what decides the nightly's exit status.

Pure functions of tonight's cell, the cell of the last night that had a
result for the same series (by change-id), tree and config, and the past
values of its figures. `regression` marks what makes the night exit 1: a
test that passed and now fails, a new splat, a series that no longer applies
or no longer builds, and a new series or revision that fails. Figures are
advisory (timings under TCG say little): they are reported when they leave
their spread over past nights, never a failure.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.core.errors import Exit
from orchestrator.core.models import Status
from orchestrator.nightly.night import Cell, CellStatus, Change, TreeState

FAILED = (Status.FAIL, Status.ERROR)
MIN_PAST = 2          # nights of a figure before its spread means anything


def _where(c: Cell) -> str:
    return f"{c.tree} {c.config}"


def cell_changes(now: Cell, title: str, prev: Cell | None, prev_night: str | None,
                 figures_past: dict[str, list[float]] | None = None) -> list[Change]:
    out: list[Change] = []

    def add(kind: str, text: str, regression: bool, test: str | None = None) -> None:
        out.append(Change(kind, text, regression, now.series, now.tree, now.config, test,
                          now.reproduce if regression or kind in ("fixed", "error") else None))

    if now.status == CellStatus.ERROR:
        # Not the series' fault (an infrastructure error): shown, never a
        # regression, and never a pass either: the cell has no result.
        add("error", f"{title} v{now.version} on {_where(now)}: no result ({now.detail})", False)
        return out
    if prev is None:
        if now.status == CellStatus.PASS:
            add("new-series", f"new series {title} v{now.version} passes on {_where(now)}",
                False)
        else:
            add("new-series-failing", f"new series {title} v{now.version} on {_where(now)}: "
                f"{_status_text(now)}", True)
        return out
    since = f" (last result: v{prev.version} on {prev_night})"
    if now.version != prev.version:
        if now.status == CellStatus.PASS:
            add("new-revision", f"{title}: v{now.version} replaces v{prev.version}, passes on "
                f"{_where(now)}", False)
        else:
            add("new-revision", f"{title}: v{now.version} replaces v{prev.version} and on "
                f"{_where(now)}: {_status_text(now)}", True)
            return out
    if now.status == CellStatus.NO_APPLY:
        if prev.status != CellStatus.NO_APPLY:
            add("no-longer-applies", f"{title} v{now.version} no longer applies to "
                f"{now.tree} ({now.commit[:12]}){since}", True)
        return out
    if prev.status == CellStatus.NO_APPLY:
        add("applies-again", f"{title} v{now.version} applies to {now.tree} again", False)
    if now.status == CellStatus.BUILD_FAILED:
        if prev.status != CellStatus.BUILD_FAILED:
            add("build-broken", f"{title} v{now.version} no longer builds on {_where(now)}"
                f"{since}", True)
        return out
    _result_changes(now, prev, prev_night, figures_past or {}, add)
    return out


def _result_changes(now: Cell, prev: Cell, prev_night: str | None,
                    figures_past: dict[str, list[float]], add: Callable[..., None]) -> None:
    """What moved between two results of one cell: tests that newly fail or
    pass, splats new on the patched kernel, figures outside their past range."""
    before = {t.name: t.patched for t in prev.tests}
    for t in now.tests:
        was = before.get(t.name)
        if (t.patched in FAILED and was == Status.PASS and now.status == CellStatus.PASS
                and t.baseline in FAILED):
            # The run's verdict: a test failing in a PASS cell fails on the
            # baseline too and is not one the series is expected to fix.
            add("known-failure", f"{t.name} fails on {_where(now)} (passed on {prev_night}), "
                "on the baseline too: a known failure, not this series'", False, t.name)
        elif t.patched in FAILED and was == Status.PASS:
            add("new-failure", f"{t.name} fails on {_where(now)} (passed on {prev_night}): "
                f"{t.message}".rstrip(": "), True, t.name)
        elif t.patched == Status.PASS and was in FAILED:
            add("fixed", f"{t.name} passes on {_where(now)} (failed on {prev_night})", False,
                t.name)
    old = {s.fingerprint for s in prev.splats if s.side == "patched"}
    for s in now.splats:
        if s.side == "patched" and s.fingerprint not in old:
            add("new-splat", f"new splat on {_where(now)}: {s.title}", True)
    for name, value in sorted(now.figures.items()):
        past = figures_past.get(name, [])
        if len(past) < MIN_PAST:
            continue
        lo, hi = min(past), max(past)
        if not lo <= value <= hi:
            add("figure-moved", f"{name} on {_where(now)}: {value:g}, outside {lo:g}..{hi:g} "
                f"over {len(past)} nights" + (" (advisory under TCG)" if now.accel == "tcg"
                                               else " (advisory)"), False)


def tree_changes(trees: list[TreeState]) -> list[Change]:
    out = []
    for t in trees:
        if t.stale:
            out.append(Change("tree-stale", f"{t.label}: fetch failed, tested at its last known "
                              f"commit {t.commit[:12]} ({t.stale})", False, tree=t.label))
        if t.moved_from:
            to = t.version if t.kind == "debian" and t.version else t.commit[:12]
            out.append(Change("tree-moved", f"tree {t.label} moved from {t.moved_from} to {to}",
                              False, tree=t.label))
    return out


def _status_text(c: Cell) -> str:
    return {CellStatus.FAIL: "fails", CellStatus.NO_APPLY: "does not apply",
            CellStatus.BUILD_FAILED: "does not build",
            CellStatus.ERROR: "no result"}.get(c.status, c.status.lower()) + \
        (f" ({c.detail})" if c.detail else "")


def exit_status(cells: list[Cell], changes: list[Change], incomplete: bool = False) -> int:
    """0: nothing new fails; 1: something does; 5: the night has no result;
    7: nothing new fails but the night is `incomplete` (a CI job of it did
    not report: orch merge), which must not read as a pass."""
    if not any(c.status != CellStatus.ERROR for c in cells):
        return 5
    if any(ch.regression for ch in changes):
        return 1
    return int(Exit.INCOMPLETE) if incomplete else 0
