"""The guest tests a run's series is expected to fix: its targets.

A test that fails on the baseline and still fails on the patched kernel is
the series' failure only when the series was meant to fix it; any other
series (one a nightly query found, a developer's unrelated mm change) would
otherwise fail for every test the tree already fails. The targets, by the
first rule that applies:

  expect-fixed  --expect-fixed PATTERN... (NIGHTLY.toml's per-series
                expect_fixed sets the same flag on its cells): the tests the
                patterns name; `--expect-fixed none`, no test.
  touched       the guest suite's about.toml (guest/about.py): the tests an
                entry names whose kernel paths the series touches, and every
                test no entry says anything about.
  all           no about.toml beside the tests: every test, as before there
                was a rule (a still-failing test never passes unseen).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.errors import BadInput
from orchestrator.guest import about, selection

NONE = "none"
MAX_TOUCHED = 50   # files run.json lists; the count is always whole


class Rule(enum.StrEnum):
    EXPECT_FIXED = "expect-fixed"
    TOUCHED = "touched"
    ALL = "all"


@dataclass
class Targets:
    rule: Rule
    tests: list[str]
    patterns: list[str] | None = None          # --expect-fixed, as given
    about: list[str] = field(default_factory=list)    # the about.toml files read
    touched: list[str] = field(default_factory=list)  # the files the series touches


def check_patterns(patterns: list[str] | None, expected: list[str]) -> None:
    """--expect-fixed against the collected tests, before any work: a
    pattern that names no test is a typo that would pass a series unseen."""
    if patterns is None:
        return
    if NONE in patterns:
        if patterns != [NONE]:
            raise BadInput("--expect-fixed none means no test is expected fixed: "
                           "give it alone")
        return
    for p in patterns:
        if not any(about.matches(p, t) for t in expected):
            raise BadInput(f"--expect-fixed {p}: matches none of the "
                           f"{len(expected)} selected guest tests (a node id, "
                           "a file or file::Class prefix, or a glob)")


_DIFF = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)
_SIDE = re.compile(r"^(?:---|\+\+\+) [ab]/(\S+)$|^(?:rename|copy) (?:from|to) (\S+)$", re.MULTILINE)


def touched_paths(mbox: str) -> list[str]:
    """Every path a patch in `mbox` names on either side of its diff, sorted."""
    got = set()
    for m in _DIFF.finditer(mbox):
        got.update(m.groups())
    for m in _SIDE.finditer(mbox):
        got.add(m.group(1) or m.group(2))
    return sorted(got)


def choose(patterns: list[str] | None, expected: list[str], guest_tests: list[str] | None,
           mbox: Path, suites: Sequence[Path] = ()) -> Targets:
    if patterns is not None:
        chosen = [] if patterns == [NONE] else [
            t for t in expected if any(about.matches(p, t) for p in patterns)]
        return Targets(Rule.EXPECT_FIXED, chosen, list(patterns))
    touched = touched_paths(mbox.read_text(errors="replace"))
    found = about.tests_about(expected, selection.rootdir(paths.data_root(), guest_tests,
                                                          suites), touched,
                              selection.as_suites(suites))
    if not found.about:
        return Targets(Rule.ALL, list(expected), touched=touched)
    chosen = set(found.named) | set(found.unnamed)
    return Targets(Rule.TOUCHED, [t for t in expected if t in chosen],
                   about=[str(a) for a in found.about], touched=touched)

