"""`orch bisect`: the first commit that broke (or fixed) a guest test, the
build, or the kernel (bisect.search)."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.bisect import search
from orchestrator.bisect.judge import Mode
from orchestrator.commands import common
from orchestrator.core import exits, paths
from orchestrator.core.errors import BadInput, Exit
from orchestrator.run import lifecycle, settings
from orchestrator.source import intake

NAME = "bisect"
HELP = "find the commit that broke (or fixed) a guest test, the build, or the kernel"

EXIT_STATUSES = exits.epilog(NAME)


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EXIT_STATUSES))
    p.add_argument("msgid", nargs="?", help="bisect over this series' patches on its base "
                   "(Message-ID or lore URL; or --mbox)")
    g = p.add_argument_group("what to bisect")
    g.add_argument("--good", help="a commit where the tests pass (with --fixed too)")
    g.add_argument("--bad", help="a commit where they fail (default: the tree's HEAD)")
    common.add_modes(g, "the first commit that does not build",
                     "the first commit whose kernel shows a splat the good end's does not",
                     "the first commit where the tests pass (--bad is the older end)")
    g.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="go on with an interrupted bisect from its run directory")
    g.add_argument("--run-dir", type=Path, help="where results and logs go "
                   "(default: orch-runs/<time>-bisect-<what>)")
    common.add_intake(p, with_range=False)   # a tree's commits: --good and --bad
    common.add_tree(p)
    common.add_build(p, matrix=False)
    common.add_boot(p, baseline=False)
    g.add_argument("--print-config", action="store_true",
                   help="print the effective settings and where each comes from, then exit")
    p.set_defaults(run=main, mode=Mode.TEST)
    p.set_defaults(option_defaults=common.option_defaults(p))


# What may be given again beside --resume: how this machine goes on (make's
# jobs, where the cache is, how long a boot or a test may take, the sandbox,
# booting kept results again), which run.json does not keep. What is
# bisected (the ends, the series, the tree, the config, the tests and their
# selection, the mode, --repeat) is the record's: a flag for it would be
# ignored, so it is refused.
RESUMABLE = ("resume", "jobs", "cache", "guest_timeout", "test_timeout", "sandbox", "rerun",
             "print_config")


def main(args: argparse.Namespace, argv: list[str]) -> int:
    _resume_alone(args)
    common.refuse_boot_flags(args)
    _series_flags(args)
    if args.list_tests:
        return common.list_tests(args)
    s = common.settings_of(args)
    if args.print_config:
        print(settings.format_effective(s.effective))
        return int(Exit.OK)
    opts = options(args, argv, s)
    try:
        return search.bisect(opts)
    finally:
        lifecycle.print_summary(opts.run_dir)


def _resume_alone(args: argparse.Namespace) -> None:
    if args.resume is None:
        return
    ignored = common.given_options(args, RESUMABLE)
    if ignored:
        allowed = ", ".join(g.flag for g in args.option_defaults
                            if g.dest in RESUMABLE and g.dest != "resume")
        raise BadInput(f"--resume goes on with the bisect as its run.json says: "
                       f"{', '.join(ignored)} cannot change it (beside --resume: {allowed})")


# What only fetching or applying a series uses.
SERIES_ONLY = ("lore_url", "lore_timeout", "offline", "latest", "base")


def _series_flags(args: argparse.Namespace) -> None:
    """--good/--bad bisect the tree's own commits: a series' flags would be
    ignored, so they are refused."""
    if args.msgid or args.mbox or args.resume:
        return
    given = common.given_options(args, only=SERIES_ONLY)
    if given:
        raise BadInput(f"{', '.join(given)}: for a series (a Message-ID or --mbox); "
                       "--good/--bad bisect the tree's own commits")


def options(args: argparse.Namespace, argv: list[str], s: settings.Settings) -> search.Options:
    if args.repeat <= 0:
        raise BadInput("--repeat must be positive")
    if args.configs and len(args.configs) > 1:
        raise BadInput("a bisect follows one config: give --config once")
    if args.debian_source and s.tree is not None:
        raise BadInput(f"--debian-source picks the default tree, and the tree is {s.tree} "
                       f"({s.effective['tree'].source}): give one or the other")
    if args.resume:
        paths.writable_dir(paths.readable_dir(args.resume, "--resume"), "--resume")
    elif args.run_dir:
        paths.writable_dir(args.run_dir, "--run-dir")
    common.checked_cache(s)
    return search.Options(
        good=args.good, bad=args.bad,
        msgid=intake.normalize_msgid(args.msgid) if args.msgid else None,
        mbox=args.mbox, lore_url=s.lore_url, lore_timeout=s.lore_timeout,
        offline=args.offline, latest=args.latest, tree=s.tree, base=args.base,
        debian_package=s.debian_source, config=next(iter(common.chosen_configs(args, s.configs)), None),
        **common.kconfig_options(args),
        guest_tests=args.guest_tests, mode=args.mode, repeat=args.repeat,
        keyword=args.keyword, cpus=args.cpus, memory=args.memory,
        **common.guest_options(args),
        resume=args.resume, run_dir=args.resume or args.run_dir,
        guest_timeout=s.guest_timeout, test_timeout=s.test_timeout,
        rerun=args.rerun, sandbox=args.sandbox, jobs=s.jobs, argv=["orch", *argv])
