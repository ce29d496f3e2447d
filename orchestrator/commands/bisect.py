"""`orch bisect`: the first commit that broke (or fixed) a guest test, the
build, or the kernel (bisect.search)."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.bisect import search
from orchestrator.bisect.judge import Mode
from orchestrator.commands import common
from orchestrator.core.errors import BadInput, Exit
from orchestrator.run import lifecycle, settings
from orchestrator.source import intake

NAME = "bisect"
HELP = "find the commit that broke (or fixed) a guest test, the build, or the kernel"

EXIT_STATUSES = """\
exit status:
  0    found: the first bad (or first fixed) commit, confirmed by booting it and its parent again
  2    bad input: unknown refs, good not an ancestor of bad, a selection that matches
       nothing, or an end that is not what it is said to be (which one is printed)
  3    inconclusive: only skipped commits are left (the candidates are listed), or the
       confirmation boots disagreed with the bisect
  5    infrastructure: QEMU, the host, a broken build of orch's own making
  130  interrupted; `orch bisect --resume RUN_DIR` goes on from where it stopped"""


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
    common.add_intake(p)
    common.add_tree(p)
    common.add_build(p)
    common.add_boot(p, baseline=False)
    g.add_argument("--print-config", action="store_true",
                   help="print the effective settings and where each comes from, then exit")
    p.set_defaults(run=main, mode=Mode.TEST)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    s = common.settings_of(args)
    if args.print_config:
        print(settings.format_effective(s.effective))
        return int(Exit.OK)
    opts = options(args, argv, s)
    try:
        return search.bisect(opts)
    finally:
        lifecycle.print_summary(opts.run_dir)


def options(args: argparse.Namespace, argv: list[str], s: settings.Settings) -> search.Options:
    if args.repeat <= 0:
        raise BadInput("--repeat must be positive")
    if args.configs and len(args.configs) > 1:
        raise BadInput("a bisect follows one config: give --config once")
    return search.Options(
        good=args.good, bad=args.bad,
        msgid=intake.normalize_msgid(args.msgid) if args.msgid else None,
        mbox=args.mbox, lore_url=s.lore_url, lore_timeout=s.lore_timeout,
        offline=args.offline, latest=args.latest, tree=s.tree, base=args.base,
        debian_package=s.debian_source, config=s.configs[0] if s.configs else None,
        guest_tests=args.guest_tests, mode=args.mode, repeat=args.repeat,
        resume=args.resume, run_dir=args.resume or args.run_dir,
        guest_timeout=s.guest_timeout, test_timeout=s.test_timeout,
        rerun=args.rerun, sandbox=args.sandbox, jobs=s.jobs, argv=["orch", *argv])
