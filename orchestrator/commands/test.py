"""`orch test`: a series, baseline against patched (run.series_run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core.errors import BadInput, Exit
from orchestrator.run import lifecycle, series_run, settings
from orchestrator.run.options import Options, default_run_dir, series_label
from orchestrator.source import intake

NAME = "test"
HELP = "test a series: baseline vs patched"


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".", **common.parser_kwargs())
    p.add_argument("msgid", nargs="?", help="Message-ID (or lore URL) of any mail of the series")
    common.add_intake(p)
    common.add_tree(p)
    p.add_argument("--on", metavar="COMMIT", help="apply the series on exactly this commit of "
                   "the tree, whatever base-commit it names (what orch nightly does)")
    common.add_build(p)
    common.add_boot(p)
    g = p.add_argument_group("this run")
    g.add_argument("--run-dir", type=Path, help="where results and logs go "
                   "(default: orch-runs/<time>-<msgid>)")
    g.add_argument("--json", type=Path, dest="json_out", help="also write run.json here")
    g.add_argument("--timeout", type=float,
                   help="seconds for the whole run (default: none)")
    g.add_argument("--each-patch", action="store_true",
                   help="also build after every patch of the series and name the first "
                   "one that breaks the build")
    g.add_argument("--build-only", action="store_true",
                   help="stop after the builds (and the warning diff): no boots")
    g.add_argument("--print-config", action="store_true",
                   help="print the effective settings and where each comes from, then exit")
    p.set_defaults(run=main)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    s = common.settings_of(args)
    if args.print_config:
        print(settings.format_effective(s.effective))
        return int(Exit.OK)
    opts = options(args, argv, s)
    try:
        return series_run.test(opts)
    finally:
        lifecycle.print_summary(opts.run_dir)


def options(args: argparse.Namespace, argv: list[str], s: settings.Settings) -> Options:
    """The run the flags and settings ask for; a bad combination stops here."""
    opts = Options(msgid=args.msgid, mbox=args.mbox, range=args.range, lore_url=s.lore_url,
                   lore_timeout=s.lore_timeout, offline=args.offline, latest=args.latest,
                   tree=s.tree, base=args.base, on=args.on, debian_package=s.debian_source,
                   configs=list(s.configs), run_dir=args.run_dir, json_out=args.json_out,
                   guest_timeout=s.guest_timeout, guest_tests=args.guest_tests,
                   test_timeout=s.test_timeout, repeat=args.repeat, timeout=s.timeout,
                   each_patch=args.each_patch, build_only=args.build_only, rerun=args.rerun,
                   rerun_baseline=args.rerun_baseline, sandbox=args.sandbox, jobs=s.jobs,
                   argv=["orch", *argv])
    series_run.check_intake(opts)
    opts.msgid = intake.normalize_msgid(args.msgid) if args.msgid else None
    if args.repeat <= 0:
        raise BadInput("--repeat must be positive")
    opts.run_dir = opts.run_dir or default_run_dir(series_label(opts))
    return opts
