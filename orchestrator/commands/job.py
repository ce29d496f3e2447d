"""`orch job PLAN_DIR JOB --out SHARD`: one job of a planned night, on a CI
runner (fanout.job_run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core.errors import BadInput
from orchestrator.fanout import job_run

NAME = "job"
HELP = "run one job of a planned night (orch plan) on this machine"
EPILOG = """\
exit status:
  0    the job ran (a series job: every cell has its run directory; what
       the cells found is orch merge's to judge)
  2    a bad plan directory, job name or flag
  5    the baseline did not build or boot, or the tree is not here
  130  interrupted"""


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
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="where orch keeps trees, kernels and kept results (default: "
                   "$ORCH_CACHE, else ~/.cache/orch)")
    p.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                   help="build and boot without the curated view")
    p.set_defaults(run=main)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    common.use_cache(args.cache)
    where = {}
    for spec in args.trees:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise BadInput(f"--tree {spec!r}: give LABEL=PATH")
        where[label] = Path(path).expanduser().resolve()
    return job_run.run_job(args.plan, args.job, args.out.expanduser().resolve(), args.imports,
                           where, sandbox=args.sandbox)
