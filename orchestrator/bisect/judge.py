"""What one bisect step's kernel says: good, bad, skip, retry or abort.

A pure function of what the build and the boot stages returned (and of the
good end's side, for the rules that compare), so `orch bisect`, `orch check`
and their tests share one rule table (issue 12):

  does not build (not in --build mode); a config the commit cannot satisfy  skip
  panics or hangs before the test harness starts                  retry once, then skip
  a selected test FAILs or ERRORs, or the kernel dies in one      bad
  a selected test SKIPs where the good end ran it                 bad
  all selected tests PASS (all N runs with --repeat)              good
  QEMU or the host fails                                          abort

--build: built is good, a build failure bad. --splat: a splat whose
fingerprint the good end's kernel did not show is bad, else good.
--fixed: the same table with the terms swapped (git bisect's old/new): a
commit where the tests pass is "new", one where they fail "old".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from orchestrator.core.models import Status
from orchestrator.run.verdict import NOT_RUN, Side, SideStatus, new_splats

GOOD, BAD, SKIP, RETRY, ABORT = "good", "bad", "skip", "retry", "abort"


class Mode(str, Enum):
    TEST = "test"      # the first commit where the selected tests fail
    BUILD = "build"    # the first commit that does not build
    SPLAT = "splat"    # the first commit whose kernel shows a splat the good end does not
    FIXED = "fixed"    # the first commit where the selected tests pass


class Build(str, Enum):
    OK = "ok"
    FAILED = "failed"              # the compiler or the link failed
    UNSATISFIABLE = "unsatisfiable"  # Kconfig dropped an option the config asks for


@dataclass(frozen=True)
class Step:
    outcome: str     # good, bad, skip, retry, abort; with --fixed: old, new, skip, retry, abort
    reason: str


def _before_harness(side: Side) -> bool:
    """The kernel died or hung before any selected test started: nothing
    about the tests is known, only that this kernel did not come up."""
    return (side.status == SideStatus.ERROR and side.died_in is None
            and all(t.status == Status.MISS and t.message == NOT_RUN
                    for t in side.tests.values()))


def tests_outcome(side: Side, good_end: Side | None, attempt: int) -> Step:
    """--test (and, with terms swapped, --fixed): bad when a selected test
    did not pass, or skipped where the good end ran it."""
    if side.status == SideStatus.ERROR and side.infra:
        return Step(ABORT, f"infrastructure: {side.reason}")
    if _before_harness(side):
        return Step(RETRY if attempt == 0 else SKIP,
                    f"the kernel did not reach the tests ({side.reason})"
                    + ("; trying once more" if attempt == 0 else "; skipped after a retry"))
    failed = []
    for name, t in side.tests.items():
        if t.status == Status.SKIP:
            ran = good_end is not None and good_end.tests.get(name) is not None \
                and good_end.tests[name].status != Status.SKIP
            if ran:
                failed.append(f"{name} skipped where the good end ran it ({t.message})")
            continue
        if t.status == Status.FLAKY:
            bad_runs = sum(o != Status.PASS.value for o in t.outcomes)
            failed.append(f"{name} failed {bad_runs} of {len(t.outcomes)} runs")
        elif t.status != Status.PASS:
            failed.append(f"{name} {t.status.value}"
                          + (f" ({t.message[:120]})" if t.message else ""))
    if side.died_in:
        failed.append(f"the kernel died during {side.died_in}")
    if failed:
        return Step(BAD, "; ".join(dict.fromkeys(failed)))
    if not any(t.status == Status.PASS for t in side.tests.values()):
        # Every selected test skipped on both ends: nothing was tested.
        return Step(SKIP, "no selected test ran")
    return Step(GOOD, "every selected test passed")


def classify(mode: Mode, build: Build, side: Side | None, good_end: Side | None = None,
             attempt: int = 0) -> Step:
    """The step's outcome. `side` is None when nothing booted (a build
    failure, or --build mode); `attempt` counts earlier boots of this commit
    that did not reach the tests."""
    if mode == Mode.BUILD:
        if build == Build.OK:
            return Step(GOOD, "builds")
        if build == Build.UNSATISFIABLE:
            return Step(SKIP, "the config cannot be satisfied at this commit")
        return Step(BAD, "does not build")
    if build == Build.UNSATISFIABLE:
        return Step(SKIP, "the config cannot be satisfied at this commit")
    if build == Build.FAILED:
        return Step(SKIP, "does not build")
    if side is None:
        raise ValueError("a built kernel in a boot mode needs its judged side")
    if mode == Mode.SPLAT:
        if side.status == SideStatus.ERROR and side.infra:
            return Step(ABORT, f"infrastructure: {side.reason}")
        new = new_splats(good_end.splats if good_end else [], side.splats)
        if new:
            return Step(BAD, f"new {new[0].kind}: {new[0].title}"
                        + (f" (and {len(new) - 1} more)" if len(new) > 1 else ""))
        if _before_harness(side) and not side.splats:
            return Step(RETRY if attempt == 0 else SKIP, f"the kernel did not come up "
                        f"({side.reason})")
        return Step(GOOD, "no splat the good end did not show")
    step = tests_outcome(side, good_end, attempt)
    if mode == Mode.FIXED:
        # git bisect --term-old=old --term-new=new: fixed (passing) is new.
        return Step({GOOD: "new", BAD: "old"}.get(step.outcome, step.outcome), step.reason)
    return step
