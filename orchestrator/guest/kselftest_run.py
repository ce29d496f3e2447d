"""Run kselftests in the guest and read their KTAP output into test results.

Each kernel runs its own build of each selected target (Kernel.kselftests)
with the kernel's own runner, run_kselftest.sh, from a writable ext4 disk:
the tests create files in their working directory, which neither the
read-only 9p root nor tmpfs serve as they need. One KTAP file per target,
parsed by guest/ktap.py; ids are kselftest/<collection>/<test>.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.models import Kernel, KselftestBuild, TestResult

PREFIX = "kselftest/"


@dataclass(frozen=True)
class Selected:
    """One target to run on one kernel: its build, and the tests named
    (TARGET:TEST), or () for the target's whole list."""
    build: KselftestBuild
    tests: tuple[str, ...] = ()


def test_id(collection: str, test: str) -> str:
    return f"{PREFIX}{collection}/{test}"


def plan(kernel: Kernel, specs: Sequence[str]) -> list[Selected]:
    """What `kernel` runs of the --kselftest `specs` (Spec.text values): the
    build of each target among kernel.kselftests. STUB (part C)."""
    raise NotImplementedError


def expected_ids(selected: Sequence[Selected]) -> list[str]:
    """The ids a boot must report for `selected`: the named tests, or every
    test of the target's list. STUB (part C)."""
    raise NotImplementedError


def read(results: Path, console_text: str, selected: Sequence[Selected],
         expected: Sequence[str]) -> list[TestResult]:
    """The kselftest results of one boot. STUB (part C)."""
    raise NotImplementedError
