"""Stage results as run-record values: what each command that owns a record
(test, bisect, nightly) puts into it from the stages' typed results."""

from __future__ import annotations

import dataclasses

from orchestrator.core.models import GuestRun, Kernel, Series
from orchestrator.guest import vm
from orchestrator.run.boots import Booted
from orchestrator.run.record import (
    BisectStep,
    BootRecord,
    BuildRecord,
    Comparison,
    ConfigRecord,
    Outcome,
    Problems,
    SideRecord,
    TestRecord,
)
from orchestrator.run.verdict import ConfigVerdict, Side


def series(s: Series) -> dict:
    d = dataclasses.asdict(s)
    d["mbx"] = str(s.mbx)
    d["cover"] = s.cover is not None
    return d


def built(k: Kernel) -> BuildRecord:
    return BuildRecord("cached" if k.cached else "ok", round(k.seconds, 1), k.cached,
                       str(k.image), str(k.log), k.key, k.compiled, k.ccache, k.banner,
                       k.uncached, str(k.dotconfig))


def failed_build(log) -> BuildRecord:
    return BuildRecord("failed", log=str(log))


def boot(g: GuestRun) -> BootRecord:
    return BootRecord(
        "ok" if g.ok else "failed", g.accel, g.cached, round(g.seconds, 1), str(g.console),
        str(g.junit) if g.junit else None, str(g.harness_log) if g.harness_log else None,
        g.harness_rc, g.died_in, g.error, g.banner,
        None if g.ok else vm.console_tail(g.console))


def outcome(side: Side) -> Outcome:
    return Outcome(side.status, side.reason, side.infra, side.died_in)


def tests(side: Side) -> list[TestRecord]:
    return [TestRecord(t.name, t.status.value, t.message, t.seconds, t.properties,
                       t.outcomes or None)
            for t in side.tests.values()]


def booted_side(build_: BuildRecord, b: Booted) -> SideRecord:
    return SideRecord(build_, boot(b.guest), outcome(b.judged), tests(b.judged),
                      [s.as_dict() for s in b.judged.splats], b.guest_data)


def not_booted(build_: BuildRecord) -> SideRecord:
    return SideRecord(build_, BootRecord("not run"), tests=[])


def judged(c: ConfigRecord, v: ConfigVerdict) -> None:
    """A config's verdict into its record."""
    c.comparison = [Comparison(x.name, x.baseline.value, x.patched.value, x.transition,
                               x.reason) for x in v.comparisons]
    c.new_splats = [s.as_dict() for s in v.new_splats]
    c.preexisting_splats = [s.as_dict() for s in v.preexisting_splats]
    c.verdict = v.verdict
    c.regressions = len(v.regressions)
    c.problems = Problems(v.regressions, v.failures, v.infra)


def bisect_step(role: str, r, steps_left: int | None = None) -> BisectStep:
    """One bisect_step.StepResult as run.json's step (orch bisect, orch check)."""
    return BisectStep(role, r.commit, r.subject, r.outcome, r.reason, r.build,
                      round(r.build_seconds, 1), str(r.build_log), r.boot, r.boot_seconds,
                      r.attempts or None, str(r.console) if r.console else None,
                      r.results or None,
                      [s.as_dict() for s in r.side.splats] if r.side else None, steps_left)
