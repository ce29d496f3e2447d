"""Small pieces the nightly reports (JUnit, KCIDB, the mail summary) share:
one-line untrusted text, a cell's human name, the meaning of an exit code.

Titles, details and messages in a Night came from mails and guests; every
report passes them through one_line() or sanitize.clean() before use."""

from __future__ import annotations

import re

from orchestrator.core.errors import Exit
from orchestrator.core.sanitize import clean
from orchestrator.nightly.night import Cell, Night, SeriesRev
from orchestrator.run.record import RunState

# What clean() keeps but a one-line field must not have: line breaks and tabs
# (a title "a\nFAIL ..." would forge a line of its own in the summary), C1
# controls (\x9b is a CSI on some terminals), Unicode line/paragraph
# separators and the bidi overrides that make text read other than it is.
_NOT_ONE_LINE = re.compile("[\t\n\r\x80-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Lone surrogates (json.loads makes one of "\\ud800") fail any UTF-8 write,
# so a report would be lost to one bad character; non-characters too.
_UNENCODABLE = re.compile("[\ud800-\udfff\ufffe\uffff]")

# A cover letter's subject starts with "[PATCH RFC v3 0/2]"; the version is
# shown on its own, so the prefix only costs width.
_SUBJECT_TAGS = re.compile(r"^\s*(\[[^\]]*\]\s*)+")

EXIT_MEANING = {
    0: "nothing new fails",
    1: "something new fails",
    2: "bad NIGHTLY.toml",
    int(Exit.INCOMPLETE): "incomplete: a job of the night did not report",
    5: "the night produced no result",
}


def printable(text: str | None, limit: int = 2000) -> str:
    """Untrusted text, lines kept, that prints and encodes as UTF-8."""
    return _UNENCODABLE.sub("?", clean(text, limit))


def one_line(text: str | None, limit: int = 200) -> str:
    """Untrusted text as one printable line of at most `limit` characters."""
    text = _NOT_ONE_LINE.sub(" ", printable(text, 10 * limit))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def short_title(title: str | None, limit: int = 40) -> str:
    stripped = _SUBJECT_TAGS.sub("", title or "")
    return one_line(stripped or title or "?", limit)


def series_index(night: Night) -> dict[str, SeriesRev]:
    return {s.key: s for s in night.plan.series}


def series_name(night: Night, key: str | None, version: int | None = None,
                limit: int = 40) -> str:
    """"<short title> v<N>" for a series key; the key itself when the plan
    does not know it (a record written by a newer orch, say)."""
    rev = series_index(night).get(key or "")
    if rev is None:
        return one_line(key or "?", limit) + (f" v{version}" if version else "")
    return f"{short_title(rev.title, limit)} v{version or rev.version}"


def cell_name(night: Night, cell: Cell, limit: int = 40) -> str:
    """A cell as people read it: "<series short title> v<N> / <tree> / <config>"."""
    return (f"{series_name(night, cell.series, cell.version, limit)} / "
            f"{one_line(cell.tree, 60)} / {one_line(cell.config, 40)}")


def exit_meaning(code: int | None, state: RunState = RunState.DONE) -> str:
    if code is None:
        return "still running" if state == RunState.RUNNING else f"no exit status ({one_line(state)})"
    return EXIT_MEANING.get(code, f"exit status {code}")
