"""One night from a CI engine's shards (`orch merge SHARD... --out DIR`).

The shards' cells (and their run directories) go into DIR/nights/<night>/
as if one machine had run the plan, and the night is finished as `orch
nightly` finishes one: the same comparison with DIR/history.sqlite, the same
rows, HTML, JUnit, KCIDB and summary.

A job whose shard is missing, unreadable or failed is named in the night's
changes, and each of its cells is an ERROR cell saying which job did not
report: nothing is dropped. Merging is by cell id and remembers which
shards it took (shards.json), so merging the same shard again, or the
shards one at a time as their jobs end, gives the same night.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from orchestrator.core import jsonio, untrusted_tree
from orchestrator.core.errors import BadInput
from orchestrator.core.sanitize import clean
from orchestrator.core.untrusted import UntrustedError
from orchestrator.fanout import jobfiles
from orchestrator.nightly import cell_rows, cells, history
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.night import Cell, Change, Night
from orchestrator.reports import night_finish
from orchestrator.run.record import now

SHARDS_FILE = "shards.json"


def merge(shards: list[Path], out: Path, plan_dir: Path | None = None) -> int:
    """The library entry point: the exit status, the night in
    out/nights/<night>/."""
    read: dict[str, tuple[Path, jobfiles.JobRecord]] = {}
    unreadable: list[str] = []
    for d in shards:
        if d.is_symlink():   # an artifact that is a link leads anywhere
            unreadable.append(f"{d}: a symbolic link, not followed")
            continue
        try:
            rec = jobfiles.read_job(d)
        except BadInput as e:
            unreadable.append(str(e))
            continue
        read[rec.job.id] = (d, rec)
    source = plan_dir or next((d for d, _ in read.values()), None)
    if source is None:
        raise BadInput("no plan: give --plan PLAN_DIR, or at least one readable shard"
                       + (f" ({unreadable[0]})" if unreadable else ""))
    plan, jobs = jobfiles.read_plan_dir(source)
    for d, rec in read.values():
        if rec.plan_digest != jobs.plan_digest:
            raise BadInput(f"{d} is a shard of another plan (night {rec.night}, plan "
                           f"{rec.plan_digest}), not {jobs.plan_digest}")
    with history.lock(out):
        hist = history.History(out / history.FILE)
        try:
            return _merge(plan, jobs, source, read, unreadable, out, hist)
        finally:
            hist.close()


def _merge(plan, jobs: jobfiles.Jobs, source: Path, read: dict, unreadable: list[str],
           out: Path, hist: history.History) -> int:
    ndir = out / "nights" / plan.night
    ndir.mkdir(parents=True, exist_ok=True)
    if (ndir / nightrec.PLAN_FILE).exists() and \
            jobfiles.plan_digest(nightrec.read_plan(ndir)) != jobs.plan_digest:
        raise BadInput(f"{ndir} holds another plan of the night {plan.night}: merge into "
                       "another --out")
    for line in jobfiles.copy_plan(source, ndir):
        _say(f"{source.name}: series: left out: {line}")
    n = nightrec.read_if_any(ndir) or Night(plan.night, "", plan)
    n.plan = plan
    taken = _taken(ndir)
    for job_id, (d, rec) in sorted(read.items()):
        taken[job_id] = {"state": rec.state, "error": rec.error, "started": rec.started,
                         "finished": rec.finished, "imported": rec.imported}
        if rec.job.kind != "series" or not (d / nightrec.FILE).exists():
            continue
        try:
            shard = nightrec.read(d)
        except BadInput as e:
            taken[job_id] = {**taken[job_id], "state": "failed", "error": str(e)}
            continue
        for c in shard.cells:
            if c.run_dir:
                _take_run_dir(d, c, ndir)
            n.put(c)
    jsonio.write(ndir / SHARDS_FILE, taken)
    problems = _missing(plan, jobs, taken, n) + [
        Change("error", f"a shard could not be read: {u}"[:300], False) for u in unreadable]
    # Cells in the plan's order: the single-machine nightly's order.
    order = {nightrec.cell_id(s.key, t.label, c): i for i, (t, c, s) in enumerate(
        (t, c, s) for t in plan.trees for c in plan.configs for s in plan.series)}
    n.cells.sort(key=lambda c: order.get(c.id, len(order)))
    starts = [v["started"] for v in taken.values() if v.get("started")]
    ends = [v["finished"] for v in taken.values() if v.get("finished")]
    n.started = min(starts) if starts else (n.started or now())
    code = night_finish.finish(n, hist, ndir, out, extra=problems,
                               finished=max(ends) if ends else None)
    if problems:
        print(f"orch: merge: {len(problems)} job(s) did not report: "
              + "; ".join(p.text for p in problems[:3]), file=sys.stderr)
    return code


def _take_run_dir(shard: Path, c: Cell, ndir: Path) -> None:
    """The cell's run directory, from the shard into the night: its
    directories and regular files only, within untrusted_tree.RUN_DIR (a
    guest or a tampered artifact may have left links to the host's secrets,
    FIFOs, devices there). A run_dir that is not a plain path inside the
    shard (absolute, "..", a link on the way) is not followed, and the cell
    keeps no run directory. What is left out is said on stderr."""
    try:
        parts = untrusted_tree.plain_parts(c.run_dir)
        dest = ndir.joinpath(*parts)
        _remove(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        left_out = untrusted_tree.copy(shard, parts, dest, untrusted_tree.RUN_DIR)
    except FileNotFoundError:
        return   # the job left none: the cell says why
    except (UntrustedError, OSError) as e:
        _say(f"{shard.name}: cell {c.id}: its run directory is not taken: {_why(e)}")
        c.run_dir = None
        return
    if left_out:
        _say(f"{shard.name}: {c.run_dir}: {len(left_out)} entries left out: "
             + "; ".join(left_out[:5]) + ("; ..." if len(left_out) > 5 else ""))


def _remove(path: Path) -> None:
    """A run directory merged before, replaced; a link there is removed,
    never followed."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _why(e: Exception) -> str:
    return str(e) if isinstance(e, UntrustedError) else (e.strerror or str(e))


def _say(line: str) -> None:
    print(clean(f"orch: merge: {line}", 1000), file=sys.stderr)


def _taken(ndir: Path) -> dict:
    try:
        data = json.loads((ndir / SHARDS_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _missing(plan, jobs: jobfiles.Jobs, taken: dict, n: Night) -> list[Change]:
    """A change for each job that did not report, and an ERROR cell for each
    of its cells that has no result from elsewhere."""
    problems = []
    by_key = {s.key: s for s in plan.series}
    trees = {t.label: t for t in plan.trees}
    for job in jobs.jobs:
        got = taken.get(job.id)
        if got and got.get("state") == "done":
            continue
        why = (f"failed: {got.get('error') or got.get('state')}" if got
               else "missing: no shard")
        what = "baseline" if job.kind == "baseline" else f"{len(job.series)} series"
        problems.append(Change("error", f"job {job.id} ({what}, {job.tree} {job.config}) "
                               f"{why}"[:300], False, tree=job.tree, config=job.config))
        for key in job.series:
            s, t = by_key[key], trees[job.tree]
            have = n.cell(nightrec.cell_id(key, job.tree, job.config))
            if have is not None and have.status in history.RESULT_STATUSES:
                continue
            n.put(Cell(
                series=key, version=s.version, msgid=s.msgid, tree=job.tree, commit=t.commit,
                config=job.config, status="ERROR", detail=f"job {job.id} {why}"[:200],
                run_dir=None,
                reproduce=cell_rows.reproduce(s, t, job.config, run=cells.night_options(
                    plan, job.config, plan.guest_tests, True, series=s))))
    return problems
