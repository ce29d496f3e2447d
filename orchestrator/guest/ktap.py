"""The kernel selftests' KTAP output, read into orch's per-test statuses.

It reads what tools/testing/selftests/run_kselftest.sh prints (its runner.sh
and ktap_helpers.sh, and the kselftest.h and kselftest_harness.h writers in
each test program), from a file or from a guest's serial console:

    TAP version 13
    1..2
    # timeout set to 45
    # selftests: cachestat: test_cachestat     <- the runner starts a test
    # TAP version 13                           <- the program's own KTAP,
    # 1..9                                        one "# " deeper
    # ok 1 bad file descriptor recognized
    # ok 7 # SKIP tmpfilecachestat is on tmpfs
    ok 1 selftests: cachestat: test_cachestat  <- the runner's verdict on it
    not ok 2 selftests: mincore: mincore_selftest # TIMEOUT 45 seconds

Nesting comes from each line's prefix: the runner's "# " and KTAP's
indentation count alike, so a program's KTAP inside the runner's is its
subtests. A list's results may sit deeper than its version line or
"# Subtest:" header (kunit_tool ignores indentation altogether). Console
timestamps ("[   12.345678] ", "[    T1] ") are dropped first, and on a
console a line of the other kind than the document's version line (the
kernel's timestamped lines amid the runner's) is never structure: a KUnit
module a test loads cannot end the runner's lists. A version line after a
finished document starts over (KUnit's at boot, then the runner's). Any
other line is a diagnostic of the next result in the innermost open list,
so a kernel splat printed during a test lands in that test's diagnostics
(the last MAX_DIAG lines are kept).

Statuses, by result line and directive (the text after "#"; SKIP may be
spelt SKIPPED, any case). KTAP says a parser falls back to ok / not ok for a
directive it does not know, and kunit_tool changes a status only for SKIP:

    ok                    PASS
    not ok                FAIL
    ok|not ok # SKIP why  SKIP, message "why" (KTAP allows either result)
    ok # XFAIL why        SKIP, message "XFAIL why". The test saw the failure
                          it expects, so it is no failure: kselftest counts
                          it with the passes and kunit_tool as SUCCESS. But it
                          did not show the feature working (mm/cow.c uses it
                          for a known leak; seccomp_bpf spells its SKIP as
                          XFAIL), and orch's pytest side records pytest's
                          xfail as SKIP too. So a test that passes on the
                          baseline and is XFAIL on the patched kernel shows up
                          as "now skipped" instead of being hidden.
    ok # XPASS why        PASS, message "XPASS why". kselftest.h prints it as
                          "ok" and counts it as a success; a pytest xpass is a
                          PASS too (the guest suite is not xfail_strict). A
                          program that exits with KSFT_XPASS as a whole is
                          already "not ok ... # exit=3" from the runner.
    not ok # TIMEOUT 45   ERROR: the runner stopped a hung test. Same as a
                          pytest test that the guest died or hung in.
    not ok # ERROR why    ERROR (KTAP's ERROR; kselftest.h writes "# error")
    not ok # TODO why     SKIP, message "TODO why" (TAP: a known-broken test
                          failing is no failure; like XFAIL)
    ok # TODO             PASS
    not ok # XFAIL/XPASS  FAIL (no writer prints these; fall back to not ok)
    ok # TIMEOUT/ERROR    PASS (KTAP gives those with not ok only; ok means ok)

Ids: a top-level result "selftests: T: X" is "kselftest/T/X"; other names
are "kselftest/NAME". A subtest is "<its parent's id>/<its name>". The
parent's own result is kept too, because it is the runner's verdict on the
whole program (a TIMEOUT, an exit status) and its id is stable: kselftest.h
programs name each result by its message ("cachestat works with ..."), which
can change with the outcome. Results without a name (kselftest.h puts the
text of "ok 7 # SKIP text" after the directive) are named by that text,
else "#N" after their number. Two siblings with the same name: the later is
"NAME#N".

Truncated output (a guest that died): the test that started and never
ended is ERROR, and planned tests that were never reported are MISS, like
the pytest side's console marks (markers.py). A test has started when the
runner printed "# selftests: T: X" for it, when kselftest_harness.h printed
" RUN NAME ..." or when its own KTAP began; "# timeout set to 45" comes
before the header and starts nothing. With `expected` (the top-level ids the
caller asked for), every expected id not reported is MISS; without it the
top level's missing plan entries are MISS as "kselftest/#N".

The output is from the kernel under test and is untrusted: lines, line
length, plans, nesting, tests, names, diagnostics and problems are capped,
text is cleaned (core.sanitize), every regular expression is linear, and
repeated or out-of-order numbers are noted in `problems`, never fatal (the
first report of a test stands). Nothing raises on bad input.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import untrusted
from orchestrator.core.models import Status, TestResult
from orchestrator.core.sanitize import MAX_TEXT, clean

ROOT = "kselftest"
MAX_BYTES = 16 * 1024 * 1024  # read of a file; text given to parse() is cut there too
MAX_LINES = 500_000
MAX_LINE = 4096               # characters of a line that are looked at
MAX_PLAN = 20_000             # a larger 1..N is refused (MISS entries would be made for it)
MAX_TESTS = 50_000            # results and MISS entries in all
MAX_DEPTH = 8                 # nested lists
MAX_DIAG = 40                 # diagnostic lines kept per test, the last ones
DIAG_WIDTH = 300
NAME_WIDTH = 200
ID_WIDTH = 300
MAX_PROBLEMS = 50

DIED = "started and never ended: the output stops here (the guest died or hung during this test)"
CUT = "started and never ended: the test program it belongs to stopped first"
NO_RESULT = "started, but its result line is missing"
UNREACHED = "not reached: the output stops before it"
UNREPORTED = "planned but never reported"
NO_KTAP = "no KTAP output"


class Directive(enum.StrEnum):
    NONE = ""
    SKIP = "SKIP"
    TODO = "TODO"
    XFAIL = "XFAIL"
    XPASS = "XPASS"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"


# (the line says "ok", its directive) -> status; the module docstring says why.
STATUS: dict[tuple[bool, Directive], Status] = {
    (True, Directive.NONE): Status.PASS,
    (False, Directive.NONE): Status.FAIL,
    (True, Directive.SKIP): Status.SKIP,
    (False, Directive.SKIP): Status.SKIP,
    (True, Directive.XFAIL): Status.SKIP,
    (False, Directive.XFAIL): Status.FAIL,
    (True, Directive.XPASS): Status.PASS,
    (False, Directive.XPASS): Status.FAIL,
    (True, Directive.TIMEOUT): Status.PASS,
    (False, Directive.TIMEOUT): Status.ERROR,
    (True, Directive.ERROR): Status.PASS,
    (False, Directive.ERROR): Status.ERROR,
    (True, Directive.TODO): Status.PASS,
    (False, Directive.TODO): Status.SKIP,
}
_FAILING = {Status.FAIL, Status.ERROR, Status.MISS}

# Each is linear: no nested or overlapping quantifiers.
_STAMP = re.compile(r"\[[ \t]*\d{1,12}\.\d{1,12}\](?:\[[ \t]*[A-Z]?\d{1,12}\])? ?")
_PREFIX = re.compile(r"(?:[ \t]|#(?=[ \t]|$))*")
_VERSION = re.compile(r"(K?TAP) version (\d{1,6})")
_RESULT = re.compile(r"(ok|not ok)[ \t]+(\d{1,9})(?![^ \t])")
_PLAN = re.compile(r"1\.\.(\d{1,12})")
_RUN = re.compile(r"RUN[ \t]+(\S{1,512}) \.\.\.")


@dataclass(frozen=True)
class KtapTest:
    """One result line (or one test the output never finished or reached)."""
    id: str
    status: Status
    message: str = ""
    diagnostics: tuple[str, ...] = ()  # the lines before its result, the last MAX_DIAG
    dropped: int = 0                   # diagnostic lines before the kept ones
    number: int = 0                    # its KTAP number among its siblings
    directive: Directive = Directive.NONE
    parent: str | None = None

    def result(self) -> TestResult:
        props = {"source": "ktap", "number": str(self.number)}
        if self.directive:
            props["directive"] = self.directive.value
        if self.parent:
            props["parent"] = self.parent
        return TestResult(self.id, self.status, self.message, properties=props)


@dataclass
class Report:
    tests: list[KtapTest]
    found: bool             # a KTAP or TAP version line started the output
    plan: int | None        # the top level's 1..N
    complete: bool          # the top level ran to its end: plan met, nothing running
    died_in: str | None     # the top-level test running when the output stopped
    problems: list[str] = field(default_factory=list)

    def results(self) -> list[TestResult]:
        return [t.result() for t in self.tests]

    def by_id(self) -> dict[str, KtapTest]:
        return {t.id: t for t in self.tests}


def parse(text: str, *, root: str = ROOT, expected: Iterable[str] | None = None) -> Report:
    """The tests in KTAP `text`; `expected` top-level ids missing from it are MISS."""
    p = _Parser(root, expected)
    if len(text) > MAX_BYTES:
        text = text[:MAX_BYTES]
        p.cut(f"output longer than {MAX_BYTES} characters: the rest is not read")
    for n, line in enumerate(text.splitlines()):
        if n >= MAX_LINES:
            p.cut(f"output longer than {MAX_LINES} lines: the rest is not read")
            break
        p.feed(line)
    return p.finish()


def parse_file(path: Path, *, root: str = ROOT, expected: Iterable[str] | None = None) -> Report:
    """parse() of a file the guest wrote: a regular file (no link followed),
    its first MAX_BYTES read; one it cannot read is a report with a problem."""
    try:
        data = untrusted.read_head(path, MAX_BYTES + 1)
    except untrusted.UntrustedError as e:
        return _Parser(root, expected, str(e)).finish()
    text = data[:MAX_BYTES].decode(errors="replace")
    report = parse(text, root=root, expected=expected)
    if len(data) > MAX_BYTES:
        report.problems.append(
            f"{path.name} is larger than {MAX_BYTES} bytes: the rest is not read")
    return report


class _Lines:
    """Diagnostic lines: the last MAX_DIAG of them, and how many there were."""

    def __init__(self) -> None:
        self.kept: deque[str] = deque(maxlen=MAX_DIAG)
        self.seen = 0

    def add(self, line: str) -> None:
        self.seen += 1
        self.kept.append(clean(line, DIAG_WIDTH))

    def extend(self, other: _Lines) -> None:
        self.seen += other.seen
        self.kept.extend(other.kept)


@dataclass(eq=False)
class _Node:
    number: int
    name: str
    status: Status
    message: str = ""
    directive: Directive = Directive.NONE
    diags: _Lines = field(default_factory=_Lines)
    children: list[_Node] = field(default_factory=list)


@dataclass(eq=False)
class _Frame:
    """One list of tests (a KTAP document or a nested one) at one prefix."""
    prefix: str
    name: str = ""                 # from "# Subtest: NAME"
    versioned: bool = False
    started: bool = False          # past its head (plan, a result or a nested list seen)
    plan: int | None = None
    skip_all: str = ""             # "1..0 # SKIP why"
    nodes: list[_Node] = field(default_factory=list)
    numbers: set[int] = field(default_factory=set)
    reported: set[tuple[int, str]] = field(default_factory=set)
    expect: int = 1                # the number the next result should have
    head: _Lines = field(default_factory=_Lines)   # before its plan: about its owner
    diags: _Lines = field(default_factory=_Lines)  # since its last result: about the next
    announced: str | None = None   # the runner's "# selftests: T: X": X runs now
    running: str | None = None     # kselftest_harness.h's " RUN NAME ...": NAME runs now
    bail: str = ""
    child: _Frame | None = None    # a closed nested list no result has claimed yet

    def pending(self) -> bool:
        return self.child is not None or self.announced is not None or self.running is not None


def _strip_console(line: str) -> tuple[str, bool]:
    """A console line without the kernel's timestamp, and whether it had one."""
    m = _STAMP.match(line)
    return (line[m.end():], True) if m else (line, False)


def _split_prefix(line: str) -> tuple[str, str]:
    """The nesting prefix (blanks and "# " marks) and the rest of a line."""
    end = _PREFIX.match(line).end()
    return line[:end], line[end:]


def _plan_of(rem: str) -> tuple[int, str] | None:
    head, _, comment = rem.partition("#")
    m = _PLAN.fullmatch(head.strip())
    if not m:
        return None
    directive, why = _directive(comment)
    return int(m.group(1)), (why if directive is Directive.SKIP else "")


def _directive(comment: str) -> tuple[Directive, str]:
    """The directive after a result's "#" and the text after it."""
    words = comment.strip().split(None, 1)
    if not words:
        return Directive.NONE, ""
    key = words[0].upper().rstrip(":")
    rest = words[1].strip() if len(words) > 1 else ""
    if key.startswith("SKIP"):
        return Directive.SKIP, rest
    if key in Directive.__members__ and key != "NONE":
        return Directive[key], rest
    return Directive.NONE, comment.strip()


def _runner_name(name: str) -> str:
    """The runner's name for a test, "selftests: T: X", as "T/X"."""
    if not name.startswith("selftests: "):
        return name
    target, _, test = name[len("selftests: "):].partition(": ")
    return f"{target.strip()}/{test.strip()}" if test.strip() else target.strip()


def _message(node: _Node, text: str, child: _Frame | None) -> str:
    if not text and node.directive is Directive.SKIP and child is not None:
        text = child.skip_all
    if node.directive not in (Directive.NONE, Directive.SKIP):
        text = f"{node.directive.value} {text}".strip()
    parts = [text, f"bailed out: {child.bail}" if child is not None and child.bail else ""]
    if node.status in _FAILING:
        parts += _failing_children(node)
    if not any(parts) and node.status is not Status.PASS:
        parts.append(_last_words(node))
    return clean("; ".join(p for p in parts if p), MAX_TEXT)


def _failing_children(node: _Node) -> list[str]:
    bad = [c.name or f"#{c.number}" for c in node.children
           if c.status in (Status.FAIL, Status.ERROR)]
    missed = sum(c.status is Status.MISS for c in node.children)
    parts = []
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        parts.append("failing: " + ", ".join(bad[:3]) + more)
    if missed:
        parts.append(f"{missed} of {len(node.children)} subtests not reported")
    return parts


def _last_words(node: _Node) -> str:
    """The last diagnostic line before a failure that says more than
    kselftest_harness.h's echo of the test's name ("FAIL  NAME", "RUN NAME ...")."""
    for line in reversed(node.diags.kept):
        if not (line.endswith(" ...") or (node.name and line.endswith(node.name))):
            return line
    return ""


class _Parser:
    def __init__(self, root: str, expected: Iterable[str] | None, problem: str = "") -> None:
        self.root = root
        self.expected = list(expected) if expected is not None else None
        self.stack: list[_Frame] = []
        self.problems: list[str] = [problem] if problem else []
        self.more_problems = 0
        self.count = 0
        self.lineno = 0
        self.truncated = False
        self.stamped = False          # the document's lines carry console timestamps
        self.died: _Node | None = None

    def problem(self, text: str) -> None:
        self.note(f"line {self.lineno}: {text}")

    def note(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(clean(text, DIAG_WIDTH))
        else:
            self.more_problems += 1

    def cut(self, text: str) -> None:
        """The input stops here though the output went on."""
        self.note(text)
        self.truncated = True

    # -- reading lines ------------------------------------------------------

    def feed(self, raw: str) -> None:
        self.lineno += 1
        line, stamped = _strip_console(raw[:MAX_LINE])
        prefix, rem = _split_prefix(line.rstrip())
        if not rem:
            return
        if not self.stack or self._restarts(prefix, rem):
            if _VERSION.fullmatch(rem):
                self._begin(prefix, stamped)
            return
        # On a console the kernel's lines carry timestamps and the runner's
        # do not (or all do, for KUnit's): the other kind is never structure,
        # so a KUnit module loaded by a test cannot end the runner's lists.
        if stamped != self.stamped or not self._structure(prefix, rem):
            self._diag(rem)

    def _restarts(self, prefix: str, rem: str) -> bool:
        """A version line after a finished document (KUnit's at boot, then
        the runner's) starts the one that was asked for."""
        return (len(self.stack) == 1 and prefix == self.stack[0].prefix
                and _finished(self.stack[0]) and _VERSION.fullmatch(rem) is not None)

    def _begin(self, prefix: str, stamped: bool) -> None:
        if self.stack:
            self.problem(f"a new KTAP document starts: the one before it is dropped "
                         f"({len(self.stack[0].nodes)} results)")
        self.stack, self.stamped, self.count = [_Frame(prefix, versioned=True)], stamped, 0

    def _structure(self, prefix: str, rem: str) -> bool:
        """Handles a line that shapes the tree; False for a diagnostic."""
        if _VERSION.fullmatch(rem):
            return self._version(prefix)
        if m := _RESULT.match(rem):
            return self._result(prefix, m.group(1) == "ok", int(m.group(2)), rem[m.end():])
        if (plan := _plan_of(rem)) is not None:
            return self._plan(prefix, *plan)
        if rem.startswith("Bail out!"):
            self._bail(prefix, rem[len("Bail out!"):].strip())
            return False   # also a diagnostic of the list it ends
        if "#" in prefix:
            return self._marked(prefix.rstrip(" \t")[:-1], rem)
        return False

    def _marked(self, level: str, rem: str) -> bool:
        """A "# "-introduced line: a header that names or starts a test."""
        if rem.startswith("Subtest:"):
            return self._header(level, rem[len("Subtest:"):].strip())
        if rem.startswith("selftests: "):
            return self._announce(level, rem)
        if m := _RUN.fullmatch(rem):
            self._run(level, m.group(1))
        return False

    def _diag(self, line: str) -> None:
        f = self.stack[-1]
        (f.diags if f.started else f.head).add(line)

    # -- where a line belongs -----------------------------------------------

    def _locate(self, level: str) -> int | None:
        """The innermost open list whose prefix the line's starts with."""
        for i in range(len(self.stack) - 1, -1, -1):
            if level.startswith(self.stack[i].prefix):
                return i
        return None

    def _open(self, i: int, level: str) -> _Frame | None:
        """A nested list at `level` inside list i."""
        self._close_to(i)
        if len(self.stack) >= MAX_DEPTH:
            self.problem(f"nested deeper than {MAX_DEPTH} lists: read as a diagnostic")
            return None
        self.stack[i].started = True
        frame = _Frame(level)
        self.stack.append(frame)
        return frame

    def _at(self, i: int, level: str) -> _Frame | None:
        """The list a line at `level` belongs to, list i or a new one in it."""
        if level != self.stack[i].prefix:
            return self._open(i, level)
        self._close_to(i)
        return self.stack[i]

    def _close_to(self, i: int, eof: bool = False) -> None:
        """Closes the lists inside list i; the innermost closed one waits
        in its parent for the result line that owns it."""
        while len(self.stack) > i + 1:
            frame = self.stack.pop()
            self._seal(frame, eof)
            parent = self.stack[-1]
            if parent.child is not None:
                self._pending_node(parent, NO_RESULT)
            parent.child = frame

    # -- the line kinds -----------------------------------------------------

    def _version(self, prefix: str) -> bool:
        i = self._locate(prefix)
        if i is None:
            return False
        f = self.stack[i]
        if prefix != f.prefix:
            frame = self._open(i, prefix)
            if frame is not None:
                frame.versioned = True
            return frame is not None
        if i and i == len(self.stack) - 1 and not f.versioned and not f.started:
            f.versioned = True   # "# Subtest: NAME" came first
            return True
        self.problem("a version line inside a list: ignored")
        return False

    def _plan(self, prefix: str, count: int, skip: str) -> bool:
        i = self._locate(prefix)
        if i is None:
            return False
        f = self._at(i, prefix)
        if f is None:
            return False
        f.started = True
        if f.plan is not None:
            self.problem(f"a second plan 1..{count}: ignored")
        elif count > MAX_PLAN:
            self.problem(f"plan 1..{count} refused: more than {MAX_PLAN} tests")
        else:
            f.plan, f.skip_all = count, clean(skip, DIAG_WIDTH)
        return True

    def _result(self, prefix: str, ok: bool, number: int, rest: str) -> bool:
        i = self._locate(prefix)
        if i is None:
            return False
        f = self.stack[i]
        if prefix == f.prefix:
            self._close_to(i)
        elif i and i == len(self.stack) - 1 and not f.nodes and f.child is None:
            f.prefix = prefix   # results deeper than their list's header
        else:
            f = self._open(i, prefix)
            if f is None:
                return False
        self._add(f, ok, number, rest)
        return True

    def _header(self, level: str, name: str) -> bool:
        i = self._locate(level)
        if i is None:
            return False
        f = self.stack[i]
        if level != f.prefix:
            frame = self._open(i, level)
            if frame is not None:
                frame.name = name
            return frame is not None
        if i and i == len(self.stack) - 1 and not f.name and not f.started:
            f.name = name        # "KTAP version 1" came first
            return True
        return False

    def _announce(self, level: str, name: str) -> bool:
        i = self._locate(level)
        if i is None or level != self.stack[i].prefix:
            return False
        self._close_to(i)
        f = self.stack[i]
        if f.child is not None or f.announced is not None:
            self._pending_node(f, NO_RESULT)
        f.announced, f.started = name, True
        return True

    def _run(self, level: str, name: str) -> None:
        i = self._locate(level)
        if i is not None and i == len(self.stack) - 1 and level == self.stack[i].prefix:
            self.stack[i].running = name

    def _bail(self, prefix: str, why: str) -> None:
        i = self._locate(prefix)
        if i is None:
            return
        f = self._at(i, prefix)
        if f is not None:
            f.bail = clean(why or "no reason given", DIAG_WIDTH)

    # -- results --------------------------------------------------------------

    def _add(self, f: _Frame, ok: bool, number: int, rest: str) -> None:
        desc, _, comment = rest.partition("#")
        desc = desc.strip()
        if desc == "-" or desc.startswith("- "):
            desc = desc[1:].strip()     # TAP's "ok 1 - name"
        directive, text = _directive(comment)
        child, f.child = f.child, None
        name = desc or (child.name if child else "") or f.announced or (text if directive else "")
        f.announced = None
        if f.running == name:
            f.running = None
        f.started = True
        if not self._accept(f, number, name):
            return
        node = _Node(number, name, STATUS[(ok, directive)], directive=directive, diags=f.diags)
        f.diags = _Lines()
        if child is not None:
            self._claim(node, child)
            if not child.nodes and child.plan is None:
                self.problem(f"test {number} ({name}) announced subtests but reported none")
        node.message = _message(node, text, child)
        self._append(f, node)

    def _accept(self, f: _Frame, number: int, name: str) -> bool:
        """Whether a result is taken: the first report of a test stands."""
        if (number, name) in f.reported:
            self.problem(f"test {number} ({name}) reported again: the first report stands")
            return False
        if self.count >= MAX_TESTS:
            if self.count == MAX_TESTS:
                self.problem(f"more than {MAX_TESTS} tests: the rest are ignored")
                self.count += 1
            return False
        if number in f.numbers:
            self.problem(f"test number {number} repeated")
        elif number != f.expect:
            self.problem(f"test number {number} where {f.expect} was expected")
        return True

    def _append(self, f: _Frame, node: _Node) -> None:
        f.nodes.append(node)
        f.numbers.add(node.number)
        f.reported.add((node.number, node.name))
        f.expect = node.number + 1
        self.count += 1

    def _free_number(self, f: _Frame) -> int:
        n = f.expect if f.expect not in f.numbers else 1
        while n in f.numbers:
            n += 1
        return n

    def _pending_node(self, f: _Frame, why: str) -> _Node | None:
        """The test that started in list f and has no result: ERROR."""
        child, f.child = f.child, None
        name = f.announced or (child.name if child else "") or f.running or ""
        f.announced = f.running = None
        if self.count >= MAX_TESTS:
            return None
        node = _Node(self._free_number(f), name, Status.ERROR, why, diags=f.diags)
        f.diags = _Lines()
        if child is not None:
            self._claim(node, child)
        self._append(f, node)
        return node

    @staticmethod
    def _claim(node: _Node, child: _Frame) -> None:
        """A closed nested list becomes the subtests of the test it belongs to."""
        node.children = child.nodes
        node.diags.extend(child.head)
        node.diags.extend(child.diags)

    def _seal(self, f: _Frame, eof: bool, placeholders: bool = True) -> None:
        """A list is over: what started in it and what it planned but never
        reported get their entries."""
        if f.pending():
            node = self._pending_node(f, DIED if eof else CUT)
            if eof and f is self.stack[0]:
                self.died = node
        if f.plan is not None and len(f.nodes) > f.plan:
            self.problem(f"{len(f.nodes)} results for a plan of 1..{f.plan}")
        if not placeholders or f.plan is None:
            return
        why = f"not run: bailed out ({f.bail})" if f.bail else UNREACHED if eof else UNREPORTED
        missing, number = f.plan - len(f.nodes), 1
        while missing > 0 and self.count < MAX_TESTS:
            if number not in f.numbers:
                self._append(f, _Node(number, "", Status.MISS, why))
                missing -= 1
            number += 1
        if missing > 0:
            self.problem(f"more than {MAX_TESTS} tests: {missing} planned ones are not listed")

    # -- the end ----------------------------------------------------------------

    def finish(self) -> Report:
        if not self.stack:
            return self._report([], found=False, plan=None, complete=False)
        self._close_to(0, eof=True)
        root = self.stack[0]
        complete = not (self.truncated or root.pending()) and (
            len(root.nodes) >= root.plan if root.plan is not None else bool(root.nodes))
        self._seal(root, eof=True, placeholders=self.expected is None)
        if not root.nodes:
            self.note("no tests reported")
        tests: list[KtapTest] = []
        _flatten(root.nodes, self.root, None, tests)
        tops = [t for t in tests if t.parent is None]
        died = next((t.id for t, n in zip(tops, root.nodes) if n is self.died), None)
        return self._report(tests, found=True, plan=root.plan, complete=complete, died=died)

    def _report(self, tests: list[KtapTest], found: bool, plan: int | None,
                complete: bool, died: str | None = None) -> Report:
        if self.expected is not None:
            seen = {t.id for t in tests}
            why = UNREPORTED if complete else UNREACHED if found else NO_KTAP
            tests += [KtapTest(e, Status.MISS, why) for e in self.expected if e not in seen]
            if plan is not None and plan != len(self.expected):
                self.note(f"the plan is 1..{plan} but {len(self.expected)} tests were expected")
        elif not found:
            self.note(NO_KTAP)
        more = [f"... and {self.more_problems} more"] if self.more_problems else []
        problems = self.problems + more
        return Report(tests, found, plan, complete, died, problems)


def _finished(f: _Frame) -> bool:
    return f.plan is not None and len(f.nodes) >= f.plan and not f.pending()


def _flatten(nodes: list[_Node], base: str, parent: str | None, out: list[KtapTest]) -> None:
    """Each node and its subtests, parents first, with their ids."""
    used: set[str] = set()
    for n in nodes:
        name = clean((_runner_name(n.name) if parent is None else n.name).strip(), NAME_WIDTH)
        part = name or f"#{n.number}"
        if part in used:
            part = f"{part}#{n.number}"
        used.add(part)
        test_id = clean(f"{base}/{part}", ID_WIDTH)
        out.append(KtapTest(test_id, n.status, n.message, tuple(n.diags.kept),
                            n.diags.seen - len(n.diags.kept), n.number, n.directive, parent))
        _flatten(n.children, test_id, test_id, out)
