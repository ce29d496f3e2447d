"""`orch merge SHARD... --out DIR`: one night from a CI engine's shards
(fanout.merging), finished as `orch nightly` finishes one."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core import exits, paths
from orchestrator.fanout import merging

NAME = "merge"
HELP = "merge a planned night's shards (orch job) into one night"
EPILOG = exits.epilog(NAME)


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EPILOG))
    p.add_argument("shards", nargs="*", type=Path, metavar="SHARD",
                   help="the jobs' run directories (orch job --out)")
    p.add_argument("--out", type=Path, default=Path("orch-nightly"),
                   help="the history and the nights' directories (default: %(default)s)")
    p.add_argument("--plan", type=Path, metavar="PLAN_DIR",
                   help="the plan the jobs ran (default: the one the shards carry); with it, "
                   "a night whose every shard is lost is still reported")
    p.set_defaults(run=main)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    paths.writable_dir(args.out, "--out")
    if args.plan:
        paths.readable_dir(args.plan, "--plan")
    out = args.out.expanduser().resolve()
    code = merging.merge(args.shards, out, args.plan)
    summary = out / "latest" / "summary.txt"   # the night just merged (night_finish)
    if summary.exists():
        print(summary.read_text(), end="")
    return code
