"""`orch check`: one bisect step for `git bisect run` in your own checkout.

    git bisect start BAD GOOD
    git bisect run orch check --guest-test ID

It tests the commit checked out in the tree (HEAD; uncommitted changes are
not part of it), or BISECT_HEAD in a `git bisect start --no-checkout`: the build and the boot happen in orch's own worktree, so
the checkout git bisect moves is only read. Its exit status is all that
`git bisect run` reads, so it only ever exits with git's meanings: 0 good,
1 bad, 125 skip, and 128 or more to stop the bisect (bad input, the
infrastructure, an interrupt). The same rules and caches as `orch bisect`:
a commit built or booted before costs nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestrator.bisect import revs
from orchestrator.bisect.judge import BAD, GOOD, SKIP, Mode
from orchestrator.bisect.stepping import Stepper, StepSettings, short
from orchestrator.commands import common
from orchestrator.commands.test import Run
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.progress import Progress
from orchestrator.guest import selection
from orchestrator.kernel import kconfig
from orchestrator.run import recording
from orchestrator.run.boots import BootSettings
from orchestrator.run.record import BisectRecord, TreeRecord
from orchestrator.source import tree

NAME = "check"
HELP = "one step of `git bisect run` at the tree's HEAD: 0 good, 1 bad, 125 skip, 128+ stop"

GOOD_RC, BAD_RC, SKIP_RC = 0, 1, 125
BAD_INPUT_RC, INFRA_RC, INTERRUPTED_RC = 128, 129, 130

EXIT_STATUSES = """\
exit status (what git bisect run reads):
  0    good: every selected test passed (--build: it builds; --splat: no splat)
  1    bad: a selected test failed or errored, or the kernel died in one
       (--fixed swaps 0 and 1, as `git bisect start --term-old broken --term-new fixed`)
  125  skip: the commit does not build, or its kernel never reached the tests twice
  128  bad input (the bisect stops): no such tree or config, a selection that matches nothing
  129  infrastructure (the bisect stops): QEMU, the host
  130  interrupted"""


@dataclass
class _Where:
    """What Run reads of a command's options."""
    run_dir: Path
    argv: list[str]
    timeout: float | None = None
    json_out: Path | None = None
    sandbox: bool = True


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
        return _main(args, argv)
    except OrchError as e:
        print(f"orch: error: {e}", file=sys.stderr)
        return BAD_INPUT_RC if e.exit == Exit.BAD_INPUT else INFRA_RC
    except KeyboardInterrupt:
        print("orch: interrupted", file=sys.stderr)
        return INTERRUPTED_RC


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    eff = common.settings_of(args)
    val = {k: s.value for k, s in eff.items()}
    if args.repeat <= 0:
        raise BadInput("--repeat must be positive")
    mode = args.mode
    if mode in (Mode.TEST, Mode.FIXED) and not args.guest_tests:
        raise BadInput("give the guest test(s) with --guest-test ID (or --build / --splat)")
    # The tree: --tree, else the checkout git bisect run is in (not the
    # Debian default of `orch test`: a check is always about your tree).
    t = tree.open_tree(args.tree if args.tree is not None else Path.cwd())
    # `git bisect start --no-checkout` moves BISECT_HEAD, not HEAD (git's
    # documented way for a run script): nothing in your checkout changes
    # per step, which suits orch, which builds elsewhere anyway.
    commit = (tree.has_commit(t.repo, "BISECT_HEAD")
              or revs.resolve(t.repo, "HEAD", "HEAD of"))
    configs = list(val["configs"] or [])
    if args.configs and len(args.configs) > 1:
        raise BadInput("a check builds one config: give --config once")
    kc = kconfig.load(configs[0] if configs else kconfig.default_matrix()[0])
    expected = selection.collect(args.guest_tests) if mode != Mode.BUILD else []
    run_dir = args.run_dir or (record_root() / f"{dt.datetime.now():%Y%m%d-%H%M%S}-"
                               f"{short(commit)}")

    run = Run(_Where(run_dir, ["orch", *argv], sandbox=args.sandbox), Progress())
    try:
        rec = run.rec
        rec.tree = TreeRecord(str(t.repo), t.label, commit, "HEAD of the tree")
        rec.expected_tests, rec.repeat = expected, args.repeat
        rec.bisect = BisectRecord(mode.value, [], commit, commit, kc.name,
                                  list(args.guest_tests or []), args.repeat, 1, 1)
        run.save()
        ws = tree.workspace(t, announce=run.say)
        ws.lock.release()
        stepper = Stepper(ws, kc, StepSettings(
            mode, val["jobs"], args.sandbox,
            BootSettings(args.guest_tests, expected, val["test_timeout"], args.repeat),
            val["guest_timeout"], args.rerun), run.dir, run.progress)
        r = stepper.step(commit)
        rec.bisect.steps.append(recording.bisect_step("check", r))
        rc = {GOOD: GOOD_RC, BAD: BAD_RC, SKIP: SKIP_RC, "old": GOOD_RC,
              "new": BAD_RC}[r.outcome]
        print(f"orch check: {short(commit)} {r.subject[:60]}: {r.outcome} ({r.reason}); "
              f"build {r.build}, boot {r.boot or '-'}; run directory {run.dir}",
              file=sys.stderr)
        run.finish(Exit.OK, r.outcome.upper(), None)
        return rc
    except OrchError as e:
        run.finish(e.exit, "BAD-INPUT" if e.exit == Exit.BAD_INPUT else "INFRA-ERROR", str(e))
        raise
    except KeyboardInterrupt:
        run.finish(Exit.INTERRUPTED, "INTERRUPTED", "interrupted", state="interrupted")
        raise
    finally:
        run.progress.done()


def record_root() -> Path:
    from orchestrator.core.paths import cache_dir
    return cache_dir() / "checks"

