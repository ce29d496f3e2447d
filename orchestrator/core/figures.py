"""Figures: the numbers a guest test declares and reports, which the nightly
keeps and the reports draw, whatever the suite measures.

The convention, JUnit properties of a test (guest_tests/README.md documents
it for test writers; guest_tests/figures.py records it):

  figure.<name>                  one value, drawn over the nights
  figure.<name>@<x>              the value at x (a sweep, such as N writers),
                                 drawn per cell against x, baseline and patched
  figure.<name>.title            the chart's title
  figure.<name>.unit             what the value counts (the y axis)
  figure.<name>.better           higher or lower
  figure.<name>.x                what x is (a sweep's x axis)
  figure.<name>.min, .max        the y axis' range, where the figure has one

All of it came from the guest: a name follows NAME, a value is a finite
number below HUGE, text is cleaned and cut, and a test keeps at most
MAX_NAMES figures of at most MAX_POINTS points; what is left out is said in
one note (the test's NOTES property), never raised.

A cell keeps its figures under keys (night_key, sweep_key) that the
nightly's history compares night after night; nights recorded before the
declarations have keys of the same shapes and no declarations, and are drawn
with the suite's own table (suite_declarations) instead.
"""

from __future__ import annotations

import ast
import functools
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from orchestrator.core import jsonio, paths, untrusted
from orchestrator.core.errors import OrchError
from orchestrator.core.sanitize import clean

PREFIX = "figure."
NOTES = "figure_notes"           # the property that says what was left out
NAME = r"[a-z][a-z0-9_]{0,39}"
PARTS = ("title", "unit", "better", "x", "min", "max")
MAX_NAMES = 32                   # figures per test
MAX_POINTS = 64                  # points per sweep
MAX_NOTES = 5                    # problems spelled out; the rest are counted
# Beyond this a value is garbage, not something to draw or compare (and
# svg_plot would refuse to place it).
HUGE = 1e15
SIDES = ("baseline", "patched")
# A sweep point's key starts with this (the shape the scale sweep's keys had
# before figures were declared, so that a history goes on across the change);
# no figure may be named so.
SWEEP = "scale"

_VALUE = re.compile(rf"({NAME})(?:@([^@]{{1,40}}))?")
_PART = re.compile(rf"({NAME})\.({'|'.join(PARTS)})")


class Better(StrEnum):
    HIGHER = "higher"
    LOWER = "lower"


_BETTER = tuple(b.value for b in Better)


def number(v) -> float | None:
    """`v` as a finite float below HUGE, else None (a guest's "NaN", "1e999",
    an int of 400 digits, a bool)."""
    if isinstance(v, bool) or (isinstance(v, str) and len(v) > 40):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) and abs(f) < HUGE else None


def _text(v, limit: int) -> str:
    return " ".join(clean(str(v), 4 * limit).split())[:limit]


@dataclass
class Declaration:
    """What a figure is, as its test declared it. Sanitised on construction:
    it is built from guest properties and read back from night.json, which a
    CI shard (an artifact) may have written."""
    title: str = ""
    unit: str = ""
    better: Better | None = jsonio.opt()
    x: str | None = jsonio.opt()          # a sweep's x axis; None: a figure over the nights
    y_min: float | None = jsonio.opt()
    y_max: float | None = jsonio.opt()

    def __post_init__(self) -> None:
        self.title, self.unit = _text(self.title, 80), _text(self.unit, 40)
        self.x = (_text(self.x, 40) or None) if self.x is not None else None
        ok = isinstance(self.better, str) and self.better in _BETTER
        self.better = Better(self.better) if ok else None
        self.y_min, self.y_max = number(self.y_min), number(self.y_max)
        if None not in (self.y_min, self.y_max) and self.y_max <= self.y_min:
            self.y_min = self.y_max = None

    @property
    def hint(self) -> str:
        return f"{self.better.value} is better" if self.better else ""

    @property
    def y_range(self) -> tuple[float, float] | None:
        if self.y_min is None or self.y_max is None:
            return None
        return self.y_min, self.y_max + 0.05 * (self.y_max - self.y_min)


@dataclass
class TestFigures:
    """One test's figures, from its properties."""
    __test__ = False                 # not a pytest class, whatever its name
    values: dict[str, float] = field(default_factory=dict)             # name -> value
    sweeps: dict[str, dict[float, float]] = field(default_factory=dict)  # name -> x -> value
    declarations: dict[str, Declaration] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)                        # properties taken
    notes: list[str] = field(default_factory=list)
    more_notes: int = 0

    def note(self, key: str, why: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(f"{clean(key, 60)}: {why}")
        else:
            self.more_notes += 1

    def summary(self) -> str:
        more = f"; and {self.more_notes} more" if self.more_notes else ""
        return "left out " + "; ".join(self.notes) + more


def parse(props: dict) -> TestFigures:
    """The figures in one test's properties; the rest of them is not looked at."""
    out, parts, names = TestFigures(), {}, set()
    for key, raw in props.items():
        if not isinstance(key, str) or not key.startswith(PREFIX):
            continue
        why = _take(out, parts, names, key[len(PREFIX):], raw)
        if why:
            out.note(key, why)
        else:
            out.kept.add(key)
    for name, given in parts.items():
        out.declarations[name] = Declaration(
            given.get("title", ""), given.get("unit", ""), given.get("better"), given.get("x"),
            given.get("min"), given.get("max"))
    return out


def _take(out: TestFigures, parts: dict, names: set, rest: str, raw) -> str | None:
    """Why the property figure.<rest> is left out, or None when it was taken."""
    m = _PART.fullmatch(rest) or _VALUE.fullmatch(rest)
    if not m:
        return "not figure.<name>, figure.<name>@<x> or figure.<name>.<part>"
    name = m.group(1)
    if name == SWEEP:
        return f"the name {SWEEP!r} is reserved"
    if name not in names and len(names) >= MAX_NAMES:
        return f"more than {MAX_NAMES} figures in one test"
    if m.re is _PART:
        why = _bad_part(m.group(2), raw)
        if why is None:
            names.add(name)
            parts.setdefault(name, {})[m.group(2)] = raw
        return why
    value = number(raw)
    if value is None:
        return f"{clean(str(raw), 20)!r} is not a finite number below {HUGE:g}"
    if m.group(2) is None:
        names.add(name)
        out.values[name] = value
        return None
    return _point(out, names, name, m.group(2), value)


def _point(out: TestFigures, names: set, name: str, at: str, value: float) -> str | None:
    x = number(at)
    if x is None:
        return "x is not a finite number"
    points = out.sweeps.setdefault(name, {})
    if x not in points and len(points) >= MAX_POINTS:
        return f"more than {MAX_POINTS} points"
    names.add(name)
    points[x] = value
    return None


def _bad_part(part: str, raw) -> str | None:
    if part == "better" and raw not in _BETTER:
        return "neither higher nor lower"
    if part in ("min", "max") and number(raw) is None:
        return "not a finite number"
    return None


def screen(props: dict[str, str]) -> dict[str, str]:
    """`props` less the figure properties that do not follow the convention,
    with a NOTES property saying what was left out; the same dict when there
    is nothing to leave out."""
    got = parse(props)
    if not got.notes:
        return props
    kept = {k: v for k, v in props.items() if not k.startswith(PREFIX) or k in got.kept}
    kept[NOTES] = clean(got.summary(), 500)
    return kept


# -- a cell's keys -------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    name: str
    test: str | None = None      # a figure over the nights: the test that reported it
    side: str | None = None      # a sweep's point: baseline or patched
    x: float | None = None


def x_text(x: float) -> str:
    """2, not 2.0: the keys the scale sweep had before."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def night_key(name: str, test: str) -> str:
    return f"{name}:{test}"


def sweep_key(side: str, name: str, x: float) -> str:
    return f"{SWEEP}:{side}:{name}:{x_text(x)}"


def parse_key(key: str) -> Key | None:
    """A cell's figure key back into its parts; None for one that is neither shape."""
    if not isinstance(key, str):
        return None
    if key.startswith(SWEEP + ":"):
        parts = key.split(":", 3)
        x = number(parts[3]) if len(parts) == 4 else None
        if x is None or parts[1] not in SIDES or not re.fullmatch(NAME, parts[2]):
            return None
        return Key(parts[2], side=parts[1], x=x)
    name, _, test = key.partition(":")
    return Key(name, test=test) if test and re.fullmatch(NAME, name) else None


# -- the suite's table ------------------------------------------------------------------

TABLE_FILE = "guest_tests/figures.py"
TABLE = "DECLARED"
MAX_TABLE = 256 << 10


def declared(name: str, *tables: dict[str, Declaration] | None) -> Declaration:
    """`name`'s declaration from the first table that has it; else one that
    says no more than its name."""
    for t in tables:
        if t and name in t:
            return t[name]
    return Declaration(title=name, unit=name)


def suite_declarations(root: Path | None = None) -> dict[str, Declaration]:
    """The declarations the guest suite ships: the DECLARED dict literal of
    its figures.py, read as a literal and never run. The fallback for what a
    record does not declare (nights before the declarations); {} where the
    suite has none."""
    try:
        root = root or paths.data_root()
    except OrchError:
        return {}
    return _table(root / TABLE_FILE)


@functools.lru_cache(maxsize=8)
def _table(path: Path) -> dict[str, Declaration]:
    try:
        tree = ast.parse(untrusted.read_capped(path, MAX_TABLE))
    except (untrusted.UntrustedError, SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == TABLE for t in node.targets):
            try:
                table = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return {}
            return _from_table(table)
    return {}


def _from_table(table) -> dict[str, Declaration]:
    if not isinstance(table, dict):
        return {}
    return {name: Declaration(d.get("title", ""), d.get("unit", ""), d.get("better"),
                              d.get("x"), d.get("min"), d.get("max"))
            for name, d in table.items()
            if isinstance(name, str) and re.fullmatch(NAME, name) and isinstance(d, dict)}
