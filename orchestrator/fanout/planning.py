"""A night resolved once and cut into a CI engine's jobs (`orch plan`).

The plan directory gets what every job needs and nothing machine-local:
plan.json (the series revisions and tree commits, pinned), series/ (each
revision's mbox, as lore gave it tonight), jobs.json (jobfiles.cut) and the
engine's file (workflow.yml for GitHub Actions, pipeline.yml for a GitLab
child pipeline). The engine runs `orch job DIR JOB` on its runners and
`orch merge` at the end; see jobfiles and ci_files.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from orchestrator.core.errors import BadInput
from orchestrator.core.progress import Progress
from orchestrator.core.sanitize import clean
from orchestrator.fanout import ci_files, jobfiles
from orchestrator.nightly import history
from orchestrator.nightly import night as nightrec

FILES = {"github": "workflow.yml", "gitlab": "pipeline.yml", "json": jobfiles.JOBS_FILE}


def write(cfg, out: Path, night: str, fmt: str, *, group_size: int = jobfiles.DEFAULT_GROUP,
          history_file: Path | None = None, shared_ccache: str = "engine",
          runs_on: str | list[str] = "ubuntu-latest", tags: list[str] | None = None,
          progress: Progress | None = None) -> Path:
    """The library entry point: plan (once: a directory that has this
    night's plan from the same NIGHTLY.toml keeps it) and write the engine's
    file; its path."""
    if fmt not in FILES:
        raise BadInput(f"--format {fmt}: not one of {', '.join(sorted(FILES))}")
    jobfiles.check_group_size(group_size)   # before lore is asked anything
    out.mkdir(parents=True, exist_ok=True)
    if (out / nightrec.PLAN_FILE).exists():
        plan = nightrec.read_plan(out)
        if plan.night != night:
            raise BadInput(f"{out} holds the plan of the night {plan.night}, not {night}: "
                           "give another --out")
        _same_file(plan, cfg, out)
    else:
        from orchestrator.nightly import planner
        progress = progress or Progress()
        if history_file is not None and not history_file.exists():
            raise BadInput(f"--history {history_file}: no such file")
        with tempfile.TemporaryDirectory(prefix="orch-plan-") as tmp:
            hist = history.History(history_file or Path(tmp) / history.FILE)
            try:
                plan = planner.make(cfg, night, hist, out, progress)
            finally:
                hist.close()
        nightrec.write_plan(out, plan)
    jobs = jobfiles.cut(plan, group_size)
    jobfiles.write_jobs(out, jobs)
    dest = out / FILES[fmt]
    rel = str(out)
    if fmt == "github":
        dest.write_text(ci_files.github(jobs, rel, runs_on, shared_ccache))
    elif fmt == "gitlab":
        dest.write_text(ci_files.gitlab(jobs, rel, tags, shared_ccache))
    return dest


def _same_file(plan: nightrec.Plan, cfg, out: Path) -> None:
    """A plan directory is reused only by the NIGHTLY.toml it was made from:
    the same bytes (the sha256 plan.json records), wherever the file lies.
    Another file's series, trees or timeouts would otherwise be ignored."""
    if plan.nightly_toml_sha256 is None:
        raise BadInput(f"{out} holds a plan that does not say which NIGHTLY.toml it was "
                       f"made from (an older orch), so not whether it is {cfg.file}'s: "
                       "give another --out")
    if plan.nightly_toml_sha256 != cfg.digest:
        raise BadInput(f"{out} holds the plan made from {plan.nightly_toml} (sha256 "
                       f"{plan.nightly_toml_sha256[:12]}), not from {cfg.file} (sha256 "
                       f"{cfg.digest[:12]}): give another --out")


def announce(out: Path, night: str) -> None:
    """What the plan in `out` holds, on stderr: its problems (kept in
    plan.json for orch merge to report), its size and its jobs."""
    plan, jobs = jobfiles.read_plan_dir(out)
    for p in plan.problems:
        print(f"orch: plan: {p}", file=sys.stderr)
    print(f"night {night}: {len(plan.series)} series x {len(plan.trees)} trees x "
          f"{len(plan.configs)} configs: {sum(j.kind == 'baseline' for j in jobs.jobs)} "
          f"baseline jobs, {sum(j.kind == 'series' for j in jobs.jobs)} series jobs",
          file=sys.stderr)
    extra = _beyond_guest_tests(plan)
    if extra:
        print(f"each cell also: {extra}", file=sys.stderr)


def _beyond_guest_tests(plan: nightrec.Plan) -> str:
    """What plan.json says every cell runs besides its guest tests (the
    night's NIGHTLY.toml keys of the same names), on one line."""
    parts = []
    if plan.kselftests:
        parts.append(f"kselftests {', '.join(plan.kselftests)}")
    if plan.series_kselftests:
        parts.append(f"{len(plan.series_kselftests)} series with kselftests of their own")
    if plan.suites:
        parts.append(f"suites {', '.join(plan.suites)}")
    if plan.kconfig is not None:
        parts.append(f"kconfig {plan.kconfig}")
    if plan.kconfig_add:
        parts.append(f"kconfig_add {', '.join(plan.kconfig_add)}")
    if plan.cpus is not None or plan.memory is not None:
        parts.append(f"guest {plan.cpus or 'default'} vCPUs, {plan.memory or 'default'} memory")
    return clean("; ".join(parts), 500)
