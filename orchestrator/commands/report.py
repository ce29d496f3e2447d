"""`orch report RUN_DIR`: print a run's summary again, from its run.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core import exits
from orchestrator.reports import html_page
from orchestrator.run import record, summary

NAME = "report"
HELP = "print the summary of a run directory again"
EPILOG = exits.epilog(NAME)


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EPILOG))
    p.add_argument("run_dir", type=Path)
    p.add_argument("--html", action="store_true",
                   help="also write RUN_DIR/report.html (tests, splats, times, the scale "
                   "plots) and print its path")
    p.set_defaults(run=main)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    rec = record.read(args.run_dir / "run.json")
    print(summary.summary(rec))
    if args.html:
        print(f"html: {html_page.write_run_page(rec, args.run_dir)}")
    return summary.conclusion(rec).code
