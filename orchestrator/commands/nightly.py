"""`orch nightly NIGHTLY.toml`: the nightly CI job on one machine
(fanout.nightly_run): tonight's plan, every cell, what changed, the reports."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core import exits, paths
from orchestrator.fanout import nightly_run

NAME = "nightly"
HELP = "the nightly CI job: newest revisions and new series against the newest trees"
EPILOG = exits.epilog(NAME)


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EPILOG))
    p.add_argument("file", type=Path, metavar="NIGHTLY.toml")
    p.add_argument("--out", type=Path, default=Path("orch-nightly"),
                   help="the history and the nights' directories (default: %(default)s)")
    p.add_argument("--night", help="the night's date, YYYY-MM-DD (default: today, UTC); "
                   "a night that exists is finished, following its stored plan")
    common.add_cache(p)
    p.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                   help="build and boot without the curated view (never for mailing-list "
                   "series on a machine with secrets)")
    p.set_defaults(run=main)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    paths.writable_dir(args.out, "--out")
    cfg, night, machine = common.night_args(args)
    out = args.out.expanduser().resolve()
    code = nightly_run.run_night(cfg, out, night, sandbox=args.sandbox, machine=machine)
    ndir = out / "nights" / night
    if (ndir / "summary.txt").exists():
        print((ndir / "summary.txt").read_text(), end="")
    print(f"night directory: {ndir}")
    return code
