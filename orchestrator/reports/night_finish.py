"""A night whose cells are in, finished: compared with the history (what
changed since the last night with a result), recorded (night.json and the
history's rows) and reported (summary.txt, the HTML site, junit.xml,
kcidb.json). The single-machine nightly's last step, and `orch merge`'s.
"""

from __future__ import annotations

import sys
from pathlib import Path

from orchestrator.core import jsonio
from orchestrator.nightly import compare, history, tonight
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.night import Night
from orchestrator.run.record import RunState, now


def finish(n: Night, hist: history.History, ndir: Path, out: Path,
           extra: list[nightrec.Change] | None = None, finished: str | None = None) -> int:
    """Compare with the history, record and report a night whose cells are
    in. `extra`: changes that name the jobs that did not report (orch
    merge): the night is incomplete."""
    n.changes, n.previous = tonight.changes(n, hist, extra or [])
    n.exit_code = compare.exit_status(n.cells, n.changes, incomplete=bool(extra))
    n.state, n.finished = RunState.DONE, finished or now()
    n.write(ndir)
    hist.record_night(n)
    _reports(n, hist, ndir, out)
    return n.exit_code


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
        jsonio.write(ndir / "kcidb.json", kcidb_report.kcidb_json(n, night_dir=ndir))

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
