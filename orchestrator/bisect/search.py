"""The bisect: the first commit that breaks (or fixes) the selected guest
tests, the build, or the kernel (a new splat), with git bisect doing the
bookkeeping in a worktree of orch's own (revs.GitBisect).

The bisect owns its run record, like `orch test`: every step goes into
run.json, and git's log into bisect.log, before the next one starts, so an
interrupted bisect resumes from its run directory (--resume) and
`git bisect replay bisect.log` reproduces it anywhere.

Order: resolve and check the input (status 2 before any work), verify both
ends (a good end that is not good stops with 2, saying which), bisect, then
boot the first bad commit and its parent once more to confirm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from orchestrator.bisect import revs
from orchestrator.bisect.judge import BAD, GOOD, Mode
from orchestrator.bisect.stepping import (
    Stepper,
    StepResult,
    StepSettings,
    crash_of,
    short,
)
from orchestrator.core.errors import BadInput, Exit
from orchestrator.core.progress import Progress
from orchestrator.guest import vm
from orchestrator.kernel import kconfig
from orchestrator.run import options, record, recording
from orchestrator.run.lifecycle import Lifecycle, Run
from orchestrator.run.record import (
    BisectRecord,
    CommitRecord,
    RunVerdict,
    TreeRecord,
)
from orchestrator.run.verdict import Side
from orchestrator.source import debsrc, intake, tree

# Which outcome each end must have, and git's terms, per mode.
TERMS = {Mode.TEST: revs.TEST_TERMS, Mode.BUILD: revs.TEST_TERMS,
         Mode.SPLAT: revs.TEST_TERMS, Mode.FIXED: revs.FIXED_TERMS}


@dataclass
class Options(options.BootFlags, options.SourceFlags):
    """`orch bisect`'s options."""
    good: str | None = None
    bad: str | None = None
    config: str | None = None
    mode: Mode = Mode.TEST
    resume: Path | None = None
    run_dir: Path | None = None


def bisect(opts: Options, progress: Progress | None = None) -> int:
    """The library entry point (the command and tests call it): the exit
    status, with the record in opts.run_dir/run.json."""
    previous = None
    if opts.resume:
        previous = _resumable(opts)
    else:
        _check_selection(opts)
        what = opts.msgid or (opts.mbox.name if opts.mbox else f"{opts.good}..{opts.bad}")
        opts.run_dir = opts.run_dir or options.default_run_dir(what, "bisect")
    run = Run(opts.run_dir, opts.argv, progress or Progress(), sandbox=opts.sandbox,
              rec=previous)
    try:
        with Lifecycle(run, f"interrupted; orch bisect --resume {run.dir} goes on"):
            return Bisect(run, opts).execute()
    finally:
        run.progress.done()


def _check_selection(opts: Options) -> None:
    if opts.msgid is None and opts.mbox is None and opts.good is None:
        raise BadInput("give --good REF (and --bad REF), or a series: a Message-ID or --mbox")
    if (opts.msgid or opts.mbox) and (opts.good or opts.bad):
        raise BadInput("--good/--bad bisect a tree's history; a series is bisected over "
                       "its own patches: give one or the other")
    if (opts.mode != Mode.BUILD and opts.mode != Mode.SPLAT
            and not (opts.guest_tests or opts.keyword or opts.kselftests or opts.suites)):
        raise BadInput("give the guest test(s) to bisect on with --guest-test ID, -k EXPR, "
                       "--kselftest TARGET[:TEST] or --suite DIR (or --build / --splat)")


def _resumable(opts: Options) -> record.RunRecord:
    rd = opts.resume
    rec = record.read(rd / "run.json")
    b = rec.bisect
    if b is None:
        raise BadInput(f"{rd} is not an orch bisect run directory (its run.json has no bisect)")
    # Found, bad input, inconclusive (3 in records from before it was 6).
    if rec.state == "done" and rec.exit_code in (0, 2, 3, int(Exit.INCONCLUSIVE)):
        raise BadInput(f"the bisect in {rd} is finished ({rec.verdict}); nothing to resume")
    # The bisect as it was started: its ends, mode, config and tests.
    opts.good, opts.bad, opts.mode = b.good, b.bad, Mode(b.mode)
    opts.config, opts.guest_tests, opts.repeat = b.config, b.tests or None, b.repeat
    opts.keyword = b.keyword
    if b.kconfig or b.kconfig_add:
        # A custom config's name is `<base>+<sha8>` or `kconfig-<sha8>`, and
        # no kconfigs/ name has a "+": the base it started from.
        opts.config = None if b.kconfig else b.config.split("+")[0]
        opts.kconfig, opts.kconfig_add = b.kconfig, list(b.kconfig_add or [])
    opts.cpus, opts.memory = b.cpus or vm.CPUS, b.memory or vm.MEMORY
    opts.kselftests = list(b.kselftests or [])
    opts.suites = [Path(p) for p in b.suites or []]
    opts.tree = Path(rec.tree.path) if rec.tree else opts.tree
    opts.msgid = opts.mbox = None
    return rec


class Bisect:
    def __init__(self, run: Run, opts: Options):
        self.run, self.opts, self.rec = run, opts, run.rec

    def say(self, msg: str) -> None:
        self.run.say(msg)

    def execute(self) -> int:
        opts, rec = self.opts, self.rec
        kc = kconfig.chosen([opts.config] if opts.config else [], opts.kconfig,
                            opts.kconfig_add)[0]
        expected = (options.collect(opts.guest_tests, opts.keyword, opts.kselftests, opts.suites)
                    if opts.mode != Mode.BUILD else [])
        rec.expected_tests, rec.repeat = expected, opts.repeat
        rec.cpus, rec.memory = options.guest_machine(opts)
        t = tree.open_tree(opts.tree, opts.debian_package or debsrc.DEFAULT_PACKAGE,
                           log_dir=self.run.logs)
        ws = tree.workspace(t, announce=self.say)
        try:
            good, bad = self._ends(t, ws)
        finally:
            ws.lock.release()
        old, new = (bad, good) if opts.mode == Mode.FIXED else (good, bad)
        if not revs.is_ancestor(ws.src, old, new):
            which = ("--bad is not an ancestor of --good (with --fixed the bad end is the "
                     "older one)" if opts.mode == Mode.FIXED
                     else "--good is not an ancestor of --bad")
            raise BadInput(f"{which}: {short(good)} / {short(bad)}")
        n = revs.count(ws.src, old, new)
        if rec.bisect is None or opts.resume is None:
            rec.bisect = BisectRecord(mode=opts.mode.value, terms=list(TERMS[opts.mode]),
                                      good=good, bad=bad, config=kc.name,
                                      tests=list(opts.guest_tests or []), repeat=opts.repeat,
                                      keyword=opts.keyword, cpus=rec.cpus, memory=rec.memory,
                                      kconfig=kc.spec[1], kconfig_add=list(kc.spec[2]) or None,
                                      kselftests=list(opts.kselftests) or None,
                                      suites=[str(p) for p in opts.suites] or None,
                                      commits=n,
                                      max_steps=math.ceil(math.log2(n)) + 1 if n > 1 else 1)
        rec.tree = rec.tree or TreeRecord(str(t.repo), t.label, good, "the good end")
        self.run.save()
        settings = StepSettings(opts.mode, opts.jobs, opts.sandbox,
                                options.boot_settings(opts, expected), opts.guest_timeout,
                                opts.rerun)
        self.stepper = Stepper(ws, kc, settings, self.run.dir, self.run.progress, trusted=old,
                               tree_path=t.repo)
        self.say(f"bisect {opts.mode.value}: {n} commit(s) between {short(old)} and "
                 f"{short(new)}, at most {rec.bisect.max_steps} step(s); config {kc.name}"
                 + (f", tests: {' '.join(opts.guest_tests)}" if opts.guest_tests else ""))
        gb = revs.GitBisect.create(ws.src, ws.root, str(self.run.dir))
        try:
            return self._bisect(gb, good, bad, old, new)
        finally:
            gb.remove()

    # -- the ends --------------------------------------------------------

    def _ends(self, t: tree.Tree, ws: tree.Workspace) -> tuple[str, str]:
        """(good, bad) commit ids: given refs, or a series' base and head."""
        opts = self.opts
        if opts.msgid or opts.mbox:
            series = intake.fetch(opts.msgid, mbox=opts.mbox, outdir=self.run.dir / "series",
                                  log=self.run.logs / "b4.log", lore_url=opts.lore_url,
                                  timeout=opts.lore_timeout, offline=opts.offline,
                                  latest=opts.latest)
            self.rec.series = recording.series(series)
            base = tree.resolve_base(t, series, opts.base)
            self.rec.tree = TreeRecord(str(t.repo), t.label, base.commit, base.reason)
            applied = tree.apply_series(ws, base, series, self.run.logs)
            self.rec.series = recording.series(series)
            if not applied.ok:
                raise BadInput(f"the series does not apply to {short(base.commit)}: "
                               f"{applied.error}")
            tree.keep_ref(ws.src, f"refs/orch/bisect/{short(applied.head)}", applied.head)
            self.say(f"series v{series.version}: {len(series.patches)} patches on "
                     f"{short(base.commit)}")
            return ((applied.head, base.commit) if opts.mode == Mode.FIXED
                    else (base.commit, applied.head))
        good = revs.resolve(t.repo, opts.good, "--good")
        bad = revs.resolve(t.repo, opts.bad or "HEAD", "--bad")
        if good == bad:
            raise BadInput("--good and --bad are the same commit")
        return good, bad

    def _passing(self) -> str:
        return "new" if self.opts.mode == Mode.FIXED else GOOD

    def _failing(self) -> str:
        return "old" if self.opts.mode == Mode.FIXED else BAD

    def _end(self, commit: str, role: str, good_end: Side | None) -> StepResult:
        r = self.stepper.step(commit, good_end)
        self._record(role, r)
        want = self._passing() if role == "good end" else self._failing()
        if r.outcome != want:
            self.rec.bisect.result = "endpoint-disagrees"
            self.run.save()
            flag = "--good" if role == "good end" else "--bad"
            what = {Mode.BUILD: "build" if role == "good end" else "fail to build",
                    Mode.SPLAT: "show no new splat" if role == "good end" else
                    "show a splat the good end does not"}.get(
                        self.opts.mode, "pass the tests" if role == "good end"
                        else "fail the tests")
            raise BadInput(f"the {role} disagrees: {flag} {short(commit)} should {what}, "
                           f"but it is {r.outcome}: {r.reason}")
        return r

    # -- the bisect ------------------------------------------------------

    def _bisect(self, gb: revs.GitBisect, good: str, bad: str, old: str,
                new: str) -> int:
        opts, b = self.opts, self.rec.bisect
        log = self.run.dir / "bisect.log"
        resumed = opts.resume is not None and log.exists()
        # The ends, verified (kept results answer at once when they exist;
        # on resume they always do).
        if not resumed:
            b.steps = []
        good_r = self._end(good, "good end", None) if not resumed else self.stepper.step(good)
        self.good_end = good_r.side
        bad_r = self._end(bad, "bad end", self.good_end) if not resumed else \
            self.stepper.step(bad, self.good_end)
        self.bad_crash = crash_of(bad_r.side)
        terms = TERMS[opts.mode]
        ans = gb.replay(log) if resumed else gb.start(old, new, terms)
        if resumed:
            self.say(f"resumed from {log}: {sum(s.role == 'step' for s in b.steps)} step(s) "
                     "were done")
        self._save_log(gb)
        while not ans.done:
            r = self.stepper.step(ans.next, self.good_end)
            if r.outcome == self._failing() and self.bad_crash:
                mine = crash_of(r.side)
                if mine and mine != self.bad_crash:
                    r.reason += f" (the bad end's crash differs: {self.bad_crash})"
            # An outcome is already one of git's terms for this mode (good,
            # bad, skip; old, new, skip with --fixed: bisect_rules, TERMS).
            ans = gb.mark(r.outcome, r.commit)
            self._record("step", r, ans.steps_left if not ans.done else 0)
            self._save_log(gb)
        return self._conclude(gb, ans)

    def _save_log(self, gb: revs.GitBisect) -> None:
        text = gb.log()
        (self.run.dir / "bisect.log").write_text(text)
        self.rec.bisect.log = str(self.run.dir / "bisect.log")
        self.run.save()

    def _record(self, role: str, r: StepResult, steps_left: int | None = None) -> None:
        b = self.rec.bisect
        b.steps.append(recording.bisect_step(role, r, steps_left))
        self.run.save()
        n = sum(s.role == "step" for s in b.steps)
        label = f"step {n}" if role == "step" else role
        build_ = "cached" if r.build == "cached" else (
            f"built {r.build_seconds:.0f}s" if r.build == "built" else r.build)
        boot = ("-" if r.boot is None else "kept" if r.boot == "kept"
                else f"booted {r.boot_seconds:.0f}s") + (
            f" x{r.attempts}" if r.attempts > 1 else "")
        left = f"; roughly {steps_left} more" if steps_left else ""
        self.say(f"{label}: {short(r.commit)} {r.subject[:50]} | build {build_} | boot {boot} "
                 f"| {r.counts()} | {r.outcome}{left}"
                 + (f" ({r.reason})" if r.outcome != self._passing() else ""))

    def _commit(self, commit: str) -> CommitRecord:
        return CommitRecord(commit, *revs.describe(self.stepper.ws.src, commit))

    def _conclude(self, gb: revs.GitBisect, ans: revs.Answer) -> int:
        b = self.rec.bisect
        if ans.first is None:
            b.result = "only-skipped"
            b.candidates = [self._commit(c) for c in ans.candidates]
            b.note = (f"only skipped commits are left: the first {self._failing_word()} "
                      f"commit is one of {len(ans.candidates)}")
            self.run.save()
            return self.run.finish(Exit.INCONCLUSIVE, RunVerdict.INCONCLUSIVE, b.note)
        first = ans.first
        b.first_bad = self._commit(first)
        parent = revs.resolve(self.stepper.ws.src, f"{first}^", "parent")
        # The step's own line: `orch test --range PARENT..FIRST` of the one commit.
        b.reproduce = self.stepper.reproduce(first)
        self.run.save()
        note = None
        if self.opts.mode != Mode.BUILD:
            # Boot both once more (new boots, kept on their own): one flaky
            # run must not name a commit.
            self.say(f"confirming: booting {short(first)} and its parent {short(parent)} "
                     "again")
            terms = TERMS[self.opts.mode]
            for commit, want in ((first, terms[1]), (parent, terms[0])):
                r = self.stepper.step(commit, self.good_end, sample=2, retries=0)
                self._record("confirm", r)
                if r.outcome != want:
                    note = (f"the confirmation boot of {short(commit)} was {r.outcome}, "
                            f"not {want}: {r.reason}")
                    break
        if note:
            b.result, b.note = "inconclusive", note
            b.candidates = [b.first_bad]
            self.run.save()
            return self.run.finish(Exit.INCONCLUSIVE, RunVerdict.INCONCLUSIVE, note)
        b.result = "found"
        self.run.save()
        self.say(f"first {self._failing_word()} commit: {short(first)} "
                 f"\"{b.first_bad.subject}\" by {b.first_bad.author}")
        self.say(f"reproduce: {b.reproduce}")
        return self.run.finish(Exit.OK, RunVerdict.FOUND,
                               f"first {self._failing_word()} commit {short(first)} "
                               f"{b.first_bad.subject}")

    def _failing_word(self) -> str:
        return {Mode.FIXED: "fixed", Mode.BUILD: "broken-build"}.get(self.opts.mode, "bad")
