"""`orch check`: one bisect step for `git bisect run` in your own checkout
(bisect.check).

    git bisect start BAD GOOD
    git bisect run orch check --guest-test ID

Its exit status is all that `git bisect run` reads, so it only ever exits
with git's meanings: 0 good, 1 bad, 125 skip, and 128 or more to stop the
bisect (bad input, the infrastructure, an interrupt).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.bisect import check
from orchestrator.bisect.judge import Mode
from orchestrator.commands import common
from orchestrator.core.errors import OrchError

NAME = "check"
HELP = "one step of `git bisect run` at the tree's HEAD: 0 good, 1 bad, 125 skip, 128+ stop"

EXIT_STATUSES = """\
exit status (what git bisect run reads):
  0    good: every selected test passed (--build: it builds; --splat: no splat)
  1    bad: a selected test failed or errored, or the kernel died in one
       (--fixed swaps 0 and 1, as `git bisect start --term-old broken --term-new fixed`)
  125  skip: the commit does not build, or its kernel never reached the tests twice
  128  bad input (the bisect stops): no such tree or config, a selection that matches nothing
  129  infrastructure (the bisect stops): QEMU, the host
  130  interrupted"""


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EXIT_STATUSES))
    g = p.add_argument_group("what to check")
    common.add_modes(g, "good when it builds, bad when it does not",
                     "bad when the kernel shows any splat",
                     "passing is new (exit 1), failing old (exit 0): for finding a fix")
    g.add_argument("--run-dir", type=Path, help="where results and logs go (default: "
                   "checks/<time>-<commit> in orch's cache, never in your checkout)")
    common.add_tree(p)
    common.add_build(p)
    common.add_boot(p, baseline=False)
    p.set_defaults(run=main, mode=Mode.TEST)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        s = common.settings_of(args)
        return check.check(check.CheckOptions(
            tree=args.tree, configs=list(args.configs or s.configs[:1]),
            guest_tests=args.guest_tests, mode=args.mode, repeat=args.repeat,
            run_dir=args.run_dir, guest_timeout=s.guest_timeout, test_timeout=s.test_timeout,
            rerun=args.rerun, sandbox=args.sandbox, jobs=s.jobs, argv=["orch", *argv]))
    except OrchError as e:
        print(f"orch: error: {e}", file=sys.stderr)
        return check.stopped(e)
    except KeyboardInterrupt as e:
        print("orch: interrupted", file=sys.stderr)
        return check.stopped(e)
