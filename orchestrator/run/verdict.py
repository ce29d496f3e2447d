"""Judging: one side alone, baseline against patched for one config, and the
run's exit status. Pure functions of what was expected and what was
reported, so bisect and the nightly job can act on them unattended.

The rules, in short: a test orch expected and a side did not report is
MISS; a side that tested nothing is never a PASS; a skip on patched of a
test that ran on baseline is a failure; a test that fails on both kernels
fails the run only when the series is expected to fix it (run.targets),
else it is a known failure; a config's verdict stands on its own, and a
regression anywhere wins over an infrastructure error elsewhere.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass, field

from orchestrator.core.errors import Exit
from orchestrator.core.models import GuestRun, Status, TestResult
from orchestrator.guest.kselftest_run import PREFIX as KSELFTEST
from orchestrator.guest.splats import Splat

BAD = {Status.FAIL, Status.ERROR, Status.MISS, Status.FLAKY}
RAN = {Status.PASS, Status.FAIL, Status.ERROR, Status.FLAKY}
NOT_RUN = "not run (guest crashed)"
REGRESSION = {"regressed", "now skipped"}
# A test's own failure on both kernels: what a series not about it cannot
# be blamed for (FLAKY, MISS and a baseline that did not run it still count).
FAILED_BOTH = {Status.FAIL, Status.ERROR}


class SideStatus(enum.StrEnum):
    """One side (one kernel) judged alone."""
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"


class Verdict(enum.StrEnum):
    """One config, baseline against patched."""
    PASS = "PASS"
    FAIL = "FAIL"
    INFRA_ERROR = "INFRA-ERROR"


@dataclass
class Side:
    """One side judged alone, and every expected test."""
    status: SideStatus
    reason: str
    tests: dict[str, TestResult]
    infra: bool = False          # its ERROR is orch's or the machine's, not the kernel's
    died_in: str | None = None
    splats: list[Splat] = field(default_factory=list)   # what its console showed


def judge_side(expected: list[str], run: GuestRun | None, patched: bool,
               found: list[Splat] = ()) -> Side:
    """One side alone: what bisect acts on, and half of a config's verdict.
    `found` (the console's splats) does not change the side's status: a
    splat is judged against the other side's (judge_config) or the parent
    commit's (bisect --splat)."""
    side = _judge_side(expected, run, patched)
    side.splats = list(found)
    return side


def _judge_side(expected: list[str], run: GuestRun | None, patched: bool) -> Side:
    if run is None:
        return Side(SideStatus.ERROR, "not booted", {n: TestResult(n, Status.MISS, "not run")
                                            for n in expected}, infra=True)
    got = {t.name: t for t in run.tests}
    tests: dict[str, TestResult] = {}
    for n in expected:
        if n in got:
            tests[n] = got[n]
        elif n == run.died_in:
            tests[n] = TestResult(n, Status.ERROR, "the guest died or hung during this test")
        elif not run.finished:
            tests[n] = TestResult(n, Status.MISS, NOT_RUN)
        else:
            tests[n] = TestResult(n, Status.MISS, "expected, but the guest did not report it")
    statuses = [t.status for t in tests.values()]
    if not run.ok:
        return Side(SideStatus.ERROR, run.error, tests, run.infra, run.died_in)
    if run.harness_rc not in (0, 1) and any(not n.startswith(KSELFTEST) for n in expected):
        return Side(SideStatus.ERROR, f"the guest's pytest exited {_rc(run.harness_rc)} "
                    "(0 or 1 means it ran the suite)", tests, False, run.died_in)
    if not any(s in RAN for s in statuses):
        # A baseline may lack what the series adds; a patched kernel on
        # which nothing ran has shown nothing.
        why = ("every expected test skipped" if statuses and all(s == Status.SKIP
               for s in statuses) else "no expected test ran")
        if patched or not any(s == Status.SKIP for s in statuses):
            return Side(SideStatus.ERROR, why, tests, False)
    if any(s in BAD for s in statuses):
        return Side(SideStatus.FAIL, "", tests)
    return Side(SideStatus.PASS, "", tests)


def _rc(rc: int | None) -> str:
    meanings = {2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests collected"}
    if rc is None:
        return "with no status"
    return f"{rc}" + (f", {meanings[rc]}" if rc in meanings else "")


@dataclass
class JudgedComparison:
    """One test, baseline against patched, as the judge found it (run.json
    keeps it as record.Comparison)."""
    name: str
    baseline: Status
    patched: Status
    transition: str
    reason: str = ""   # the patched side's message when it is not a plain pass


def transition(base: Status, patched: Status, patched_message: str = "") -> str:
    if patched == Status.SKIP:
        return "now skipped" if base in RAN else "skipped"
    if patched == Status.PASS:
        return "fixed" if base in BAD else "passing"
    if patched == Status.FLAKY:
        return "flaky"
    if patched == Status.MISS and patched_message == NOT_RUN:
        return NOT_RUN
    if base == Status.PASS:
        return "regressed"
    if base in (Status.SKIP, Status.MISS):
        return "failing"  # nothing on baseline to compare with
    return "still failing"


def compare(expected: list[str], b: Side, p: Side) -> list[JudgedComparison]:
    out = []
    for n in expected:
        bt, pt = b.tests[n], p.tests[n]
        out.append(JudgedComparison(n, bt.status, pt.status,
                                    transition(bt.status, pt.status, pt.message),
                                    pt.message if pt.status != Status.PASS else ""))
    return out


@dataclass
class ConfigVerdict:
    verdict: Verdict
    comparisons: list[JudgedComparison]
    new_splats: list[Splat]
    preexisting_splats: list[Splat]
    regressions: list[str] = field(default_factory=list)   # "test: regressed", new splats
    failures: list[str] = field(default_factory=list)      # other patched failures
    infra: list[str] = field(default_factory=list)
    # Failing on the baseline too and not a target: listed, never a failure.
    known: list[str] = field(default_factory=list)
    known_tests: list[str] = field(default_factory=list)


def new_splats(before: list[Splat], after: list[Splat]) -> list[Splat]:
    """The splats of `after` whose fingerprint `before` does not show: a
    config's patched side against its baseline, a bisect step against the
    good end."""
    seen = {s.fingerprint for s in before}
    return [s for s in after if s.fingerprint not in seen]


def known_failure(c: JudgedComparison, targets: Collection[str] | None) -> bool:
    """Failing on the baseline and on the patched kernel, and not a test the
    series is expected to fix (`targets`; None: every test is one)."""
    return (targets is not None and c.name not in targets and c.transition == "still failing"
            and c.baseline in FAILED_BOTH and c.patched in FAILED_BOTH)


def judge_config(name: str, expected: list[str], b: Side, p: Side,
                 b_splats: list[Splat] | None = None,
                 p_splats: list[Splat] | None = None,
                 targets: Collection[str] | None = None) -> ConfigVerdict:
    """Baseline against patched for one config; the splats default to what
    each side's console showed; `targets` are the tests the series is
    expected to fix (None: all)."""
    b_splats = b.splats if b_splats is None else b_splats
    p_splats = p.splats if p_splats is None else p_splats
    comps = compare(expected, b, p)
    # A splat only the patched kernel shows is the series' regression, even
    # when every test passed; one the baseline shows too is pre-existing.
    new = new_splats(b_splats, p_splats)
    v = ConfigVerdict(Verdict.PASS, comps, new, [s for s in p_splats if s not in new])
    if p.status == SideStatus.ERROR and p.infra:
        # What the patched side reported is about another kernel, or none.
        v.infra.append(f"config {name}: patched guest: {p.reason}")
        if b.status == SideStatus.ERROR:
            v.infra.insert(0, f"config {name}: baseline guest: {b.reason}")
        v.verdict = Verdict.INFRA_ERROR
        return v
    where = f" (during {p.died_in})" if p.died_in else ""
    for s in sorted(new, key=lambda s: s.kind != "panic"):
        v.regressions.append(f"config {name}: patched kernel {s.kind}: {s.title}"
                             + (where if s.kind in ("panic", "oops", "bug") else ""))
    for c in comps:
        if c.transition in REGRESSION:
            v.regressions.append(f"config {name}: {c.name} {c.transition}"
                                 + (f" ({c.reason})" if c.transition == "now skipped" else ""))
        elif known_failure(c, targets):
            v.known.append(f"config {name}: {c.name} {c.transition}")
            v.known_tests.append(c.name)
        elif c.patched in BAD:
            v.failures.append(f"config {name}: {c.name} {c.transition}")
    if b.status == SideStatus.ERROR:
        v.infra.append(f"config {name}: baseline guest: {b.reason}")
    if p.status == SideStatus.ERROR:
        line = f"config {name}: patched guest: {p.reason}"
        if b.status == SideStatus.ERROR:
            v.infra.append(line)
        else:
            v.failures.insert(0, line)
    v.verdict = (Verdict.FAIL if v.regressions or v.failures
                 else Verdict.INFRA_ERROR if v.infra else Verdict.PASS)
    return v


def run_exit(verdicts: dict[str, ConfigVerdict]) -> tuple[Exit, Verdict]:
    """Exit 0 only when every config passed; 1 when any shows a regression
    or a patched failure, whatever another config's infrastructure did;
    otherwise 5."""
    if any(v.verdict == Verdict.FAIL for v in verdicts.values()):
        return Exit.TESTS_FAILED, Verdict.FAIL
    if all(v.verdict == Verdict.PASS for v in verdicts.values()):
        return Exit.OK, Verdict.PASS
    return Exit.INFRA, Verdict.INFRA_ERROR


HEADLINE = 300


def headline(verdicts: dict[str, ConfigVerdict], limit: int = HEADLINE) -> str:
    """The most important thing first (a panic, a new splat, the regressions),
    then a count of the rest; the full lists are in run.json and the summary."""
    items = []
    for v in verdicts.values():
        items += v.regressions
    for v in verdicts.values():
        items += v.failures
    for v in verdicts.values():
        items += v.infra
    out, used = [], 0
    for i, item in enumerate(items):
        item = item if len(item) <= 160 else item[:157] + "..."
        if out and used + len(item) + 2 > limit - 20:
            out.append(f"and {len(items) - i} more")
            break
        out.append(item)
        used += len(item) + 2
    return "; ".join(out)
