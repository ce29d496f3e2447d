"""Stage results as run-record values: what each command that owns a record
(test, bisect, nightly) puts into it from the stages' typed results."""

from __future__ import annotations

import dataclasses

from orchestrator.core.models import GuestRun, Kernel, Series, Status
from orchestrator.guest import vm
from orchestrator.run.boots import Booted
from orchestrator.run.record import (
    BisectStep,
    BootRecord,
    BootStatus,
    BuildRecord,
    BuildStatus,
    Comparison,
    ConfigRecord,
    KselftestRecord,
    Outcome,
    Problems,
    SideRecord,
    StepOutcome,
    TargetsRecord,
    TestRecord,
)
from orchestrator.run.targets import MAX_TOUCHED, Targets
from orchestrator.run.targets import Rule as TargetRule
from orchestrator.run.verdict import ConfigVerdict, Side


def series(s: Series) -> dict:
    d = dataclasses.asdict(s)
    d["mbx"] = str(s.mbx)
    d["cover"] = s.cover is not None
    return d


def built(k: Kernel) -> BuildRecord:
    return BuildRecord(
        status=BuildStatus.CACHED if k.cached else BuildStatus.OK,
        seconds=round(k.seconds, 1), cached=k.cached, image=str(k.image), log=str(k.log),
        key=k.key, compiled=k.compiled, ccache=k.ccache, banner=k.banner,
        uncached=k.uncached, dotconfig=str(k.dotconfig),
        kselftests=[KselftestRecord(b.target, b.key, b.cached, round(b.seconds, 1),
                                    list(b.tests), str(b.install),
                                    str(b.log) if b.log else None)
                    for b in k.kselftests] or None)


def failed_build(log) -> BuildRecord:
    return BuildRecord(status=BuildStatus.FAILED, log=str(log))


def boot(g: GuestRun) -> BootRecord:
    return BootRecord(
        status=BootStatus.OK if g.ok else BootStatus.FAILED, accel=g.accel, cached=g.cached,
        seconds=round(g.seconds, 1), console=str(g.console),
        junit=str(g.junit) if g.junit else None,
        harness_log=str(g.harness_log) if g.harness_log else None,
        harness_rc=g.harness_rc, died_in=g.died_in, error=g.error, banner=g.banner,
        console_tail=None if g.ok else vm.console_tail(g.console))


def outcome(side: Side) -> Outcome:
    return Outcome(side.status, side.reason, side.infra, side.died_in)


def tests(side: Side) -> list[TestRecord]:
    return [TestRecord(t.name, t.status, t.message, t.seconds, t.properties,
                       [Status(o) for o in t.outcomes] or None)
            for t in side.tests.values()]


def booted_side(build_: BuildRecord, b: Booted) -> SideRecord:
    return SideRecord(build_, boot(b.guest), outcome(b.judged), tests(b.judged),
                      [s.as_dict() for s in b.judged.splats], b.guest_data)


def not_booted(build_: BuildRecord) -> SideRecord:
    return SideRecord(build_, BootRecord(status=BootStatus.NOT_RUN), tests=[])


def judged(c: ConfigRecord, v: ConfigVerdict) -> None:
    """A config's verdict into its record."""
    known = set(v.known_tests)
    c.comparison = [Comparison(x.name, x.baseline, x.patched, x.transition, x.reason,
                               True if x.name in known else None)
                    for x in v.comparisons]
    c.new_splats = [s.as_dict() for s in v.new_splats]
    c.preexisting_splats = [s.as_dict() for s in v.preexisting_splats]
    c.verdict = v.verdict
    c.regressions = len(v.regressions)
    c.problems = Problems(v.regressions, v.failures, v.infra, v.known)


def targets(t: Targets) -> TargetsRecord:
    return TargetsRecord(t.rule, t.tests, t.patterns, t.about or None,
                         t.touched[:MAX_TOUCHED] if t.rule != TargetRule.EXPECT_FIXED else None,
                         len(t.touched) if t.rule != TargetRule.EXPECT_FIXED else None)


def bisect_step(role: str, r, steps_left: int | None = None) -> BisectStep:
    """One bisect_step.StepResult as run.json's step (orch bisect, orch check)."""
    return BisectStep(
        role=role, commit=r.commit, subject=r.subject, outcome=StepOutcome(r.outcome),
        reason=r.reason, build=r.build, build_seconds=round(r.build_seconds, 1),
        build_log=str(r.build_log), boot=r.boot, boot_seconds=r.boot_seconds,
        boots=r.attempts or None, console=str(r.console) if r.console else None,
        tests={n: Status(s) for n, s in r.results.items()} or None,
        splats=[s.as_dict() for s in r.side.splats] if r.side else None,
        steps_left=steps_left, key=r.kernel.key if r.kernel else None,
        banner=(r.kernel.banner or None) if r.kernel else None, sha256=r.sha256,
        boot_banner=r.boot_banner, reproduce=r.reproduce)
