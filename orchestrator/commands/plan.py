"""`orch plan NIGHTLY.toml --out DIR --format github|gitlab|json`: a night
resolved once and cut into a CI engine's jobs (fanout.planning)."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core import exits, paths
from orchestrator.core.errors import BadInput, Exit
from orchestrator.fanout import jobfiles, planning

NAME = "plan"
HELP = "resolve a night once and write a CI engine's job matrix for it"
EPILOG = exits.epilog(NAME)


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
    # None, not the default itself: given with a --format whose file has no
    # place for it, it is refused (ENGINE_ONLY), not silently dropped.
    p.add_argument("--shared-ccache", choices=("engine", "redis"),
                   help="engine: the engine's cache, filled by baseline jobs only; redis: "
                   "a Redis server, writer credentials for baseline jobs only (README) "
                   f"(default: {SHARED_CCACHE}; --format github or gitlab)")
    p.add_argument("--runs-on", metavar="LABELS",
                   help=f"GitHub runner labels, comma-separated (default: {RUNS_ON}; "
                   "--format github)")
    p.add_argument("--tags", metavar="TAGS",
                   help=f"GitLab runner tags, comma-separated (default: {TAGS}; --format gitlab)")
    common.add_cache(p)
    p.set_defaults(run=main)


RUNS_ON, TAGS, SHARED_CCACHE = "ubuntu-latest", "kvm", "engine"
# The flags only some engines' files have a place for.
ENGINE_ONLY = {"runs_on": ("--runs-on", ("github",)), "tags": ("--tags", ("gitlab",)),
               "shared_ccache": ("--shared-ccache", ("github", "gitlab"))}


def _engine_flags(args: argparse.Namespace) -> None:
    for dest, (flag, formats) in ENGINE_ONLY.items():
        if getattr(args, dest) is not None and args.format not in formats:
            raise BadInput(f"{flag} is for --format {' or '.join(formats)}: the "
                           f"{args.format} plan has no place for it")


def main(args: argparse.Namespace, argv: list[str]) -> int:
    jobfiles.check_group_size(args.group_size)    # before anything is made or asked
    _engine_flags(args)
    paths.writable_dir(args.out, "--out")
    if args.history:
        paths.readable_file(args.history, "--history")
    cfg, night, _ = common.night_args(args)
    labels = [x.strip() for x in (args.runs_on or RUNS_ON).split(",") if x.strip()]
    tags = [x.strip() for x in (args.tags or TAGS).split(",") if x.strip()]
    path = planning.write(cfg, args.out, night, args.format, group_size=args.group_size,
                          history_file=args.history,
                          shared_ccache=args.shared_ccache or SHARED_CCACHE,
                          runs_on=labels[0] if len(labels) == 1 else labels, tags=tags)
    planning.announce(args.out, night)
    print(path)
    return int(Exit.OK)
