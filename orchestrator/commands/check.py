"""`orch check`: one bisect step for `git bisect run` in your own checkout
(bisect.check).

    git bisect start BAD GOOD
    git bisect run orch check --guest-test ID

Its exit status is all that `git bisect run` reads, so it only ever exits
with git's meanings: 0 good, 1 bad, 125 skip, and 128 or more to stop the
bisect (bad input, the infrastructure, an interrupt), whatever raised:
cli.py prints the one line and asks check.stopped for the status.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.bisect import check
from orchestrator.bisect.judge import Mode
from orchestrator.commands import common
from orchestrator.core import exits, paths
from orchestrator.run import lifecycle

NAME = "check"
HELP = "one step of `git bisect run` at the tree's HEAD: 0 good, 1 bad, 125 skip, 128+ stop"

EXIT_STATUSES = exits.epilog(NAME)


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EXIT_STATUSES))
    g = p.add_argument_group("what to check")
    common.add_modes(g, "good when it builds, bad when it does not",
                     "bad when the kernel shows any splat",
                     "passing is new (exit 1), failing old (exit 0): for finding a fix")
    g.add_argument("--run-dir", type=Path, help="where results and logs go (default: "
                   "checks/<time>-<commit> in orch's cache, never in your checkout)")
    common.add_tree(p, series=False)   # the checkout git bisect moves: no base, no Debian
    common.add_build(p, matrix=False)
    common.add_boot(p, baseline=False)
    p.set_defaults(run=main, mode=Mode.TEST, stopped=check.stopped)
    p.set_defaults(option_defaults=common.option_defaults(p))


def main(args: argparse.Namespace, argv: list[str]) -> int:
    # Whatever this raises, cli.py prints one line and exits with
    # check.stopped()'s status (set_defaults above): never one git bisect
    # would take for an answer.
    common.refuse_boot_flags(args)
    if args.list_tests:
        return common.list_tests(args)
    s = common.settings_of(args)
    if args.run_dir:
        paths.writable_dir(args.run_dir, "--run-dir")
    common.checked_cache(s)
    opts = check.CheckOptions(
        tree=args.tree, configs=common.chosen_configs(args, args.configs or s.configs[:1]),
        **common.kconfig_options(args),
        guest_tests=args.guest_tests, mode=args.mode, repeat=args.repeat,
        keyword=args.keyword, cpus=args.cpus, memory=args.memory,
        **common.guest_options(args),
        run_dir=args.run_dir, guest_timeout=s.guest_timeout, test_timeout=s.test_timeout,
        rerun=args.rerun, sandbox=args.sandbox, jobs=s.jobs, argv=["orch", *argv])
    try:
        return check.check(opts)
    finally:
        lifecycle.print_summary(opts.run_dir)
