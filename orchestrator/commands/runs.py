"""`orch runs [DIR ...]`: the past runs under each DIR (default orch-runs)
and orch check's records in the cache, newest first, one line each
(reports.runs_list); `orch report ID` takes back the id each line starts with."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core import exits, paths
from orchestrator.reports import runs_list

NAME = "runs"
HELP = "list past runs, newest first"
EPILOG = exits.epilog(NAME)
DEFAULT_DIR = runs_list.DEFAULT_DIR
LIMIT = 20


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ", one line each: its id (what "
                       "`orch report ID` takes;\na unique prefix is enough), when it started, "
                       "its verdict, exit status and duration,\nand what it tested.",
                       **common.parser_kwargs(EPILOG))
    p.add_argument("dirs", nargs="*", type=Path, metavar="DIR",
                   help="directories to look for run directories in, to 6 levels down (a "
                   f"nightly's --out holds its cells) (default: {DEFAULT_DIR}, where orch "
                   "test and orch bisect put their runs); orch check's records in the cache "
                   "are always listed")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list instead, one object a run: id, dir, kind, started, "
                   "finished, what, verdict, exit, state, seconds, duration")
    p.add_argument("--limit", type=_count, default=LIMIT, metavar="N",
                   help="list the newest N runs (default: %(default)s)")
    p.add_argument("--all", action="store_true",
                   help="list every run (default: the newest --limit)")
    common.add_cache(p)
    p.set_defaults(run=main)


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"wants a positive whole number, not {text!r}")
    return n


def main(args: argparse.Namespace, argv: list[str]) -> int:
    for d in args.dirs:
        paths.readable_dir(d, "DIR")
    dirs = args.dirs or [DEFAULT_DIR]
    common.settings_of(args)          # the cache: --cache, ORCH_CACHE or the config file
    checks = paths.checks_dir()
    found = runs_list.scan(runs_list.tops(dirs, checks))
    for note in found.notes + [s.note() for s in found.skipped]:
        print(f"orch runs: {note}", file=sys.stderr)
    shown = found.runs if args.all else found.runs[:args.limit]
    if args.json:
        print(json.dumps([r.as_json() for r in shown], indent=2))
    elif shown:
        ids = [r.id for r in found.runs] + [s.id for s in found.skipped]
        print("\n".join(runs_list.lines(shown, ids)))
    if not found.runs:
        where = ", ".join(str(d) for d in dirs)
        print(f"no runs under {where}, and no checks in {checks}",
              file=sys.stderr if args.json else sys.stdout)
    elif len(shown) < len(found.runs):
        print(f"orch runs: {len(found.runs) - len(shown)} older runs not shown (--all lists "
              "every run)", file=sys.stderr)
    return 0

