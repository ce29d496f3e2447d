"""`orch job PLAN_DIR JOB --out SHARD`: one job of a planned night, on a CI
runner (fanout.job_run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core import exits, paths
from orchestrator.core.errors import BadInput
from orchestrator.fanout import job_run, jobfiles

NAME = "job"
HELP = "run one job of a planned night (orch plan) on this machine"
EPILOG = exits.epilog(NAME)


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EPILOG))
    p.add_argument("plan", type=Path, metavar="PLAN_DIR")
    p.add_argument("job", metavar="JOB", help="a job name from the plan's jobs.json")
    p.add_argument("--out", type=Path, required=True, metavar="SHARD",
                   help="this job's run directory (what the engine uploads)")
    p.add_argument("--import", dest="imports", type=Path, action="append", default=[],
                   metavar="DIR", help="this series job's baseline job's shard (its --out): "
                   "the kernel and kept results it exported (SHARD/export/) are imported, "
                   "nothing else; repeatable")
    p.add_argument("--tree", dest="trees", action="append", default=[], metavar="LABEL=PATH",
                   help="where this runner has a git tree of the plan (default: the path "
                   "the plan names)")
    common.add_cache(p)
    p.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                   help="build and boot without the curated view")
    p.set_defaults(run=main)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    paths.readable_dir(args.plan, "PLAN_DIR")
    where = _trees(args)
    paths.writable_dir(args.out, "--out")
    for shard in args.imports:
        paths.readable_dir(shard, "--import")
    machine = common.machine_settings(args)
    out = args.out.expanduser().resolve()
    code = job_run.run_job(args.plan, args.job, out, args.imports, where, sandbox=args.sandbox,
                           machine=machine)
    print(_result(out))
    return code


def _trees(args: argparse.Namespace) -> dict[str, Path]:
    """--tree LABEL=PATH by label. A flag the job would ignore is refused:
    a label the plan lacks (a typo would leave the job looking for the
    planned path), --import for a job that imports nothing."""
    plan, jobs = jobfiles.read_plan_dir(args.plan)
    job = jobs.get(args.job)
    if args.imports and job.kind != "series":
        raise BadInput(f"--import is for a series job; {job.id} is a {job.kind} job")
    labels = [t.label for t in plan.trees]
    where = {}
    for spec in args.trees:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise BadInput(f"--tree {spec!r}: give LABEL=PATH")
        if label not in labels:
            raise BadInput(f"--tree {spec!r}: the plan has no tree {label!r} (its trees: "
                           f"{', '.join(labels)})")
        where[label] = Path(path).expanduser().resolve()
    return where


def _result(out: Path) -> str:
    """The job's one line on stdout: what ran, and where its shard is."""
    rec = jobfiles.read_job(out)
    j = rec.job
    what = (f"{len(j.series)} series" if j.kind == "series" else
            f"{len(rec.exported)} exported") + f" on {j.tree} / {j.config}"
    return f"job {j.id}: {rec.state} ({j.kind} job, {what}); shard: {out}"
