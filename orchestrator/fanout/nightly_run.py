"""The nightly on one machine (`orch nightly`): the whole plan as one job.

Every night: discover what to test (the newest revision of each tracked
series, new series matching each lore query, the newest version or commit of
each tree), pin it in plan.json before anything runs, then test every series
x tree x config through `orch test`'s engine, sharing its caches: one
baseline build and one baseline boot per tree x config per night (booted
every night: the nightly also watches the environment), then per series its
incremental build and one boot. Each cell's result goes into the SQLite
history, is compared with the last night that had a result for it, and the
changes head every report (HTML, JUnit, KCIDB, a mail-sized summary).

The night's directory is the record: plan.json (what), night.json (the
Night, rewritten after every cell), cells/<cell>/ (each `orch test` run
directory) and the reports. A night that was killed and is run again for the
same date follows the stored plan and runs only the cells without a result.

Here, above the reports, because the night ends by writing them
(reports.night_finish), as `orch merge` ends a fanned-out one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from orchestrator.core import cache_use
from orchestrator.core.progress import Progress
from orchestrator.nightly import history, tonight
from orchestrator.reports import night_finish
from orchestrator.run.lifecycle import Lifecycle
from orchestrator.run import settings
from orchestrator.run.settings import Settings
from orchestrator.store import night_end


def run_night(cfg, out: Path, night: str, *, sandbox: bool = True,
              progress: Progress | None = None, machine: Settings | None = None) -> int:
    """The library entry point (the command and tests call it): the exit
    status, with the night in out/nights/<night>/ and its rows in
    out/history.sqlite. `machine`: this machine's settings (config.toml),
    under the night's file's (nightly.config_file.cell_settings)."""
    progress = progress or Progress()
    started = time.time()
    with history.lock(out):
        hist = history.History(out / history.FILE)
        try:
            ndir = out / "nights" / night
            n = tonight.open_night(cfg, ndir, night, hist, progress)
            with Lifecycle(tonight.NightRecord(n, ndir, hist)):
                tonight.run_cells(n, ndir, cfg.guest_tests, sandbox, hist, progress, machine)
                code = night_finish.finish(n, hist, ndir, out)
            _cache_after(out, night, started, machine)
            return code
        finally:
            hist.close()


def _cache_after(out: Path, night: str, started: float, machine: Settings | None) -> None:
    """After the reports: the night's pin, and a gc when the cache is over
    its cap (store.night_end). Warning lines only: the night's status stands."""
    s = machine or settings.builtin()
    try:
        max_size = cache_use.parse_size(s.cache_max_size)
        max_age = cache_use.parse_age(s.cache_max_age)
    except ValueError:       # settings checked them; a caller's own Settings may not be
        max_size = max_age = None
    for line in night_end.after_night(out, night, started, keep_nights=s.keep_nights,
                                      max_size=max_size, max_age=max_age):
        print(line, file=sys.stderr)
