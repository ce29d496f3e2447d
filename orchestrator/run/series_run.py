"""An `orch test` run: intake -> tree -> apply -> build -> boot+test -> judge.

The run owns its record: every step's result goes into run.json before the
next starts (run.save()), so whatever stops a run (an error, Ctrl-C, a
kill) leaves a readable record; the lifecycle finishes it on every exit.
The stages themselves (builds, boots, verdict) only return values.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.models import Base, Kernel, Series
from orchestrator.core.progress import Progress
from orchestrator.guest import kselftest_run, vm
from orchestrator.kernel import build, compiler_warnings, kconfig, kselftest_build
from orchestrator.run import boots, builds, recording, summary, targets, verdict
from orchestrator.run.lifecycle import Lifecycle, Run
from orchestrator.run.options import (
    Options,
    boot_settings,
    collect,
    default_run_dir,
    guest_machine,
    series_label,
)
from orchestrator.run.record import (
    Accel,
    ApplyRecord,
    ConfigRecord,
    EachPatchStatus,
    EachPatchStep,
    Rejection,
    RunVerdict,
    TreeRecord,
)
from orchestrator.source import debsrc, intake, tree


class SeriesRun(Run):
    """The run directory of one `orch test`, with what it was asked."""

    def __init__(self, opts: Options, progress: Progress):
        super().__init__(opts.run_dir or default_run_dir(series_label(opts)), opts.argv,
                         progress, sandbox=opts.sandbox, timeout=opts.timeout,
                         json_out=opts.json_out)
        self.opts = opts


def check_intake(opts: Options) -> None:
    """One series, from one place; a malformed range stops before any work."""
    if opts.on is not None and (opts.base is not None or opts.range is not None):
        raise BadInput("--on names the commit to test on: give it without --base or --range")
    if opts.range is None:
        if opts.msgid is None and opts.mbox is None:
            raise BadInput("give a Message-ID, --mbox FILE or --range A..B")
        return
    if opts.msgid is not None or opts.mbox is not None:
        raise BadInput("--range is the series: give it without a Message-ID or --mbox")
    if opts.base is not None:
        # The range's commits sit on A; another base would test other code.
        raise BadInput("--range A..B tests the commits on A: give it without --base")
    tree.parse_range(opts.range)


def test(opts: Options, progress: Progress | None = None) -> int:
    """The library entry point (the command, the nightly's cells and tests
    call it): the exit status, with the record in the run directory."""
    run = SeriesRun(opts, progress or Progress())
    try:
        with Lifecycle(run):
            return _test(run)
    finally:
        run.progress.done()


def _test(run: SeriesRun) -> int:
    opts, rec = run.opts, run.rec
    # bad names and --kconfig-add forms fail before any work
    kcs = kconfig.chosen(opts.configs, opts.kconfig, opts.kconfig_add)
    # What the guests must report, known before any work: a selection that
    # matches nothing stops here (status 2), not after two boots.
    if opts.build_only and opts.expect_fixed is not None:
        raise BadInput("--expect-fixed decides which failing tests fail the run: "
                       "--build-only runs no tests")
    expected = [] if opts.build_only else collect(opts.guest_tests, opts.keyword,
                                                  opts.kselftests, opts.suites)
    # A kselftest's ids are its build's list: those patterns wait for it.
    targets.check_patterns(_pytest_patterns(opts.expect_fixed), expected)
    rec.expected_tests, rec.repeat = expected, opts.repeat
    rec.cpus, rec.memory = guest_machine(opts)
    rec.kselftests = list(opts.kselftests) or None
    rec.suites = [str(p) for p in opts.suites] or None
    run.save()

    # 1. intake (a --range is read from the tree, so that comes first)
    t = _open_tree(run) if opts.range else None
    series, base = _intake(run, t)
    rec.series = recording.series(series)
    run.save()
    run.say(f"series v{series.version}: {series.subject} ({len(series.patches)} patches)")
    chosen = _targets(run, expected, series)

    # 2. tree and base
    t = t or _open_tree(run)
    base = base or tree.resolve_base(t, series, opts.base, opts.on)
    rec.tree = TreeRecord(str(t.repo), t.label, base.commit, base.reason)
    run.save()
    run.say(f"base {base.commit[:12]}: {base.reason}")
    kselftest_build.check_targets(t.repo, base.commit,
                                  kselftest_build.targets_of(opts.kselftests))

    # 3-4. apply and build, holding the worktree only for that: the kernels
    # live in the kernel cache, so the boots need no worktree and another
    # run may check out and build while these boot.
    ws = tree.workspace(t, announce=run.say)
    try:
        kernels = _apply_and_build(run, ws, series, base, kcs)
    finally:
        ws.lock.release()
        ws.close()      # the series' build layers: its kernels are in the cache
    if opts.build_only:
        return run.finish(Exit.OK, RunVerdict.BUILT)
    if opts.kselftests:
        expected, chosen = _with_kselftests(run, expected, kernels, series)

    # 5. boot and test each kernel once (or take its kept results)
    kvm, why = vm.probe_kvm(next(iter(kernels.values())).image)
    rec.accel = Accel("kvm" if kvm else "tcg", why)
    run.say(f"vm: {rec.accel.mode} ({why})")
    booted = _boot_all(run, kcs, kernels, expected, rec.accel.mode)

    # 6. verdict: each config on its own, then the run
    verdicts: dict[str, verdict.ConfigVerdict] = {}
    for c in kcs:
        b, p = booted[(c.name, "baseline")].judged, booted[(c.name, "patched")].judged
        verdicts[c.name] = verdict.judge_config(c.name, expected, b, p, targets=chosen)
        recording.judged(rec.config(c.name), verdicts[c.name])
    run.save()
    code, word = verdict.run_exit(verdicts)
    return run.finish(code, RunVerdict(word), verdict.headline(verdicts) or None)


def _pytest_patterns(patterns: list[str] | None) -> list[str] | None:
    if patterns is None:
        return None
    kept = [p for p in patterns if not p.startswith(kselftest_run.PREFIX)]
    return kept if kept or not patterns else None


def _with_kselftests(run: SeriesRun, expected: list[str],
                     kernels: dict[tuple[str, str], Kernel], series: Series
                     ) -> tuple[list[str], set[str]]:
    """The kselftest ids every kernel must report, from their own builds'
    lists (a test the series adds is MISS on the baseline, as a guest test
    it adds would be), added to the expected tests; the targets chosen
    again with them. A TARGET:TEST in no kernel's list is bad input."""
    opts = run.opts
    ids: list[str] = []
    for (_config, _side), k in sorted(kernels.items(), key=lambda kv: kv[0][1] != "baseline"):
        for i in kselftest_run.expected_ids(kselftest_run.plan(k, opts.kselftests)):
            if i not in ids:
                ids.append(i)
    listed = {(b.target, line.partition(":")[2]) for k in kernels.values()
              for b in k.kselftests for line in b.tests}
    for spec in kselftest_build.parse_specs(opts.kselftests):
        if spec.test and (spec.target, spec.test) not in listed:
            raise BadInput(f"--kselftest {spec.text}: no such test in the {spec.target} "
                           "kselftest list of the kernels built")
    expected = [*expected, *ids]
    targets.check_patterns(opts.expect_fixed, expected)
    run.rec.expected_tests = expected
    run.save()
    return expected, _targets(run, expected, series)


def _targets(run: SeriesRun, expected: list[str], series: Series) -> set[str] | None:
    """The tests the series is expected to fix, recorded and said before any
    build; None with --build-only (no verdict)."""
    if run.opts.build_only:
        return None
    t = targets.choose(run.opts.expect_fixed, expected, run.opts.guest_tests, series.mbx,
                       run.opts.suites)
    run.rec.targets = recording.targets(t)
    run.save()
    run.say(summary.targets_line(run.rec.targets, len(expected)))
    return set(t.tests)


def _open_tree(run: SeriesRun) -> tree.Tree:
    return tree.open_tree(run.opts.tree, run.opts.debian_package or debsrc.DEFAULT_PACKAGE,
                          log_dir=run.logs)


def _intake(run: SeriesRun, t: tree.Tree | None) -> tuple[Series, Base | None]:
    """The series through b4 (from lore, an mbox, or the --range's commits
    as an mbox, offline); for a range also its base, A."""
    opts = run.opts
    outdir, mbox, offline = run.dir / "series", opts.mbox, opts.offline
    rng = None
    if opts.range:
        run.say(f"git format-patch {opts.range} in {t.label}")
        rng = tree.format_range(t, opts.range, outdir)
        mbox, offline = rng.mbox, True
    else:
        run.say("b4: fetching the series"
                + (f" {opts.msgid}" if opts.msgid else f" from {opts.mbox}"))
    series = intake.fetch(opts.msgid, mbox=mbox, outdir=outdir, log=run.logs / "b4.log",
                          lore_url=opts.lore_url, timeout=run.left(opts.lore_timeout, "b4"),
                          offline=offline, latest=opts.latest)
    if rng is None:
        return series, None
    series.source, series.range, series.commits = "range", rng.text, rng.commits
    # Not resolve_base: A is the base whatever the tree's HEAD or the
    # base-commit: trailer, and the record says it came from the range.
    return series, Base(rng.base, f"the start of --range {rng.text} ({rng.base[:12]})")


def _apply_and_build(run: SeriesRun, ws: tree.Workspace, series: Series, base,
                     kcs: list[kconfig.KConfig]) -> dict[tuple[str, str], Kernel]:
    rec = run.rec
    # Apply first: a series that does not apply costs no build.
    applied = tree.apply_series(ws, base, series, run.logs)
    rec.series = recording.series(series)
    rec.apply = ApplyRecord(applied.ok, applied.head, applied.failed_patch,
                            [Rejection(r.file, r.hunks) for r in applied.rejections])
    run.save()
    if not applied.ok:
        p = series.patches[applied.failed_patch - 1]
        raise OrchError(f"patch {p.index}/{len(series.patches)} \"{p.subject}\" does not apply "
                        f"to {base.commit[:12]}: {applied.error}", Exit.NO_APPLY)
    run.say(f"applied {len(series.patches)} patches on {base.commit[:12]}")
    # Keep the patched commit reachable while we move the worktree about.
    tree.keep_ref(ws.src, "refs/orch/last-patched", applied.head)
    rec.configs = [ConfigRecord(c.name, kconfig=c.spec[1], kconfig_add=list(c.spec[2]) or None)
                   for c in kcs]
    run.save()

    # Every baseline, then (with --each-patch) every prefix of the series,
    # then every patched, so the worktree moves forward only and each build
    # is incremental on the previous one in its directory.
    kernels: dict[tuple[str, str], Kernel] = {}
    for c, k in _build(run, ws, kcs, builds.Source(
            base.commit, tree.tree_id(ws.src, base.commit), "baseline", "baseline")).items():
        kernels[(c, "baseline")] = k
    if run.opts.each_patch:
        _each_patch(run, ws, kcs, series,
                    tree.commits_between(ws.src, base.commit, applied.head)[:-1])
    for c, k in _build(run, ws, kcs, builds.Source(
            applied.head, applied.tree_id, "patched", "patched")).items():
        kernels[(c, "patched")] = k
    for c in kcs:
        cr = rec.config(c.name)
        cr.warnings = compiler_warnings.diff(kernels[(c.name, "baseline")].warnings,
                                             kernels[(c.name, "patched")].warnings)
        added = cr.warnings["added"]
        if added:
            run.say(f"config {c.name}: the series adds {len(added)} compiler warning(s): "
                    + "; ".join(added[:3]))
    run.save()
    return kernels


def _settings(run: SeriesRun, label: str) -> builds.BuildSettings:
    return builds.BuildSettings(run.opts.jobs, run.opts.sandbox,
                                run.left(build.BUILD_TIMEOUT, f"the {label} build"),
                                run.deadline, run.opts.timeout,
                                kselftests=kselftest_build.targets_of(run.opts.kselftests))


def _build(run: SeriesRun, ws: tree.Workspace, kcs: list[kconfig.KConfig],
           src: builds.Source) -> dict[str, Kernel]:
    def record(config: str, k: Kernel | None, log: Path) -> None:
        if src.label == src.side:   # the baseline or patched build, not a patch step
            side = recording.built(k) if k else recording.failed_build(log)
            setattr(run.rec.config(config), src.side, recording.not_booted(side))
            run.save()
    return builds.build_all(ws, kcs, src, run.logs, _settings(run, src.label), run.progress,
                            record)


def _each_patch(run: SeriesRun, ws: tree.Workspace, kcs: list[kconfig.KConfig],
                series: Series, commits: list[str]) -> None:
    """Build after every patch but the last (the patched build is the last):
    a series must build at each step, or bisecting through it breaks."""
    n = len(series.patches)
    run.rec.each_patch = steps = []
    for i, commit in enumerate(commits, start=1):
        p = series.patches[i - 1]
        step = EachPatchStep(i, p.subject, EachPatchStatus.BUILDING)
        steps.append(step)
        run.save()
        try:
            ks = _build(run, ws, kcs, builds.Source(commit, tree.tree_id(ws.src, commit),
                                                    "patched", f"patch {i}/{n}"))
        except OrchError as e:
            step.status, step.error = EachPatchStatus.FAILED, str(e)
            p.detail = "breaks the build"
            run.rec.series = recording.series(series)
            run.save()
            if e.exit != Exit.PATCHED_BUILD:
                raise
            raise OrchError(f"patch {i}/{n} \"{p.subject}\" breaks the build: {e}",
                            Exit.PATCHED_BUILD)
        step.status = EachPatchStatus.OK
        step.configs = {name: recording.built(k) for name, k in ks.items()}
        run.save()


def _boot_all(run: SeriesRun, kcs: list[kconfig.KConfig],
              kernels: dict[tuple[str, str], Kernel], expected: list[str],
              accel: str) -> dict[tuple[str, str], boots.Booted]:
    opts = run.opts
    settings = boot_settings(opts, expected, accel)
    jobs = [boots.BootJob(kernels[(c.name, side)], run.dir / "results" / c.name / side,
                          run.logs / f"console-{c.name}-{side}.log", side,
                          reuse=not (opts.rerun or (side == "baseline" and opts.rerun_baseline)
                                     or (side == "patched" and opts.rerun_patched)))
            for c in kcs for side in ("baseline", "patched")]
    out: dict[tuple[str, str], boots.Booted] = {}

    def timeout(job: boots.BootJob) -> float:
        run.say(f"{job.side} boot + guest tests, config {job.kernel.config}")
        return run.left(opts.guest_timeout, f"the {job.side} boot")

    def booted(job: boots.BootJob, b: boots.Booted) -> None:
        side, name = job.side, job.kernel.config
        out[(name, side)] = b
        cr = run.rec.config(name)
        setattr(cr, side, recording.booted_side(cr.side(side).build, b))
        run.save()
        if b.guest.cached:
            run.say(f"{side} config {name}: results of an earlier boot of this kernel with "
                    "this suite (--rerun boots it again)")
        if b.guest.removed:
            run.say(f"{side} config {name}: " + vm.with_removed("", b.guest.removed, 50))
        counts: dict[str, int] = {}
        for tr in b.judged.tests.values():
            counts[tr.status.value] = counts.get(tr.status.value, 0) + 1
        run.say(f"{side} config {name}: {b.judged.status}: "
                + ", ".join(f"{v} {k}" for k, v in counts.items())
                + (f" ({b.judged.reason})" if b.judged.reason else ""))

    boots.boot_all(jobs, settings, timeout, booted,
                   lambda job, text: run.progress.status(f"boot {job.label}", text))
    return out
