"""A night's cells: one series revision x tree x config each, run through
`orch test`'s engine (run.series_run) into its own run directory, and read
back from its run.json. The single-machine nightly and a CI series job run
every cell through run_cell, so a cell is the same wherever it ran.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from orchestrator.core.errors import BadInput, OrchError
from orchestrator.core.names import slug
from orchestrator.core.progress import Progress
from orchestrator.guest import selection, vm
from orchestrator.kernel import kconfig
from orchestrator.nightly import cell_rows, config_file, history
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.night import (
    Cell,
    CellStatus,
    Night,
    Plan,
    SeriesRev,
    TreeState,
)
from orchestrator.run import record, series_run, settings
from orchestrator.run.options import Options, argv_of


def cell_dir(s: SeriesRev, t: TreeState, config: str) -> str:
    """A cell's run directory, relative to the night's: the same on every
    machine, so a CI job's cells merge into one night's tree."""
    return (f"cells/{slug(s.key.split(':', 1)[-1], 50)}-v{s.version}--{slug(t.label, 50)}"
            f"--{config}")


def night_options(plan: Plan, config: str, guest_tests: list[str] | None,
                  sandbox: bool, machine: settings.Settings | None = None,
                  series: SeriesRev | None = None) -> Options:
    """What every `orch test` of a night's tree x config runs with, on any
    machine: its boot settings (options.boot_settings) are the key a CI
    baseline job's results are kept under and each series job's cells
    find them by. `machine`: the settings of the machine that runs it
    (config_file.cell_settings: the night's file's timeouts over them).
    `series`: a cell's, whose own kselftests (plan.series_kselftests) it
    runs on top of the night's; None: the night's alone (a baseline job)."""
    limits = config_file.cell_settings(plan, machine)
    if guest_tests is None and not (plan.kselftests or plan.suites) \
            and kselftests(plan, series):
        # The series' own kselftests come on top of what the night runs: the
        # whole guest suite, which a run with kselftests names to run it.
        guest_tests = [selection.GUEST_TESTS]
    opts = Options(offline=True, lore_url=plan.lore_url, configs=[config],
                   guest_tests=guest_tests, sandbox=sandbox, jobs=limits.jobs,
                   guest_timeout=limits.guest_timeout, test_timeout=limits.test_timeout,
                   timeout=limits.timeout, kselftests=kselftests(plan, series),
                   suites=[Path(d) for d in plan.suites or []],
                   cpus=plan.cpus or vm.CPUS, memory=plan.memory or vm.MEMORY)
    if plan.kconfig is not None or plan.kconfig_add:
        _own_config(opts, plan, config)
    return opts


def kselftests(plan: Plan, series: SeriesRev | None = None) -> list[str]:
    """The --kselftest values of a cell of `series` (None: the night's
    alone): the night's, then the series' own."""
    own = (plan.series_kselftests or {}).get(series.key, []) if series else []
    return [*(plan.kselftests or []), *(k for k in own if k not in (plan.kselftests or []))]


def _own_config(opts: Options, plan: Plan, config: str) -> None:
    """NIGHTLY.toml's kconfig / kconfig_add: the plan's config names are
    the configs they make (`base+<sha8>`, `kconfig-<sha8>`), which the cell
    asks for as `orch test` would be asked; they must still make the same
    config (a fragment file edited since the plan would build another)."""
    opts.kconfig, opts.kconfig_add = plan.kconfig, list(plan.kconfig_add or [])
    opts.configs = [] if plan.kconfig is not None else [config.partition("+")[0]]
    made = kconfig.chosen(opts.configs, opts.kconfig, opts.kconfig_add)[0].name
    if made != config:
        raise BadInput(f"config {config} of the night's plan: its kconfig / kconfig_add "
                       f"now make {made} (a file changed since the plan was made): plan "
                       "the night again (another --out or --night)")


def cell_options(n: Night, ndir: Path, s: SeriesRev, t: TreeState, config: str,
                 guest_tests: list[str] | None, sandbox: bool, baseline_booted: bool = False,
                 tree_path: Path | None = None,
                 machine: settings.Settings | None = None) -> Options:
    """One cell's `orch test`. `baseline_booted`: tonight's baseline of this
    tree x config was booted elsewhere (a CI baseline job), so its kept
    results answer."""
    cid = nightrec.cell_id(s.key, t.label, config)
    # The baseline of a tree x config is booted once a night: by its first
    # cell that gets that far, whose results the later cells then reuse.
    # A series with kselftests of its own boots another selection: its
    # baseline is tonight's only if a cell with the same one booted it (a
    # baseline job boots the night's alone).
    mine = kselftests(n.plan, s)
    by_key = {x.key: x for x in n.plan.series}
    fresh = (baseline_booted and mine == kselftests(n.plan)) or any(
        c.tree == t.label and c.config == config and "baseline" in c.boot_seconds
        and kselftests(n.plan, by_key.get(c.series)) == mine
        for c in n.cells if c.id != cid)
    opts = dataclasses.replace(
        night_options(n.plan, config, guest_tests, sandbox, machine, s), mbox=ndir / s.mbox,
        tree=Path(tree_path or t.path), on=t.commit, run_dir=ndir / cell_dir(s, t, config),
        rerun_baseline=not fresh, rerun_patched=True,
        expect_fixed=s.expect_fixed)    # NIGHTLY.toml's, for a tracked series
    # Its whole command: run again, it is this cell again (the reproduce
    # line names the revision by Message-ID instead: cell_rows.reproduce).
    opts.argv = argv_of(opts)
    return opts


def run_cell(n: Night, ndir: Path, s: SeriesRev, t: TreeState, config: str,
             guest_tests: list[str] | None, sandbox: bool, progress: Progress,
             baseline_booted: bool = False, tree_path: Path | None = None,
             machine: settings.Settings | None = None) -> None:
    """One cell through `orch test`, its result into n (and night.json)."""
    done = n.cell(nightrec.cell_id(s.key, t.label, config))
    if done is not None and done.status in history.RESULT_STATUSES:
        return   # a rerun of the night runs only what is missing
    opts = cell_options(n, ndir, s, t, config, guest_tests, sandbox, baseline_booted,
                        tree_path, machine)
    progress.say(f"cell {s.title[:50]} v{s.version} / {t.label} / {config}")
    try:
        series_run.test(opts, progress)
    except OrchError:
        pass          # its run.json says what happened; the night goes on
    cell = _read_cell(opts, s, t, config, cell_dir(s, t, config))
    n.put(cell)
    n.write(ndir)
    progress.say(f"  {cell.status} {cell.detail[:100]}")


def _read_cell(opts: Options, s: SeriesRev, t: TreeState, config: str, rel: str) -> Cell:
    try:
        rec = record.read(opts.run_dir / "run.json")
    except BadInput as e:
        return Cell(series=s.key, version=s.version, msgid=s.msgid, tree=t.label,
                    commit=t.commit, config=config, status=CellStatus.ERROR,
                    detail=f"no run record: {e}", run_dir=rel,
                    reproduce=cell_rows.reproduce(s, t, config, run=opts))
    return cell_rows.from_record(rec, s, t, config, rel, opts.lore_url, run=opts)
