"""Baseline versus patched: per-test transitions and the run's exit status."""

from __future__ import annotations

from dataclasses import dataclass

from .models import GuestRun, Status, TestResult

BAD = {Status.FAIL, Status.ERROR, Status.MISS}


@dataclass
class Comparison:
    name: str
    baseline: Status
    patched: Status
    transition: str


def statuses(run: GuestRun | None, names: list[str]) -> dict[str, Status]:
    """Each expected test's status on one side. A side whose guest never
    reported has every test in ERROR; a test the other side reported but
    this one did not is MISS."""
    if run is None or not run.ok:
        return {n: Status.ERROR for n in names}
    got = {t.name: t.status for t in run.tests}
    return {n: got.get(n, Status.MISS) for n in names}


def transition(base: Status, patched: Status) -> str:
    if patched == Status.SKIP:
        return "skipped"
    if patched == Status.PASS:
        return "fixed" if base in (Status.FAIL, Status.ERROR) else "passing"
    if base == Status.PASS:
        return "regressed"
    if base in (Status.SKIP, Status.MISS):
        return "failing"  # nothing on baseline to compare with
    return "still failing"


def compare(baseline: GuestRun | None, patched: GuestRun | None) -> list[Comparison]:
    names: list[str] = []
    for run in (baseline, patched):
        for t in (run.tests if run else []):
            if t.name not in names:
                names.append(t.name)
    b, p = statuses(baseline, names), statuses(patched, names)
    return [Comparison(n, b[n], p[n], transition(b[n], p[n])) for n in names]


def patched_failures(comparisons: list[Comparison]) -> list[Comparison]:
    return [c for c in comparisons if c.patched in BAD]
