"""What one guest reported, by pytest node id: its JUnit file when pytest got
to write it, else the start/end marks its plugin left on the console.

Every name is mapped back to the node id the host collected (the one test
id everywhere); a test repeated with --repeat N is one entry whose outcomes
are its N runs, FLAKY when they differ.

A guest runs one pytest session per suite (selection.sessions): the
builtin's writes junit.xml and harness-rc, as it always did, and each
--suite's junit-NAME.xml and harness-rc-NAME. Which sessions ran is known
from the ids expected of them (a session with none ran nothing that
counts); all their results are merged into one report, which is finished
only when every one of them is.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import sanitize, untrusted
from orchestrator.core.models import Status, TestResult
from orchestrator.guest import junit, markers, selection


@dataclass
class Reported:
    tests: list[TestResult]
    junit: Path | None         # a JUnit file that parsed (the first session's, when all did)
    junit_error: str           # why there is none ("" when there is)
    harness_rc: int | None     # the guest pytest's exit status (the worst of its sessions')
    died_in: str | None        # the test running when the guest stopped reporting
    finished: bool             # pytest's sessions ended (JUnit and exit status written)
    # The pytest sessions read, by name (selection.GUEST_TESTS for the
    # builtin): none when the guest was to run no pytest at all (only kselftests).
    sessions: list[str] = field(default_factory=list)
    junits: list[Path] = field(default_factory=list)   # every JUnit file that parsed


def _suite_of_file(name: str) -> str | None:
    """The suite a results file is of (junit-NAME.xml, harness-rc-NAME), if any."""
    for head, tail in (("junit-", ".xml"), ("harness-rc-", "")):
        if name.startswith(head) and name.endswith(tail) and len(name) > len(head + tail):
            suite = name[len(head):len(name) - len(tail)]
            if selection.SUITE_NAME.match(suite) and suite not in selection.RESERVED:
                return suite
    return None


def session_file(name: str) -> bool:
    """A --suite session's JUnit or exit status file (junit-NAME.xml,
    harness-rc-NAME): kept with the results, as junit.xml and harness-rc are."""
    return _suite_of_file(name) is not None


def harness_rc(results: Path, name: str = selection.GUEST_TESTS) -> int | None:
    text = untrusted.read_text(results / selection.result_files(name)[1], 64)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def suite_names(results: Path, suites: Sequence | None) -> list[str]:
    """The suites' names: as given (selection.Suite, a --suite path or a
    name), else those the results directory has files of."""
    if suites is not None:
        return [s.name if isinstance(s, selection.Suite) else Path(s).name for s in suites]
    try:
        entries = sorted(p.name for p in results.iterdir())
    except OSError:
        return []
    found = [_suite_of_file(n) for n in entries]
    return list(dict.fromkeys(n for n in found if n is not None))


def read(results: Path, console_text: str, expected: list[str], repeat: int = 1,
         suites: Sequence | None = None) -> Reported:
    """`suites`: the --suite suites the guest ran (selection.Suite, paths or
    names); None: those whose files the results directory holds (a session
    that wrote none is then taken for the builtin's, whose files it lacks)."""
    names = suite_names(results, suites)
    marks = markers.parse(console_text)
    groups: dict[str, list[str]] = {}
    for e in expected:
        groups.setdefault(selection.session_name(e, names), []).append(e)
    if not expected:
        groups[selection.GUEST_TESTS] = []   # nothing known of it: the builtin, as before suites
    # The sessions with ids expected of them (a kselftest's is no session's).
    order = [n for n in [selection.GUEST_TESTS, *names] if n in groups]
    raw: list[TestResult] = []
    parsed_files: list[Path] = []
    errors: list[str] = []
    rcs: list[int | None] = []
    for name in order:
        keys = {selection.junit_key(e): e for e in groups[name]}
        path = results / selection.result_files(name)[0]
        try:
            parsed = junit.parse(path)
        except junit.JUnitError as e:
            parsed = None
            errors.append(str(e))
        if parsed is not None:
            parsed_files.append(path)
            for t in parsed:
                cls, _, tname = t.name.rpartition("::")
                key = f"{cls}::{selection.base_id(tname, repeat)}"
                raw.append(dataclasses.replace(t, name=keys.get(key, t.name)))
        else:
            # No JUnit file: the kernel died, the guest hung, or pytest crashed.
            # What the console marks say ended is all there is.
            for nodeid, ends in marks.ended.items():
                of = selection.session_name(selection.base_id(nodeid, repeat), names)
                # The builtin's are all but the suites' (as before suites).
                mine = of not in names if name == selection.GUEST_TESTS else of == name
                if not mine:
                    continue
                for status, why in ends:
                    raw.append(TestResult(selection.base_id(nodeid, repeat), status, why,
                                          properties={"source": "console marks"}))
        rcs.append(harness_rc(results, name))
    all_parsed = len(parsed_files) == len(order)
    rc = _worst(rcs)
    # No session at all (kselftests alone): no pytest to wait for.
    finished = all_parsed and rc is not None if order else True
    running = marks.running
    died_in = selection.base_id(running, repeat) if running and not finished else None
    junit_path = parsed_files[0] if all_parsed and parsed_files else None
    return Reported(aggregate(raw, repeat), junit_path, errors[0] if errors else "", rc,
                    died_in, finished, order, parsed_files)


def _worst(rcs: list[int | None]) -> int | None:
    """One exit status for the sessions: none when one wrote none, the
    first that is not 0 or 1 (pytest did not run its tests), else the
    highest (1: a test failed)."""
    if not rcs or any(rc is None for rc in rcs):
        return None
    return next((rc for rc in rcs if rc not in (0, 1)), max(rcs))


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
