"""Tonight's night on one machine: its plan (made once, then followed by
every rerun of the same date), its record (night.json, begun and ended by
the run lifecycle), every cell in the plan's order, and what changed since
the last night with a result for each cell.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.core.progress import Progress
from orchestrator.nightly import compare, history
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.cells import run_cell
from orchestrator.nightly.night import Night
from orchestrator.run.lifecycle import Cause, Ending
from orchestrator.run.record import RunState, now
from orchestrator.run.settings import Settings


class NightRecord:
    """night.json and the night's history rows, as the lifecycle
    (run.lifecycle) begins and ends them."""

    def __init__(self, n: Night, ndir: Path, hist: history.History):
        self.n, self.dir, self.hist = n, ndir, hist

    def start(self) -> None:
        n = self.n
        n.state, n.exit_code, n.finished = RunState.RUNNING, None, None
        n.write(self.dir)

    def end(self, ending: Ending) -> None:
        n = self.n
        if ending.cause is Cause.INTERRUPTED:
            # Run it again for the same date to finish it.
            n.state = RunState.INTERRUPTED
        else:
            n.state, n.exit_code, n.finished = RunState.DONE, int(ending.exit), now()
        n.write(self.dir)
        self.hist.record_night(n)


def open_night(cfg, ndir: Path, night: str, hist: history.History,
               progress: Progress) -> Night:
    """The night in `ndir`: its stored plan and the cells it has, or a new
    plan (discovery: lore, the trees) pinned in plan.json."""
    ndir.mkdir(parents=True, exist_ok=True)
    if (ndir / nightrec.PLAN_FILE).exists():
        plan = nightrec.read_plan(ndir)
        progress.say(f"night {night}: following its stored plan")
    else:
        from orchestrator.nightly import planner
        plan = planner.make(cfg, night, hist, ndir, progress)
        nightrec.write_plan(ndir, plan)
    n = nightrec.read_if_any(ndir) or Night(night, now(), plan)
    n.plan = plan
    return n


def run_cells(n: Night, ndir: Path, guest_tests: list[str] | None, sandbox: bool,
              hist: history.History, progress: Progress,
              machine: Settings | None = None) -> None:
    """Every cell of the plan without a result, each recorded as it ends;
    `machine`: this machine's settings (config_file.cell_settings)."""
    plan = n.plan
    progress.say(f"night {n.night}: {len(plan.series)} series x {len(plan.trees)} trees x "
                 f"{len(plan.configs)} configs")
    for t in plan.trees:
        for config in plan.configs:
            for s in plan.series:
                run_cell(n, ndir, s, t, config, guest_tests, sandbox, progress,
                         machine=machine)
                hist.record_night(n)


def changes(n: Night, hist: history.History,
            extra: list[nightrec.Change]) -> tuple[list[nightrec.Change], dict[str, str]]:
    """What changed since the last night with a result for each cell
    (regressions first), and which night each cell was compared with."""
    found = compare.tree_changes(n.plan.trees)
    found += [nightrec.Change("error", p, False) for p in n.plan.problems] + extra
    previous: dict[str, str] = {}
    titles = {s.key: s.title for s in n.plan.series}
    for c in n.cells:
        last = hist.last_result(c.series, c.tree, c.config, before=n.night)
        prev_night, prev = last if last else (None, None)
        if prev_night:
            previous[c.id] = prev_night
        past = {name: hist.figure_history(c.series, c.tree, c.config, name, n.night)
                for name in c.figures}
        found += compare.cell_changes(c, titles.get(c.series, c.series), prev, prev_night,
                                      past)
    # Regressions first: they are what the reader must act on.
    found.sort(key=lambda ch: (not ch.regression, compare_order(ch.kind)))
    return found, previous


def compare_order(kind: str) -> int:
    return nightrec.KINDS.index(kind) if kind in nightrec.KINDS else len(nightrec.KINDS)
