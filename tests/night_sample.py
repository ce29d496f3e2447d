"""A representative night (orchestrator.nightly.night.Night) for testing the reports
without running anything: two series (one with hostile text in every
untrusted field), two configs, every kind of cell status, changes, figures
and a history of three nights."""

from __future__ import annotations

from orchestrator.nightly.night import (
    Cell,
    CellSplat,
    Change,
    HistoryPoint,
    Night,
    Plan,
    SeriesRev,
    TestCell,
    TreeState,
)

HOSTILE = '<script>console.error("pwned")</script><img src=x onerror=alert(1)> & "q"'

IRQ = "guest_tests/test_blockdev_dontcache.py::test_dontcache_write_irq_completion_evicts"
TASK = "guest_tests/test_blockdev_dontcache.py::test_dontcache_write_task_completion_evicts"
SCALE = "guest_tests/test_scale_bench.py::test_scale_dontcache_writers"


def _scale(side: str, base: float) -> dict[str, float]:
    out = {}
    for n in (1, 2):
        out[f"scale:{side}:mib_per_s:{n}"] = round(base * n * (0.9 if n == 2 else 1.0), 1)
        out[f"scale:{side}:contentions:{n}"] = float(3 * n * n if side == "patched" else n)
    return out


def sample_night(night: str = "2026-11-28") -> Night:
    series = [
        SeriesRev("change-id:20251127-blk-dontcache-1a2b3c", "block: enable RWF_DONTCACHE for "
                  "block devices", "20251127-blk-dontcache-v3-0-abc@columbia.edu", 3,
                  "20251127-blk-dontcache-1a2b3c", "tracked", "series/blk-dontcache-v3.mbx"),
        SeriesRev("msgid:evil@example.org", f"[PATCH] mm: {HOSTILE}", "evil@example.org", 1, None,
                  "query: s:RWF_DONTCACHE AND d:2.days.ago..", "series/evil.mbx"),
    ]
    trees = [TreeState("debian:linux-source-7.2", "debian", "/cache/trees/linux-source-7.2",
                       "578fc99b56ba" + "0" * 28, "7.2.13-1", moved_from="7.2.12-1")]
    plan = Plan(night, "https://lore.kernel.org/all", ["base", "debug"], series, trees,
                created=f"{night}T01:00:00+00:00")
    n = Night(night, f"{night}T01:00:00+00:00", plan, state="done", exit_code=1,
              finished=f"{night}T03:10:00+00:00")
    good = series[0]
    for config in ("base", "debug"):
        figures = {f"evicted:{IRQ}": 1.0, f"evicted:{TASK}": 1.0,
                   **_scale("baseline", 40.0), **_scale("patched", 35.0)}
        n.cells.append(Cell(
            series=good.key, version=3, msgid=good.msgid, tree=trees[0].label,
            commit=trees[0].commit, config=config,
            status="FAIL" if config == "debug" else "PASS",
            detail="test_dontcache_write_task_completion_evicts regressed"
            if config == "debug" else "",
            run_dir=f"cells/blk-dontcache-v3--debian--{config}",
            reproduce=f"orch test {good.msgid} --tree {trees[0].path} --base "
            f"{trees[0].commit[:12]} --config {config}"
            + (f" --guest-test {TASK}" if config == "debug" else ""),
            tests=[TestCell(IRQ, "FAIL", "PASS", "fixed", "", {"pages_still_cached": "0"}),
                   TestCell(TASK, "FAIL", "FAIL" if config == "debug" else "PASS",
                            "still failing" if config == "debug" else "fixed",
                            "AssertionError: 3/16 DONTCACHE folios still cached"
                            if config == "debug" else "", {"pages_still_cached": "3"}),
                   TestCell(SCALE, "SKIP", "PASS", "passing", "", {})],
            splats=[CellSplat("a1b2c3d4e5f6", "WARNING: possible circular locking dependency "
                              "detected", "patched")] if config == "debug" else [],
            build_seconds={"baseline": 0.0, "patched": 124.0},
            boot_seconds={"baseline": 96.0, "patched": 101.0},
            built={"baseline": False, "patched": True}, booted={"baseline": True, "patched": True},
            figures=figures, accel="tcg"))
    evil = series[1]
    n.cells.append(Cell(series=evil.key, version=1, msgid=evil.msgid, tree=trees[0].label,
                        commit=trees[0].commit, config="base", status="NO-APPLY",
                        detail=f"patch 1/1 does not apply: {HOSTILE}",
                        run_dir="cells/evil--debian--base",
                        reproduce=f"orch test {evil.msgid} --tree {trees[0].path} --base "
                        f"{trees[0].commit[:12]} --config base"))
    n.changes = [
        Change("new-failure", f"{TASK} fails on debug (passed on 2026-11-27)", True, good.key,
               trees[0].label, "debug", TASK, n.cells[1].reproduce),
        Change("new-splat", "new splat on debug: WARNING: possible circular locking dependency "
               "detected", True, good.key, trees[0].label, "debug", None, n.cells[1].reproduce),
        Change("new-revision", "v3 replaces v2", False, good.key),
        Change("new-series-failing", f"new series {HOSTILE} does not apply", True, evil.key,
               trees[0].label, "base", None, n.cells[2].reproduce),
        Change("tree-moved", "tree moved from 7.2.12-1 to 7.2.13-1", False, None,
               trees[0].label),
        Change("figure-moved", "scale:patched:mib_per_s:2 moved from 80.0 to 63.0 "
               "(spread 70.1..82.3 over 2 nights; advisory under TCG)", False, good.key,
               trees[0].label, "base"),
    ]
    n.previous = {n.cells[0].id: "2026-11-27", n.cells[1].id: "2026-11-27"}
    return n


def sample_history() -> dict[str, list[HistoryPoint]]:
    """Series key -> its results over three nights (oldest first)."""
    key = "change-id:20251127-blk-dontcache-1a2b3c"
    points = []
    for i, (night, version, status) in enumerate((("2026-11-26", 2, "FAIL"),
                                                  ("2026-11-27", 2, "PASS"),
                                                  ("2026-11-28", 3, "PASS"))):
        for config in ("base", "debug"):
            st = "FAIL" if (night == "2026-11-28" and config == "debug") else status
            points.append(HistoryPoint(night, version, "debian:linux-source-7.2",
                                       "578fc99b56ba" + "0" * 28, config, st,
                                       {f"evicted:{IRQ}": 0.5 + 0.25 * i,
                                        **_scale("baseline", 40.0 + i),
                                        **_scale("patched", 30.0 + 2 * i)},
                                       f"nights/{night}/cells/x--{config}"))
    return {key: points}
