"""`orch test`: a series, baseline against patched (run.series_run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.commands import common
from orchestrator.core import paths
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
    p.add_argument_group("verdict").add_argument(
        "--expect-fixed", action="append", metavar="ID|GLOB",
        help="a guest test the series is expected to fix: a node id, a file or "
        "file::Class prefix, or a glob (repeatable; 'none': no test). A test that fails "
        "on the baseline too fails the run only when it is one (default: the tests "
        "guest_tests/about.toml ties to the files the series touches)")
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
    p.set_defaults(option_defaults=common.option_defaults(p))


def main(args: argparse.Namespace, argv: list[str]) -> int:
    if args.list_tests:
        return common.list_tests(args)
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
                   tree=s.tree, base=args.base, on=args.on,
                   debian_package=None if s.tree else s.debian_source,  # a --tree needs none
                   configs=common.chosen_configs(args, s.configs), **common.kconfig_options(args),
                   run_dir=args.run_dir, json_out=args.json_out,
                   guest_timeout=s.guest_timeout, guest_tests=args.guest_tests,
                   keyword=args.keyword, expect_fixed=args.expect_fixed,
                   **common.guest_options(args),
                   test_timeout=s.test_timeout, repeat=args.repeat, timeout=s.timeout,
                   cpus=args.cpus, memory=args.memory,
                   each_patch=args.each_patch, build_only=args.build_only, rerun=args.rerun,
                   rerun_baseline=args.rerun_baseline, sandbox=args.sandbox, jobs=s.jobs,
                   argv=["orch", *argv])
    series_run.check_intake(opts)
    # Flags the run would accept and then ignore are refused (issue 27).
    if args.build_only:
        given = common.given_options(args, only=(*common.BOOT_ONLY, "rerun_baseline"))
        if given:
            raise BadInput(f"{', '.join(given)}: --build-only boots nothing")
    if args.debian_source and s.tree:
        raise BadInput("--debian-source names the default tree; with a --tree (or `tree` in "
                       "the config file) it would be ignored")
    opts.msgid = intake.normalize_msgid(args.msgid) if args.msgid else None
    if args.repeat <= 0:
        raise BadInput("--repeat must be positive")
    opts.run_dir = opts.run_dir or default_run_dir(series_label(opts))
    paths.writable_dir(opts.run_dir, "--run-dir" if args.run_dir else "the run directory")
    if args.json_out:
        paths.writable_file(args.json_out, "--json")
    common.checked_cache(s)
    return opts
