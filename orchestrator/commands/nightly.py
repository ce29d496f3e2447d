"""`orch nightly NIGHTLY.toml`: the nightly CI job.

Every night: discover what to test (the newest revision of each tracked
series, new series matching each lore query, the newest version or commit of
each tree), pin it in plan.json before anything runs, then test every series
x tree x config through `orch test`'s stages, sharing its caches: one
baseline build and one baseline boot per tree x config per night (booted
every night: the nightly also watches the environment), then per series its
incremental build and one boot. Each cell's result goes into the SQLite
history, is compared with the last night that had a result for it, and the
changes head every report (HTML, JUnit, KCIDB, a mail-sized summary).

The night's directory is the record: plan.json (what), night.json (the
Night, rewritten after every cell), cells/<cell>/ (each `orch test` run
directory) and the reports. A night that was killed and is run again for the
same date follows the stored plan and runs only the cells without a result.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from orchestrator.commands import common
from orchestrator.commands import test as test_cmd
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.progress import Progress
from orchestrator.nightly import cell_rows, compare, history
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.night import Cell, Night, SeriesRev, TreeState
from orchestrator.run import record
from orchestrator.run.record import now

NAME = "nightly"
HELP = "the nightly CI job: newest revisions and new series against the newest trees"
EPILOG = """\
exit status:
  0    nothing new fails: no regression since the last night with a result,
       no new series or revision failing
  1    something new fails (the reports' headline says what)
  2    a bad NIGHTLY.toml or flag
  5    the night produced no result at all (lore, the trees, every build or
       boot failed), or another nightly is running on the same --out
  130  interrupted; run it again for the same --night to finish it"""


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EPILOG))
    p.add_argument("file", type=Path, metavar="NIGHTLY.toml")
    p.add_argument("--out", type=Path, default=Path("orch-nightly"),
                   help="the history and the nights' directories (default: %(default)s)")
    p.add_argument("--night", help="the night's date, YYYY-MM-DD (default: today, UTC); "
                   "a night that exists is finished, following its stored plan")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="where orch keeps trees, kernels and kept results (default: "
                   "$ORCH_CACHE, else ~/.cache/orch)")
    p.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                   help="build and boot without the curated view (never for mailing-list "
                   "series on a machine with secrets)")
    p.set_defaults(run=main)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    cfg, night = common.night_args(args)
    out = args.out.expanduser().resolve()
    code = run_night(cfg, out, night, sandbox=args.sandbox, argv=["orch", *argv])
    ndir = out / "nights" / night
    if (ndir / "summary.txt").exists():
        print((ndir / "summary.txt").read_text(), end="")
    print(f"night directory: {ndir}", file=sys.stderr)
    return code


def run_night(cfg, out: Path, night: str, *, sandbox: bool = True,
              argv: list[str] | None = None, progress: Progress | None = None) -> int:
    """The library entry point (tests call it): the exit status, with the
    night in out/nights/<night>/ and its rows in out/history.sqlite."""
    progress = progress or Progress()
    with history.lock(out):
        hist = history.History(out / history.FILE)
        try:
            return _run(cfg, out, night, hist, sandbox, argv or [], progress)
        finally:
            hist.close()


def _run(cfg, out: Path, night: str, hist: history.History, sandbox: bool,
         argv: list[str], progress: Progress) -> int:
    ndir = out / "nights" / night
    ndir.mkdir(parents=True, exist_ok=True)
    if (ndir / nightrec.PLAN_FILE).exists():
        plan = nightrec.read_plan(ndir)
        progress.say(f"night {night}: following its stored plan")
    else:
        from orchestrator.nightly import planner
        plan = planner.make(cfg, night, hist, ndir, progress)
        nightrec.write_plan(ndir, plan)
    n = nightrec.read_if_any(ndir) or Night(night, now(), plan)
    n.plan, n.state, n.exit_code, n.finished = plan, "running", None, None
    n.write(ndir)
    progress.say(f"night {night}: {len(plan.series)} series x {len(plan.trees)} trees x "
                 f"{len(plan.configs)} configs")
    try:
        for t in plan.trees:
            for config in plan.configs:
                for s in plan.series:
                    run_cell(n, ndir, s, t, config, cfg.guest_tests, sandbox, progress)
                    hist.record_night(n)
    except KeyboardInterrupt:
        n.state = "interrupted"
        n.write(ndir)
        hist.record_night(n)
        raise
    return finish(n, hist, ndir, out)


def finish(n: Night, hist: history.History, ndir: Path, out: Path,
           extra: list[nightrec.Change] | None = None, finished: str | None = None) -> int:
    """Compare with the history, record and report a night whose cells are
    in: the nightly's last step, and `orch merge`'s (whose `extra` changes
    name the jobs that did not report: the night is incomplete)."""
    n.changes, n.previous = _changes(n, hist, extra or [])
    n.exit_code = compare.exit_status(n.cells, n.changes, incomplete=bool(extra))
    n.state, n.finished = "done", finished or now()
    n.write(ndir)
    hist.record_night(n)
    _reports(n, hist, ndir, out)
    return n.exit_code


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:50] or "x"


def cell_dir(s: SeriesRev, t: TreeState, config: str) -> str:
    """A cell's run directory, relative to the night's: the same on every
    machine, so a CI job's cells merge into one night's tree."""
    return f"cells/{_slug(s.key.split(':', 1)[-1])}-v{s.version}--{_slug(t.label)}--{config}"


def run_cell(n: Night, ndir: Path, s: SeriesRev, t: TreeState, config: str,
             guest_tests: list[str] | None, sandbox: bool, progress: Progress,
             baseline_booted: bool = False, tree_path: Path | None = None) -> None:
    """One cell through `orch test`, its result into n (and night.json).
    `baseline_booted`: tonight's baseline of this tree x config was booted
    elsewhere (a CI baseline job), so its kept results answer."""
    cid = nightrec.cell_id(s.key, t.label, config)
    done = n.cell(cid)
    if done is not None and done.status in history.RESULT_STATUSES:
        return   # a rerun of the night runs only what is missing
    rel = cell_dir(s, t, config)
    run_dir = ndir / rel
    # The baseline of a tree x config is booted once a night: by its first
    # cell that gets that far, whose results the later cells then reuse.
    fresh = baseline_booted or any(
        c.tree == t.label and c.config == config and "baseline" in c.boot_seconds
        for c in n.cells if c.id != cid)
    path = str(tree_path or t.path)
    opts = test_cmd.Options(
        mbox=ndir / s.mbox, offline=True, lore_url=n.plan.lore_url, tree=Path(path),
        on=t.commit, configs=[config], run_dir=run_dir, guest_tests=guest_tests,
        rerun_baseline=not fresh, rerun_patched=True, sandbox=sandbox,
        argv=["orch", "test", "--mbox", str(ndir / s.mbox), "--tree", path, "--on", t.commit,
              "--config", config, "--run-dir", str(run_dir)])
    progress.say(f"cell {s.title[:50]} v{s.version} / {t.label} / {config}")
    try:
        test_cmd.test(opts, progress)
    except OrchError:
        pass          # its run.json says what happened; the night goes on
    cell = _read_cell(run_dir, s, t, config, rel, n.plan.lore_url)
    n.put(cell)
    n.write(ndir)
    progress.say(f"  {cell.status} {cell.detail[:100]}")


def _read_cell(run_dir: Path, s: SeriesRev, t: TreeState, config: str, rel: str,
               lore_url: str) -> Cell:
    try:
        rec = record.read(run_dir / "run.json")
    except BadInput as e:
        return Cell(s.key, s.version, s.msgid, t.label, t.commit, config, "ERROR",
                    f"no run record: {e}", rel,
                    cell_rows.reproduce(s, t, config, lore_url=lore_url))
    return cell_rows.from_record(rec, s, t, config, rel, lore_url)


def _changes(n: Night, hist: history.History, extra: list[nightrec.Change]):
    changes = compare.tree_changes(n.plan.trees)
    changes += [nightrec.Change("error", p, False) for p in n.plan.problems] + extra
    previous: dict[str, str] = {}
    titles = {s.key: s.title for s in n.plan.series}
    for c in n.cells:
        last = hist.last_result(c.series, c.tree, c.config, before=n.night)
        prev_night, prev = last if last else (None, None)
        if prev_night:
            previous[c.id] = prev_night
        past = {name: hist.figure_history(c.series, c.tree, c.config, name, n.night)
                for name in c.figures}
        changes += compare.cell_changes(c, titles.get(c.series, c.series), prev, prev_night,
                                        past)
    # Regressions first: they are what the reader must act on.
    changes.sort(key=lambda ch: (not ch.regression, compare_order(ch.kind)))
    return changes, previous


def compare_order(kind: str) -> int:
    return nightrec.KINDS.index(kind) if kind in nightrec.KINDS else len(nightrec.KINDS)


def _reports(n: Night, hist: history.History, ndir: Path, out: Path) -> None:
    """Every report of the night, each from the Night alone (and the history
    for the series pages). One that fails is named, and the others written."""
    failed = []

    def attempt(name: str, fn) -> None:
        try:
            fn()
        except Exception as e:   # a report bug must not lose the night or the others
            failed.append(f"{name}: {type(e).__name__}: {e}")

    def html() -> None:
        from orchestrator.reports import html_page
        html_page.write_night_site(n, {s.key: hist.series_history(s.key)
                                         for s in n.plan.series}, ndir, links_base="../../")

    def junit() -> None:
        from orchestrator.reports import junit_report
        (ndir / "junit.xml").write_text(junit_report.junit_xml(n), encoding="utf-8")

    def kcidb() -> None:
        from orchestrator.reports import kcidb_report
        record.write_json(ndir / "kcidb.json", kcidb_report.kcidb_json(n, night_dir=ndir))

    def text() -> None:
        from orchestrator.reports import night_text
        (ndir / "summary.txt").write_text(night_text.summary_text(n), encoding="utf-8")

    for name, fn in (("summary", text), ("html", html), ("junit", junit), ("kcidb", kcidb)):
        attempt(name, fn)
    latest = out / "latest"
    try:
        if latest.is_symlink() or not latest.exists():
            latest.unlink(missing_ok=True)
            latest.symlink_to(Path("nights") / n.night)
    except OSError:
        pass
    if failed:
        (ndir / "report-errors.txt").write_text("\n".join(failed) + "\n")
        print(f"orch: warning: some reports failed ({ndir / 'report-errors.txt'}): "
              f"{failed[0]}", file=sys.stderr)


__all__ = ["run_night", "Exit"]
