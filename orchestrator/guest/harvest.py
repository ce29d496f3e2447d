"""What one guest reported, by pytest node id: its JUnit file when pytest got
to write it, else the start/end marks its plugin left on the console.

Every name is mapped back to the node id the host collected (the one test
id everywhere); a test repeated with --repeat N is one entry whose outcomes
are its N runs, FLAKY when they differ.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import sanitize, untrusted
from orchestrator.core.models import Status, TestResult
from orchestrator.guest import junit, markers, selection


@dataclass
class Reported:
    tests: list[TestResult]
    junit: Path | None         # a JUnit file that parsed
    junit_error: str           # why there is none ("" when there is)
    harness_rc: int | None     # the guest pytest's exit status
    died_in: str | None        # the test running when the guest stopped reporting
    finished: bool             # pytest's session ended (JUnit and exit status written)


def harness_rc(results: Path) -> int | None:
    text = untrusted.read_text(results / "harness-rc", 64)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def read(results: Path, console_text: str, expected: list[str], repeat: int = 1) -> Reported:
    keys = {selection.junit_key(e): e for e in expected}
    marks = markers.parse(console_text)
    raw: list[TestResult] = []
    path: Path | None = results / "junit.xml"
    error = ""
    try:
        parsed = junit.parse(path)
    except junit.JUnitError as e:
        parsed, path, error = None, None, str(e)
    if parsed is not None:
        for t in parsed:
            cls, _, name = t.name.rpartition("::")
            key = f"{cls}::{selection.base_id(name, repeat)}"
            raw.append(dataclasses.replace(t, name=keys.get(key, t.name)))
    else:
        # No JUnit file: the kernel died, the guest hung, or pytest crashed.
        # What the console marks say ended is all there is.
        for nodeid, ends in marks.ended.items():
            for status, why in ends:
                raw.append(TestResult(selection.base_id(nodeid, repeat), status, why,
                                      properties={"source": "console marks"}))
    rc = harness_rc(results)
    finished = parsed is not None and rc is not None
    running = marks.running
    died_in = selection.base_id(running, repeat) if running and not finished else None
    return Reported(aggregate(raw, repeat), path, error, rc, died_in, finished)


def aggregate(raw: list[TestResult], repeat: int = 1) -> list[TestResult]:
    """One entry per test: with --repeat, its runs' outcomes, and FLAKY when
    they differ (never the best of them: a test that flips is no verdict)."""
    groups: dict[str, list[TestResult]] = {}
    for t in raw:
        groups.setdefault(t.name, []).append(t)
    out = []
    for name, runs in groups.items():
        first = runs[0]
        if repeat <= 1 and len(runs) == 1:
            out.append(first)
            continue
        statuses = [t.status for t in runs]
        bad = next((t for t in runs if t.status != Status.PASS), first)
        if len(set(statuses)) == 1:
            status, message = statuses[0], bad.message
        else:
            counts = Counter(s.value for s in statuses)
            status = Status.FLAKY
            message = (", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
                       + f" in {len(runs)} runs; " + bad.message)[:sanitize.MAX_TEXT]
        out.append(dataclasses.replace(
            first, status=status, message=message, seconds=sum(t.seconds for t in runs),
            properties=bad.properties, outcomes=[s.value for s in statuses]))
    return out
