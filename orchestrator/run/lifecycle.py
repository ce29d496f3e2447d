"""How every run that keeps a record begins and ends: `orch test`, bisect,
check (run.json), a CI job (job.json) and the nightly (night.json).

    with Lifecycle(record):      # the record says "running", saved
        ...                      # the engine saves after each step and
                                 # finishes the record itself when it is done

Whatever stops the engine instead, the record is finished before the
exception goes on to cli.py, which prints its one line:

  an OrchError          its exit status, and its message as the record's error
  KeyboardInterrupt     "interrupted" (Ctrl-C, and SIGTERM: cli.py raises it)
  any other exception   a bug: an internal error with exit status 5 (INFRA),
                        its traceback in traceback.txt beside the record

so no record is left saying "running" by a run that is over.

Run is the record of a run directory (run.json); the CI job's and the
nightly's records live with their engines (fanout.job_run, fanout.nightly_run).
"""

from __future__ import annotations

import enum
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator import __version__
from orchestrator.core.errors import Exit, OrchError
from orchestrator.core.progress import Progress
from orchestrator.run import record, summary
from orchestrator.run.record import RunRecord, RunState, RunVerdict, now

TRACEBACK = "traceback.txt"


class Cause(enum.Enum):
    ERROR = "error"              # an OrchError: an expected failure, its own exit status
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM
    CRASH = "crash"              # any other exception: a bug


@dataclass(frozen=True)
class Ending:
    """Why a run stopped before its engine finished its record."""
    cause: Cause
    exit: Exit
    error: str                   # one line, as the record says it
    exception: BaseException


class Record(Protocol):
    """A record the lifecycle begins and ends."""
    dir: Path                    # where its file is, and traceback.txt beside it

    def start(self) -> None: ...                  # "running", saved

    def end(self, ending: Ending) -> None: ...    # finished and saved


class Lifecycle:
    """The context manager every command that writes a record runs in.
    `interrupted`: the record's error when interrupted (a bisect says how
    to resume)."""

    def __init__(self, rec: Record, interrupted: str = "interrupted"):
        self.rec, self.interrupted = rec, interrupted

    def __enter__(self) -> Record:
        self.rec.start()
        return self.rec

    def __exit__(self, kind, exc, tb) -> bool:
        ending = self._ending(exc)
        if ending is None:
            return False
        if ending.cause is Cause.CRASH:
            self._keep("".join(traceback.format_exception(kind, exc, tb)))
        try:
            self.rec.end(ending)
        except Exception:
            # The record could not be finished (a full disk, say): the
            # failure that stopped the run is still the one cli.py reports.
            self._keep("the record was not finished:\n" + traceback.format_exc())
        return False   # re-raised: cli.py prints its one line and exits

    def _ending(self, exc: BaseException | None) -> Ending | None:
        if isinstance(exc, OrchError):
            return Ending(Cause.ERROR, exc.exit, str(exc), exc)
        if isinstance(exc, KeyboardInterrupt):
            return Ending(Cause.INTERRUPTED, Exit.INTERRUPTED, self.interrupted, exc)
        if isinstance(exc, Exception):
            return Ending(Cause.CRASH, Exit.INFRA,
                          f"internal error: {type(exc).__name__}: {exc}", exc)
        return None    # no exception, or one that ends the process (SystemExit)

    def _keep(self, text: str) -> None:
        try:
            with open(self.rec.dir / TRACEBACK, "a") as f:
                f.write(text)
        except OSError:
            pass       # no room for it: the record and cli.py's line remain


# An OrchError's exit status as a run's verdict.
ERROR_VERDICTS = {Exit.BAD_INPUT: RunVerdict.BAD_INPUT, Exit.NO_APPLY: RunVerdict.NO_APPLY,
                  Exit.PATCHED_BUILD: RunVerdict.PATCHED_BUILD_FAILED,
                  Exit.INFRA: RunVerdict.INFRA_ERROR}


class Run:
    """A run directory and its run.json; `save()` after every change.
    `rec`: a record to go on with (orch bisect --resume), else a new one."""

    def __init__(self, run_dir: Path, argv: list[str], progress: Progress, *,
                 sandbox: bool = True, timeout: float | None = None,
                 json_out: Path | None = None, rec: RunRecord | None = None):
        self.dir = run_dir.resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs = self.dir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.progress, self.timeout, self.json_out = progress, timeout, json_out
        if rec is None:
            rec = RunRecord(__version__, argv, str(self.dir), now())
            rec.sandbox = "view" if sandbox else "off"
        rec.command = argv
        self.rec = rec
        self.deadline = (time.monotonic() + timeout) if timeout else None

    def start(self) -> None:
        r = self.rec
        r.state, r.verdict, r.exit_code, r.error, r.finished = (
            RunState.RUNNING, None, None, None, None)
        self.save()

    def end(self, ending: Ending) -> None:
        if ending.cause is Cause.INTERRUPTED:
            self.finish(ending.exit, RunVerdict.INTERRUPTED, ending.error,
                        RunState.INTERRUPTED)
        elif ending.cause is Cause.CRASH:
            self.finish(ending.exit, RunVerdict.INFRA_ERROR, ending.error[:500])
        else:
            self.finish(ending.exit, ERROR_VERDICTS.get(ending.exit, RunVerdict.ERROR),
                        ending.error)

    def left(self, limit: float, before: str) -> float:
        """`limit`, or less when the whole-run timeout is nearer."""
        if self.deadline is None:
            return limit
        rest = self.deadline - time.monotonic()
        if rest <= 0:
            raise OrchError(f"the whole-run timeout ({self.timeout:.0f}s) ran out "
                            f"before {before}", Exit.INFRA)
        return min(limit, rest)

    def save(self) -> None:
        self.rec.write(self.dir / "run.json")
        if self.json_out:
            self.rec.write(self.json_out)

    def say(self, msg: str) -> None:
        self.progress.say(msg)

    def finish(self, code: Exit, verdict: RunVerdict, error: str | None = None,
               state: RunState = RunState.DONE) -> int:
        self.rec.exit_code, self.rec.verdict, self.rec.error = int(code), verdict, error
        self.rec.state, self.rec.finished = state, now()
        self.save()
        return int(code)


def print_summary(run_dir: Path | None) -> None:
    """A finished (or stopped) run's summary on stderr, as `orch report`
    prints it, and where its directory is."""
    if run_dir is None or not (run_dir / "run.json").exists():
        return
    print(summary.summary(record.read(run_dir / "run.json")), file=sys.stderr)
    print(f"run directory: {run_dir}", file=sys.stderr)
