"""`orch plan NIGHTLY.toml --out DIR --format github|gitlab|json`: a night
resolved once and cut into a CI engine's jobs (fanout.planning)."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core.errors import Exit
from orchestrator.fanout import jobfiles, planning

NAME = "plan"
HELP = "resolve a night once and write a CI engine's job matrix for it"
EPILOG = """\
exit status:
  0    the plan and the engine's file are written (problems, if any, are
       printed and kept in plan.json; orch merge reports them)
  2    a bad NIGHTLY.toml, flag or plan directory"""


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EPILOG))
    p.add_argument("file", type=Path, metavar="NIGHTLY.toml")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="the plan directory (give it relative to the repository root: the "
                   "engine's file names it so)")
    p.add_argument("--format", choices=sorted(planning.FILES), default="json",
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
    path = planning.write(cfg, args.out, night, args.format, group_size=args.group_size,
                          history_file=args.history, shared_ccache=args.shared_ccache,
                          runs_on=labels[0] if len(labels) == 1 else labels, tags=tags)
    planning.announce(args.out, night)
    print(path)
    return int(Exit.OK)
