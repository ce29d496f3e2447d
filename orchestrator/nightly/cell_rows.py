"""One cell of a night from the run record of its `orch test` run.

The nightly never parses a log: the status, tests, splats, durations and
figures all come from run.json (RunRecord), which `orch test` wrote.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import figures
from orchestrator.core.errors import Exit
from orchestrator.core.figures import Declaration
from orchestrator.core.models import Status
from orchestrator.core.sanitize import clean
from orchestrator.guest import about
from orchestrator.nightly.night import (
    Cell,
    CellSplat,
    CellStatus,
    SeriesRev,
    TestCell,
    TreeState,
)
from orchestrator.run import options
from orchestrator.run.record import (
    BootStatus,
    BuildStatus,
    ConfigRecord,
    RunRecord,
    RunState,
)
from orchestrator.source.intake import DEFAULT_LORE

STATUS_OF_EXIT = {int(Exit.OK): CellStatus.PASS, int(Exit.TESTS_FAILED): CellStatus.FAIL,
                  int(Exit.NO_APPLY): CellStatus.NO_APPLY,
                  int(Exit.PATCHED_BUILD): CellStatus.BUILD_FAILED}


def reproduce(s: SeriesRev, t: TreeState, config: str, test: str | None = None,
              lore_url: str | None = None, run: options.Options | None = None) -> str:
    """The one command that reproduces a cell on a developer's machine: the
    cell's own `orch test` (`run`: its options, as it ran them), with the
    revision named by its Message-ID in place of the night's pinned mbox (b4
    fetches exactly that revision) and the plan's tree; narrowed to `test`
    when one is named. Without `run` (a cell that never ran), what the night
    decides: its lore and the config."""
    where = ({"debian_package": t.label.removeprefix("debian:"), "tree": None}
             if t.kind == "debian" else {"tree": Path(t.path)})
    base = run or options.Options(lore_url=lore_url or DEFAULT_LORE, configs=[config])
    expect = base.expect_fixed
    if test and expect and expect != ["none"]:
        # Narrowed to one test, a pattern naming another would be refused
        # (it matches no selected test): keep those about this test.
        expect = [p for p in expect if about.matches(p, test)] or ["none"]
    return options.reproduce_line(dataclasses.replace(
        base, msgid=s.msgid, mbox=None, offline=False, on=t.commit, configs=base.configs,
        guest_tests=[test] if test else base.guest_tests, expect_fixed=expect, **where))


def from_record(rec: RunRecord, s: SeriesRev, t: TreeState, config: str,
                run_dir: str, lore_url: str | None = None,
                run: options.Options | None = None) -> Cell:
    code = rec.exit_code if rec.state == RunState.DONE else None
    status = STATUS_OF_EXIT.get(code, CellStatus.ERROR) if code is not None else CellStatus.ERROR
    detail = clean(rec.error or ("" if rec.state == RunState.DONE else f"run {rec.state}"), 300)
    cell = Cell(series=s.key, version=s.version, msgid=s.msgid, tree=t.label, commit=t.commit,
                config=config, status=status, detail=detail, run_dir=run_dir,
                reproduce=reproduce(s, t, config, lore_url=lore_url, run=run),
                accel=rec.accel.mode if rec.accel else None)
    cfg = next((c for c in rec.configs if c.name == config), None)
    if cfg is None:
        return cell
    _tests(cell, cfg)
    _durations(cell, cfg)
    got = cell_figures(cfg)
    cell.figures = got.values
    cell.declarations = got.declarations or None
    failing = [t.name for t in cell.tests if t.patched in (Status.FAIL, Status.ERROR)]
    if status == CellStatus.FAIL and len(failing) == 1:
        cell.reproduce = reproduce(s, t, config, failing[0], lore_url, run)
    return cell


def _tests(cell: Cell, cfg: ConfigRecord) -> None:
    patched = {t.name: t for t in cfg.patched.tests or []}
    for cmp in cfg.comparison or []:
        p = patched.get(cmp.name)
        cell.tests.append(TestCell(cmp.name, cmp.baseline or None, cmp.patched or None,
                                   cmp.transition, clean(p.message, 300) if p else "",
                                   {k: clean(str(v), 200) for k, v in
                                    (p.properties if p else {}).items()}))
    for side, splats in (("patched", cfg.new_splats), ("baseline", cfg.preexisting_splats)):
        for sp in splats or []:
            cell.splats.append(CellSplat(str(sp.get("fingerprint", "")),
                                         clean(str(sp.get("title", "")), 200), side))


def _durations(cell: Cell, cfg: ConfigRecord) -> None:
    for side in ("baseline", "patched"):
        sr = getattr(cfg, side)
        if sr.build.seconds is not None:
            cell.build_seconds[side] = round(sr.build.seconds, 1)
            cell.built[side] = sr.build.status == BuildStatus.OK and not sr.build.cached
        if sr.boot is not None and sr.boot.seconds is not None:
            cell.boot_seconds[side] = round(sr.boot.seconds, 1)
            cell.booted[side] = sr.boot.status == BootStatus.OK and not sr.boot.cached


# A cell's figures at most: what night.json and the history keep of a guest
# that floods them (each test is capped already: figures.MAX_NAMES).
MAX_CELL_FIGURES = 1024


@dataclass
class CellFigures:
    values: dict[str, float] = field(default_factory=dict)        # figures.night_key/sweep_key
    declarations: dict[str, Declaration] = field(default_factory=dict)   # by figure name


def cell_figures(cfg: ConfigRecord) -> CellFigures:
    """The figures a night keeps, draws and watches, whatever they measure:
    those the guest's tests declared (figures.parse: the untrusted rest is
    left out). A figure over the nights is the patched kernel's; a sweep's
    points are each side's, for the picture of one against the other. A key
    two tests report is the first one's."""
    out = CellFigures()
    for side in figures.SIDES[::-1]:                 # the patched side's declarations first
        for t in getattr(cfg, side).tests or []:
            got = figures.parse(t.properties or {})
            keys = {figures.night_key(n, t.name): v for n, v in got.values.items()
                    } if side == "patched" and t.name else {}
            keys.update({figures.sweep_key(side, n, x): v for n, points in got.sweeps.items()
                         for x, v in points.items()})
            for k, v in keys.items():
                if len(out.values) < MAX_CELL_FIGURES:
                    out.values.setdefault(k, v)
            for n, d in got.declarations.items():
                out.declarations.setdefault(n, d)
    used = {k.name for k in map(figures.parse_key, out.values) if k is not None}
    out.declarations = {n: d for n, d in out.declarations.items() if n in used}
    return out
