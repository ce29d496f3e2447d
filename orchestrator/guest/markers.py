"""The guest plugin's start/end lines, read back from the kernel console.

They are what is left when the kernel dies before pytest writes its JUnit
file: every test that ended keeps its outcome, and the test that started
but never ended is the one the kernel died in. Console text is untrusted:
ids and reasons are cleaned and capped, unknown statuses are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from orchestrator.core.models import Status
from orchestrator.core.sanitize import clean

_LINE = re.compile(r"^(?:\[\s*\d+\.\d+\]\s?)?orch-test: (start|end|done) ?(.*)$")
MAX_MARKS = 20000
REASON = "  # "   # between a node id and its reason: no node id holds it


@dataclass
class Marks:
    ended: dict[str, list[tuple[Status, str]]] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    done: int | None = None          # pytest's exit status, when the session ended

    @property
    def running(self) -> str | None:
        """The test that started last and never ended (a repeated test
        starts as often as it ends)."""
        if not self.started:
            return None
        last = self.started[-1]
        return last if self.started.count(last) > len(self.ended.get(last, [])) else None


def is_mark(line: str) -> bool:
    return bool(_LINE.match(line.strip()))


def parse(console: str) -> Marks:
    m = Marks()
    count = 0
    for line in console.splitlines():
        hit = _LINE.match(line.strip())
        if not hit:
            continue
        count += 1
        if count > MAX_MARKS:
            break
        kind, rest = hit.groups()
        if kind == "start":
            nodeid = clean(rest.strip(), 300)
            if nodeid:
                m.started.append(nodeid)
        elif kind == "end":
            status, _, rest = rest.partition(" ")
            nodeid, _, why = rest.partition(REASON)
            nodeid = clean(nodeid.strip(), 300)
            if status in {"PASS", "FAIL", "ERROR", "SKIP"} and nodeid:
                m.ended.setdefault(nodeid, []).append((Status(status), clean(why.strip(), 300)))
        elif kind == "done":
            try:
                m.done = int(rest.strip())
            except ValueError:
                pass
    return m
