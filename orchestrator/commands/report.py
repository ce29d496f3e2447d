"""`orch report RUN`: print a run's summary again, from its run.json. RUN is
a run directory, or an id `orch runs` printed (reports.runs_list)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core import exits, paths
from orchestrator.reports import html_page, mail_reply, runs_list
from orchestrator.run import record, settings, summary
from orchestrator.run.record import RunRecord

NAME = "report"
HELP = "print the summary of a run again (its directory, or its id in `orch runs`)"
EPILOG = exits.epilog(NAME)


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EPILOG))
    p.add_argument("run_dir", type=Path, metavar="RUN",
                   help="a run directory, or the id `orch runs` lists it by (a unique "
                   "prefix of the id is enough)")
    p.add_argument("--runs", action="append", type=Path, metavar="DIR",
                   help="where an id is looked up, as `orch runs DIR` lists it "
                   "(repeatable; default: orch-runs), besides orch check's records in the "
                   "cache")
    common.add_cache(p)
    p.add_argument("--html", action="store_true",
                   help="also write report.html in the run's directory (tests, splats, "
                   "times, the scale plots) and print its path")
    p.add_argument("--mail", nargs="?", const="", metavar="FILE",
                   help="also write a reply to the series' thread for its mailing list "
                   "(RFC 822, for git send-email or your mailer; orch never sends it): "
                   "FILE, or - to print it instead of the summary (default: no reply; "
                   "--mail alone: RUN/reply.eml)")
    p.set_defaults(run=main)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    run_dir, rec = _run(args)
    if args.mail is not None:
        sender = settings.mail_sender(common.settings_of(args))
        if sender is None:
            print(f"orch: warning: no sender (mail_from in config.toml, or git's user.email): "
                  f"the reply is from {mail_reply.PLACEHOLDER}, without Tested-by; edit it "
                  "before sending", file=sys.stderr)
        if args.mail == "-":
            # The reply alone on stdout, for a pipe into a mailer.
            sys.stdout.flush()
            sys.stdout.buffer.write(mail_reply.render(rec, run_dir, sender))
            sys.stdout.buffer.flush()
            return summary.conclusion(rec).code
        reply = mail_reply.write(rec, run_dir, sender, Path(args.mail) if args.mail else None)
    print(summary.summary(rec))
    if args.html:
        print(f"html: {html_page.write_run_page(rec, run_dir)}")
    if args.mail is not None:
        print(f"mail: {reply}")
    return summary.conclusion(rec).code


def _run(args: argparse.Namespace) -> tuple[Path, RunRecord]:
    """RUN as a path, as it always was, when there is one by that name;
    else an id looked up among the runs `orch runs` lists (never a path
    joined onto theirs: an id cannot reach outside them)."""
    if os.path.lexists(args.run_dir):
        return args.run_dir, record.read(args.run_dir / "run.json")
    common.settings_of(args)          # the cache, for its checks
    run = runs_list.resolve(str(args.run_dir), runs_list.tops(
        args.runs or [runs_list.DEFAULT_DIR], paths.checks_dir()))
    return run.dir, run.record
