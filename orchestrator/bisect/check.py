"""One bisect step for `git bisect run` (`orch check`), in your own checkout.

It tests the commit checked out in the tree (HEAD; uncommitted changes are
not part of it), or BISECT_HEAD in a `git bisect start --no-checkout`: the
build and the boot happen in orch's own worktree, so the checkout git
bisect moves is only read. The same rules and caches as `orch bisect`: a
commit built or booted before costs nothing. Its record is a run.json with
one step, kept in orch's cache, never in your checkout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.bisect import revs
from orchestrator.bisect.judge import BAD, GOOD, SKIP, Mode
from orchestrator.bisect.stepping import Stepper, StepSettings, short
from orchestrator.core import cache_use, paths
from orchestrator.core.errors import BadInput, OrchError
from orchestrator.core.exits import GitBisect
from orchestrator.core.progress import Progress
from orchestrator.kernel import kconfig
from orchestrator.run import options, recording
from orchestrator.run.lifecycle import Lifecycle, Run
from orchestrator.run.record import BisectRecord, RunState, RunVerdict, TreeRecord
from orchestrator.source import tree

# What git bisect run reads: 0 good, 1 bad, 125 skip, 128 or more stops it.
GOOD_RC, BAD_RC, SKIP_RC = GitBisect.GOOD, GitBisect.BAD, GitBisect.SKIP
BAD_INPUT_RC, INFRA_RC, INTERRUPTED_RC = (GitBisect.BAD_INPUT, GitBisect.INFRA,
                                          GitBisect.INTERRUPTED)
RC_OF = {o: GitBisect.of_outcome(o) for o in (GOOD, BAD, SKIP, "old", "new")}


@dataclass
class CheckOptions(options.BootFlags):
    """`orch check`'s options."""
    tree: Path | None = None                # None: the current directory's checkout
    configs: list[str] = field(default_factory=list)   # one at most (the first of a file's)
    mode: Mode = Mode.TEST
    run_dir: Path | None = None


@dataclass(frozen=True)
class _Commit:
    """What is checked: the commit, its tree, the config, what must report."""
    commit: str
    tree: tree.Tree
    kc: kconfig.KConfig
    expected: list[str]


class CheckRun(Run):
    """A check's run directory. Its run.json's exit_code is what git bisect
    run read (0, 1, 125; 128 and above for a check that stopped), as every
    record's exit_code is its command's exit status."""

    def finish(self, code: int, verdict: RunVerdict, error: str | None = None,
               state: RunState = RunState.DONE) -> int:
        answer = verdict.lower() in RC_OF
        return super().finish(RC_OF[verdict.lower()] if answer else GitBisect.of_exit(code),
                              verdict, error, state)


def check(opts: CheckOptions, progress: Progress | None = None) -> int:
    """The library entry point: git's exit status for the checked-out commit
    (GOOD_RC, BAD_RC, SKIP_RC), the record in opts.run_dir (set here when
    not given); any exception for the command to turn into a status that
    stops the bisect (stopped())."""
    what = _resolve(opts)
    opts.run_dir = opts.run_dir or (record_root() / f"{dt.datetime.now():%Y%m%d-%H%M%S}-"
                                    f"{short(what.commit)}")
    if Path(opts.run_dir).parent == record_root():
        cache_use.use("checks", Path(opts.run_dir).name)   # gc leaves a running check's record
    run = CheckRun(opts.run_dir, opts.argv, progress or Progress(), sandbox=opts.sandbox)
    try:
        with Lifecycle(run):
            return _step(run, opts, what)
    finally:
        run.progress.done()


def _resolve(opts: CheckOptions) -> _Commit:
    """The input, checked before any work: a bad one stops the bisect."""
    if opts.repeat <= 0:
        raise BadInput("--repeat must be positive")
    if opts.mode in (Mode.TEST, Mode.FIXED) and not (opts.guest_tests or opts.keyword
                                                      or opts.kselftests or opts.suites):
        raise BadInput("give the guest test(s) with --guest-test ID, -k EXPR, --kselftest "
                       "TARGET[:TEST] or --suite DIR (or --build / --splat)")
    # The tree: --tree, else the checkout git bisect run is in (not the
    # Debian default of `orch test`: a check is always about your tree).
    t = tree.open_tree(opts.tree if opts.tree is not None else Path.cwd())
    # `git bisect start --no-checkout` moves BISECT_HEAD, not HEAD (git's
    # documented way for a run script): nothing in your checkout changes
    # per step, which suits orch, which builds elsewhere anyway.
    commit = (tree.has_commit(t.repo, "BISECT_HEAD")
              or revs.resolve(t.repo, "HEAD", "HEAD of"))
    if len(opts.configs) > 1:
        raise BadInput("a check builds one config: give --config once")
    kc = kconfig.chosen(opts.configs[:1], opts.kconfig, opts.kconfig_add)[0]
    expected = (options.collect(opts.guest_tests, opts.keyword, opts.kselftests, opts.suites)
                if opts.mode != Mode.BUILD else [])
    return _Commit(commit, t, kc, expected)


def _step(run: Run, opts: CheckOptions, what: _Commit) -> int:
    rec, commit, t = run.rec, what.commit, what.tree
    rec.tree = TreeRecord(str(t.repo), t.label, commit, "HEAD of the tree")
    rec.expected_tests, rec.repeat = what.expected, opts.repeat
    rec.cpus, rec.memory = options.guest_machine(opts)
    rec.bisect = BisectRecord(mode=opts.mode.value, terms=[], good=commit, bad=commit,
                              config=what.kc.name, tests=list(opts.guest_tests or []),
                              keyword=opts.keyword, repeat=opts.repeat, commits=1, max_steps=1,
                              cpus=rec.cpus, memory=rec.memory, kconfig=what.kc.spec[1],
                              kconfig_add=list(what.kc.spec[2]) or None,
                              kselftests=list(opts.kselftests) or None,
                              suites=[str(p) for p in opts.suites] or None)
    run.save()
    ws = tree.workspace(t, announce=run.say)
    ws.lock.release()
    stepper = Stepper(ws, what.kc, StepSettings(
        opts.mode, opts.jobs, opts.sandbox, options.boot_settings(opts, what.expected),
        opts.guest_timeout, opts.rerun), run.dir, run.progress, tree_path=t.repo)
    r = stepper.step(commit)
    rec.bisect.steps.append(recording.bisect_step("check", r))
    return run.finish(RC_OF[r.outcome], RunVerdict(r.outcome.upper()), None)


def stopped(e: BaseException) -> int:
    """What git bisect run must read of a check that came to no answer,
    whatever stopped it: a status that stops the bisect (128 bad input, 129
    the infrastructure or a bug in orch, 130 an interrupt), never one it
    would take for good, bad or skip."""
    if isinstance(e, KeyboardInterrupt):
        return INTERRUPTED_RC
    if isinstance(e, OrchError):
        return GitBisect.of_exit(e.exit)
    return INFRA_RC


def record_root() -> Path:
    return paths.checks_dir()
