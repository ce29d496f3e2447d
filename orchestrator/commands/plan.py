"""`orch plan NIGHTLY.toml --out DIR --format github|gitlab|json`: a night
resolved once and cut into a CI engine's jobs.

DIR gets what every job needs and nothing machine-local: plan.json (the
series revisions and tree commits, pinned), series/ (each revision's mbox,
as lore gave it tonight), jobs.json (fanout.cut) and the engine's file
(workflow.yml for GitHub Actions, pipeline.yml for a GitLab child pipeline).
The engine runs `orch job DIR JOB` on its runners and `orch merge` at the
end; see fanout and ci_files.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core.errors import BadInput, Exit
from orchestrator.core.progress import Progress
from orchestrator.fanout import ci_files, jobfiles
from orchestrator.nightly import history
from orchestrator.nightly import night as nightrec

NAME = "plan"
HELP = "resolve a night once and write a CI engine's job matrix for it"
EPILOG = """\
exit status:
  0    the plan and the engine's file are written (problems, if any, are
       printed and kept in plan.json; orch merge reports them)
  2    a bad NIGHTLY.toml, flag or plan directory"""
FILES = {"github": "workflow.yml", "gitlab": "pipeline.yml", "json": jobfiles.JOBS_FILE}


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EPILOG))
    p.add_argument("file", type=Path, metavar="NIGHTLY.toml")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="the plan directory (give it relative to the repository root: the "
                   "engine's file names it so)")
    p.add_argument("--format", choices=sorted(FILES), default="json",
                   help="github: a workflow; gitlab: a child pipeline; json: jobs.json only "
                   "(default: %(default)s)")
    p.add_argument("--night", help="the night's date, YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--group-size", type=int, default=jobfiles.DEFAULT_GROUP, metavar="N",
                   help="series per job (default: %(default)s)")
    p.add_argument("--history", type=Path, metavar="FILE",
                   help="the nightly's history.sqlite (what the merge writes): series tested "
                   "on earlier nights are not new, trees that moved say from where")
    p.add_argument("--shared-ccache", choices=("engine", "redis"), default="engine",
                   help="engine: the engine's cache, filled by baseline jobs only; redis: "
                   "a Redis server, writer credentials for baseline jobs only (README)")
    p.add_argument("--runs-on", default="ubuntu-latest", metavar="LABELS",
                   help="GitHub runner labels, comma-separated (default: %(default)s)")
    p.add_argument("--tags", default="kvm", metavar="TAGS",
                   help="GitLab runner tags, comma-separated (default: %(default)s)")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="where orch keeps trees (default: $ORCH_CACHE, else ~/.cache/orch)")
    p.set_defaults(run=main)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    cfg, night = common.night_args(args)
    labels = [x.strip() for x in args.runs_on.split(",") if x.strip()]
    tags = [x.strip() for x in args.tags.split(",") if x.strip()]
    path = write(cfg, args.out, night, args.format, group_size=args.group_size,
                 history_file=args.history, shared_ccache=args.shared_ccache,
                 runs_on=labels[0] if len(labels) == 1 else labels, tags=tags)
    plan, jobs = jobfiles.read_plan_dir(args.out)
    for p in plan.problems:
        print(f"orch: plan: {p}", file=sys.stderr)
    print(f"night {night}: {len(plan.series)} series x {len(plan.trees)} trees x "
          f"{len(plan.configs)} configs: {sum(j.kind == 'baseline' for j in jobs.jobs)} "
          f"baseline jobs, {sum(j.kind == 'series' for j in jobs.jobs)} series jobs",
          file=sys.stderr)
    print(path)
    return int(Exit.OK)


def write(cfg, out: Path, night: str, fmt: str, *, group_size: int = jobfiles.DEFAULT_GROUP,
          history_file: Path | None = None, shared_ccache: str = "engine",
          runs_on: str | list[str] = "ubuntu-latest", tags: list[str] | None = None,
          progress: Progress | None = None) -> Path:
    """The library entry point: plan (once: a directory that has this
    night's plan keeps it) and write the engine's file; its path."""
    if fmt not in FILES:
        raise BadInput(f"--format {fmt}: not one of {', '.join(sorted(FILES))}")
    out.mkdir(parents=True, exist_ok=True)
    if (out / nightrec.PLAN_FILE).exists():
        plan = nightrec.read_plan(out)
        if plan.night != night:
            raise BadInput(f"{out} holds the plan of the night {plan.night}, not {night}: "
                           "give another --out")
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
