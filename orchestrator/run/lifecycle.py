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

What a command shows of its run at the end is print_summary()'s: the
summary on stdout (the result; progress and errors go to stderr), or, when
the input was bad, nothing at all: its one error line is the whole answer,
so the run's progress lines are held back for its first seconds
(HeldProgress) and the run directory it made is removed again.
"""

from __future__ import annotations

import enum
import os
import shutil
import socket
import sys
import threading
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


# How long a run's progress lines are held back: most bad input is found
# by then (flags, files, configs, the selection, a Message-ID lore does not
# know, a tree that is not there), and a run that found it says only its
# one error line. Longer, and a log would show nothing for too long.
HOLD_S = 5.0
_HELD = "held"    # the status line key of the newest held line (a terminal's)


class HeldProgress:
    """A run's progress: step lines held back for its first HOLD_S seconds
    or until its first build or boot reports (a live status: real work has
    begun), then printed in order with the times they were said;
    dropped by discard() when the run ends with bad input. On a terminal the
    newest held line shows as the status line meanwhile, so nothing looks
    stuck."""

    def __init__(self, inner: Progress, hold: float = HOLD_S):
        self.inner = inner
        self._held: list[tuple[str, float]] | None = []   # None: no longer holding
        self._lock = threading.Lock()
        self._timer = threading.Timer(hold, self.release)
        self._timer.daemon = True
        self._timer.start()

    def say(self, msg: str) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append((msg, time.monotonic()))
                self.inner.status(_HELD, msg)
                return
        self.inner.say(msg)

    def status(self, key: str, text: str | None) -> None:
        self.release()
        self.inner.status(key, text)

    def release(self) -> None:
        self._end(show=True)

    def discard(self) -> None:
        self._end(show=False)

    def done(self) -> None:
        self.release()
        self.inner.done()

    def _end(self, show: bool) -> None:
        # Under the lock, so a line said meanwhile by another thread (a
        # build's) comes after the held ones.
        with self._lock:
            self._timer.cancel()
            held, self._held = self._held, None
            if held is None:
                return
            self.inner.status(_HELD, None)
            for msg, at in held if show else []:
                self.inner.say(msg, at)


# The run directories this process made (each with the topmost directory
# it had to create for it), for print_summary() to remove again when the
# run's input was bad. A directory that was there before is never removed.
_MADE: dict[Path, Path] = {}


def _make(run_dir: Path) -> None:
    top = run_dir
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    existed = run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    if not existed:
        _MADE[run_dir] = top


class Run:
    """A run directory and its run.json; `save()` after every change.
    `rec`: a record to go on with (orch bisect --resume), else a new one."""

    def __init__(self, run_dir: Path, argv: list[str], progress: Progress, *,
                 sandbox: bool = True, timeout: float | None = None,
                 json_out: Path | None = None, rec: RunRecord | None = None):
        self.dir = run_dir.resolve()
        _make(self.dir)
        self.logs = self.dir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.progress = HeldProgress(progress)
        self.timeout, self.json_out = timeout, json_out
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
        r.pid, r.host = os.getpid(), socket.gethostname()
        self.save()

    def end(self, ending: Ending) -> None:
        if ending.exit == Exit.BAD_INPUT:
            self.progress.discard()     # its one error line says it all
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
    """What a command shows of its run at the end (test, bisect, check): the
    summary on stdout, as `orch report` prints it, and where its directory
    is. A run that ended with bad input shows nothing (cli.py prints its
    one error line) and leaves no directory behind, unless it was there
    before the run, the error names a file in it, or it holds kernels built
    or booted before the input was found bad (a bisect's end that is not
    what it was said to be): then one line on stderr says it is kept."""
    if run_dir is None or not (run_dir / "run.json").exists():
        return
    rec = record.read(run_dir / "run.json")
    if rec.verdict != RunVerdict.BAD_INPUT:
        print(summary.summary(rec))
        print(f"run directory: {run_dir}")
    elif _did_work(rec):
        print(f"run directory: {run_dir} (kept: what was built and booted before the input "
              "was found bad)", file=sys.stderr)
    else:
        _remove_made(run_dir.resolve(), rec.error or "")


def _did_work(rec: RunRecord) -> bool:
    built = any(c.side(s).build.status != record.BuildStatus.PENDING
                for c in rec.configs for s in ("baseline", "patched"))
    return built or bool(rec.bisect and rec.bisect.steps)


def _remove_made(run_dir: Path, error: str) -> None:
    top = _MADE.pop(run_dir, None)
    if top is None or str(run_dir) in error:
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    # The parents it made too (orch-runs/), unless another run is in them now.
    d = run_dir
    while d != top:
        d = d.parent
        try:
            d.rmdir()
        except OSError:
            return
