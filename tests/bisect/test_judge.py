"""The bisect step table (orchestrator/bisect/judge.py) on sides judged by
the real verdict code: each row of the table, and each mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.bisect.judge import Build, Mode, classify
from orchestrator.core.models import GuestRun, Status, TestResult
from orchestrator.guest import splats
from orchestrator.run import verdict

S = Status
EXP = ["guest_tests/t.py::a", "guest_tests/t.py::b"]


def side(statuses: dict[str, Status] | None = None, *, ok=True, error="", infra=False,
         died_in=None, finished=True, found=(), outcomes=None) -> verdict.Side:
    tests = [TestResult(n, st, "why" if st != S.PASS else "",
                        outcomes=(outcomes or {}).get(n, []))
             for n, st in (statuses or {}).items()]
    g = GuestRun(ok, "tcg", 1.0, Path("/dev/null"), Path("/dev/null") if ok else None, tests,
                 error, harness_rc=(1 if any(t.status != S.PASS for t in tests) else 0)
                 if ok else None, died_in=died_in, finished=finished, infra=infra)
    return verdict.judge_side(EXP, g, True, list(found))


GOOD_END = side({EXP[0]: S.PASS, EXP[1]: S.PASS})


def test_all_pass_is_good_and_a_failure_is_bad():
    assert classify(Mode.TEST, Build.OK, GOOD_END, GOOD_END).outcome == "good"
    step = classify(Mode.TEST, Build.OK, side({EXP[0]: S.PASS, EXP[1]: S.FAIL}), GOOD_END)
    assert step.outcome == "bad" and "t.py::b FAIL" in step.reason


def test_a_build_failure_or_unsatisfiable_config_is_skipped():
    assert classify(Mode.TEST, Build.FAILED, None).outcome == "skip"
    assert classify(Mode.TEST, Build.UNSATISFIABLE, None).outcome == "skip"


def test_build_mode():
    assert classify(Mode.BUILD, Build.OK, None).outcome == "good"
    assert classify(Mode.BUILD, Build.FAILED, None).outcome == "bad"
    assert classify(Mode.BUILD, Build.UNSATISFIABLE, None).outcome == "skip"


def test_panic_before_the_harness_is_retried_once_then_skipped():
    dead = side(ok=False, error="kernel panicked: boot", finished=False)
    assert classify(Mode.TEST, Build.OK, dead, GOOD_END, attempt=0).outcome == "retry"
    assert classify(Mode.TEST, Build.OK, dead, GOOD_END, attempt=1).outcome == "skip"


def test_dying_during_a_selected_test_is_bad():
    dead = side({EXP[0]: S.PASS}, ok=False, error="kernel panicked: x", died_in=EXP[1],
                finished=False)
    step = classify(Mode.TEST, Build.OK, dead, GOOD_END)
    assert step.outcome == "bad" and f"died during {EXP[1]}" in step.reason


def test_a_skip_where_the_good_end_ran_is_bad_and_skipped_on_both_is_not():
    skipped = side({EXP[0]: S.PASS, EXP[1]: S.SKIP})
    step = classify(Mode.TEST, Build.OK, skipped, GOOD_END)
    assert step.outcome == "bad" and "skipped where the good end ran it" in step.reason
    good_skips = side({EXP[0]: S.PASS, EXP[1]: S.SKIP})
    assert classify(Mode.TEST, Build.OK, skipped, good_skips).outcome == "good"


def test_repeat_mixed_outcomes_are_bad_with_the_count():
    flaky = side({EXP[0]: S.PASS, EXP[1]: S.FLAKY},
                 outcomes={EXP[1]: ["PASS", "FAIL", "PASS", "FAIL", "PASS"]})
    step = classify(Mode.TEST, Build.OK, flaky, GOOD_END)
    assert step.outcome == "bad" and "failed 2 of 5 runs" in step.reason


def test_infrastructure_aborts():
    broken = side(ok=False, error="vng: qemu failed", infra=True, finished=False)
    assert classify(Mode.TEST, Build.OK, broken, GOOD_END).outcome == "abort"
    assert classify(Mode.SPLAT, Build.OK, broken, GOOD_END).outcome == "abort"


def test_fixed_swaps_the_terms():
    assert classify(Mode.FIXED, Build.OK, GOOD_END).outcome == "new"
    assert classify(Mode.FIXED, Build.OK, side({EXP[0]: S.FAIL, EXP[1]: S.PASS})).outcome == "old"
    assert classify(Mode.FIXED, Build.FAILED, None).outcome == "skip"


def test_splat_mode_compares_fingerprints_with_the_good_end():
    old = splats.Splat("warning", "WARNING: at mm/old.c:1 old_fn")
    new = splats.Splat("lockdep", "WARNING: possible circular locking dependency detected")
    good_end = side({EXP[0]: S.PASS, EXP[1]: S.PASS}, found=[old])
    same = side({EXP[0]: S.PASS, EXP[1]: S.FAIL}, found=[old])
    assert classify(Mode.SPLAT, Build.OK, same, good_end).outcome == "good"
    step = classify(Mode.SPLAT, Build.OK, side({EXP[0]: S.PASS, EXP[1]: S.PASS},
                                               found=[old, new]), good_end)
    assert step.outcome == "bad" and "new lockdep" in step.reason


def test_a_booted_mode_needs_a_side():
    with pytest.raises(ValueError):
        classify(Mode.TEST, Build.OK, None)
