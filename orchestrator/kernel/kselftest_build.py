"""Build the kernel's own selftests (tools/testing/selftests/<target>) from
the same source state, headers and build directory as a kernel, in the
build sandbox, and keep each target's install in the cache beside it.

`--kselftest TARGET[:TEST]` names what to run; a target builds once per
kernel (its key holds the kernel's key), so a rerun builds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import BadInput
from orchestrator.core.models import Kernel, KselftestBuild

# A target is a directory under tools/testing/selftests (some are nested:
# drivers/net, filesystems/binderfs); a test, one name in its list.
_TARGET = re.compile(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")
_TEST = re.compile(r"[A-Za-z0-9_.+-]+")
MAX_SPECS = 64


@dataclass(frozen=True)
class Spec:
    """One --kselftest value: a target, and one test of it or all of them."""
    target: str
    test: str | None = None

    @property
    def text(self) -> str:
        return self.target if self.test is None else f"{self.target}:{self.test}"


def parse_specs(values: Sequence[str]) -> tuple[Spec, ...]:
    """--kselftest values (repeatable, each may hold several, comma
    separated), in order, without repeats; a bad one is BadInput."""
    out: list[Spec] = []
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            target, _, test = item.partition(":")
            target = target.strip("/")
            if (not _TARGET.fullmatch(target) or ".." in target.split("/")
                    or "." in target.split("/") or test and not _TEST.fullmatch(test)
                    or ":" in item and not test):
                raise BadInput(f"--kselftest {item!r}: expected TARGET or TARGET:TEST, "
                               "a directory of tools/testing/selftests and one test of its list")
            spec = Spec(target, test or None)
            if spec not in out:
                out.append(spec)
    if len(out) > MAX_SPECS:
        raise BadInput(f"--kselftest: {len(out)} given, at most {MAX_SPECS}")
    return tuple(out)


def targets(specs: Sequence[Spec]) -> list[str]:
    """The targets to build, once each, in the order first named."""
    return list(dict.fromkeys(s.target for s in specs))


def check_targets(repo: Path, commit: str, names: Sequence[str]) -> None:
    """Every target exists at `commit` (its Makefile), before anything is
    built: a typo is BadInput, not a failed build. STUB (part A)."""
    raise NotImplementedError


def build_for(src: Path, bd, kernel: Kernel, names: Sequence[str],
              log_for: Callable[[str], Path], side: str, opts) -> list[KselftestBuild]:
    """Each target of `names` for `kernel` (built from `src` in build dir
    `bd`, a buildtree.BuildDir, with build.BuildOptions `opts`): found in the
    cache, else built and kept. `log_for(target)` is its log. A failure is
    OrchError: Exit.INFRA on the baseline, Exit.PATCHED_BUILD on the patched
    side. STUB (part A)."""
    raise NotImplementedError
