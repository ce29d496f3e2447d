"""Exit statuses and the one exception type the CLI turns into a one-line error."""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    OK = 0            # the patched kernel passed every test
    TESTS_FAILED = 1  # the patched kernel failed tests (or splatted)
    BAD_INPUT = 2     # bad invocation or input: unknown msgid, bad mbox, no tree
    NO_APPLY = 3      # the series does not apply
    PATCHED_BUILD = 4 # the patched build failed
    INFRA = 5         # baseline build, VM, harness timeout: not the series' fault
    # One meaning per number across commands (a script need not know which
    # command it ran): 3 was also "inconclusive" and "incomplete" once.
    INCONCLUSIVE = 6  # orch bisect: only skipped commits left, or not confirmed
    INCOMPLETE = 7    # a run that never finished, a night whose job did not report
    INTERRUPTED = 130


class OrchError(Exception):
    """An expected failure: printed as one line, mapped to an exit status."""

    def __init__(self, message: str, exit: Exit = Exit.INFRA):
        super().__init__(message)
        self.exit = exit


class BadInput(OrchError):
    def __init__(self, message: str):
        super().__init__(message, Exit.BAD_INPUT)
