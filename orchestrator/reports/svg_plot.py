"""Line charts as inline SVG, in pure Python: the reports' pictures.

No plotting library: the reports must work from file:// with no network and
orch should not pull numpy in for a few lines. Every label is escaped here
(test names and series titles are untrusted), so the SVG may be inserted
into a page as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
W = 560                                  # wide; the plot area is PH high, the legend below it
LEFT, RIGHT, TOP, BOTTOM, PH = 60, 20, 34, 46, 220
H = TOP + PH + BOTTOM                    # without a legend ("no data")
ROW, MAX_ROWS = 14, 12                   # legend rows: test names are long, so one a row
# Beyond this a value is garbage (a guest's figure), not something to place:
# it would stretch the axis to nothing or overflow the arithmetic.
HUGE = 1e15


@dataclass
class Line:
    label: str
    points: list[tuple[float, float]]     # (x, y), x numeric
    dashed: bool = False


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    out = []
    v = start
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _fit(text: str, width: float, px_per_char: float) -> str:
    """`text` cut to what fits `width` pixels (SVG text does not wrap: a long
    title or legend label would run off the picture or over the plot)."""
    room = max(4, int(width / px_per_char))
    return text if len(text) <= room else text[:room - 1] + "\u2026"


def _placeable(p) -> bool:
    return (isinstance(p, (tuple, list)) and len(p) == 2 and
            all(isinstance(c, (int, float)) and math.isfinite(c) and abs(c) < HUGE for c in p))


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


@dataclass
class _Frame:
    """Where data (x, y) lands in the picture."""
    x0: float
    x1: float
    y0: float
    y1: float
    pw: float = W - LEFT - RIGHT
    ph: float = PH

    def sx(self, x: float) -> float:
        return LEFT + (x - self.x0) / (self.x1 - self.x0) * self.pw

    def sy(self, y: float) -> float:
        return TOP + self.ph - (y - self.y0) / (self.y1 - self.y0) * self.ph


def _frame(drawn: list[tuple[Line, list]], y_range: tuple[float, float] | None) -> _Frame:
    xs = [x for _, good in drawn for x, _ in good]
    ys = [y for _, good in drawn for _, y in good]
    x0, x1 = min(xs), max(xs)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    # From 0 (a rate's height is the point), with room above the top;
    # a range given is widened to what is drawn, never cuts it off.
    y0, y1 = y_range if y_range else (min(0.0, min(ys)), max(0.0, max(ys)) * 1.1)
    y0, y1 = min(y0, min(ys)), max(y1, max(ys))
    if y1 <= y0:
        y1 = y0 + 1
    return _Frame(x0, x1, y0, y1)


def _head(title: str, height: float) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{W}" '
            f'height="{height}" viewBox="0 0 {W} {height}" role="img" '
            f'aria-label="{escape(title, {chr(34): "&quot;"})}">'
            f'<title>{escape(title)}</title>'
            f'<rect width="{W}" height="{height}" fill="#fff" stroke="#ccc"/>'
            f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14" '
            f'font-weight="bold">{escape(_fit(title, W - 16, 8.5))}</text>')


def _axes(f: _Frame, x_label: str, y_label: str, x_names: dict[float, str] | None) -> list[str]:
    """The axes, their ticks and grid, and their labels."""
    out = [(f'<line x1="{LEFT}" y1="{TOP + f.ph}" x2="{LEFT + f.pw}" y2="{TOP + f.ph}" '
            'stroke="#333"/>'),
           f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + f.ph}" stroke="#333"/>']
    for t in _ticks(f.y0, f.y1):
        if f.y0 <= t <= f.y1:
            out.append(f'<line x1="{LEFT}" y1="{f.sy(t):.1f}" x2="{LEFT + f.pw}" '
                       f'y2="{f.sy(t):.1f}" stroke="#eee"/><text x="{LEFT - 6}" '
                       f'y="{f.sy(t) + 4:.1f}" text-anchor="end" font-size="11">{_fmt(t)}</text>')
    xt = sorted(t for t in x_names if f.x0 <= t <= f.x1) if x_names else [
        t for t in _ticks(f.x0, f.x1, 6) if f.x0 <= t <= f.x1]
    for t in xt:
        name = x_names[t] if x_names else _fmt(t)
        out.append(f'<text x="{f.sx(t):.1f}" y="{TOP + f.ph + 16}" text-anchor="middle" '
                   f'font-size="11">{escape(name)}</text>')
    out.append(f'<text x="{LEFT + f.pw / 2}" y="{H - 8}" text-anchor="middle" '
               f'font-size="12">{escape(_fit(x_label, f.pw, 6.5))}</text>')
    out.append(f'<text x="14" y="{TOP + f.ph / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {TOP + f.ph / 2})">'
               f'{escape(_fit(y_label, f.ph, 6.5))}</text>')
    return out


def _style(i: int, ln: Line) -> tuple[str, str]:
    """A line's colour and dash: past the palette, dashes tell apart lines
    of the same colour."""
    dashed = ln.dashed != (i // len(COLOURS) % 2 == 1)
    return COLOURS[i % len(COLOURS)], ' stroke-dasharray="5,3"' if dashed else ""


def _series(f: _Frame, drawn: list[tuple[Line, list]]) -> list[str]:
    """Each line and its points (a point's value on hover)."""
    out = []
    for i, (ln, good) in enumerate(drawn):
        c, dash = _style(i, ln)
        coords = " ".join(f"{f.sx(x):.1f},{f.sy(y):.1f}" for x, y in good)
        # The first lines wider: one that another covers exactly (base and
        # debug measuring alike) still shows around it.
        width = 2 + 1.5 * max(0, min(len(drawn), 3) - 1 - i)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="{width}"{dash} '
                   f'points="{coords}"/>')
        out += [f'<circle cx="{f.sx(x):.1f}" cy="{f.sy(y):.1f}" r="3" fill="{c}">'
                f'<title>{escape(ln.label)}: {_fmt(y)}</title></circle>' for x, y in good]
    return out


def _legend(drawn: list[tuple[Line, list]]) -> list[str]:
    """One row a line below the plot, MAX_ROWS of them, the rest counted."""
    out = []
    for i, (ln, _) in enumerate(drawn[:MAX_ROWS]):
        c, dash = _style(i, ln)
        ly = H + ROW * i
        out.append(f'<line x1="{LEFT}" y1="{ly + 6}" x2="{LEFT + 18}" y2="{ly + 6}" '
                   f'stroke="{c}" stroke-width="2"{dash}/>'
                   f'<text x="{LEFT + 24}" y="{ly + 10}" font-size="11">'
                   f'<title>{escape(ln.label)}</title>'
                   f'{escape(_fit(ln.label, W - LEFT - RIGHT - 24, 6.2))}</text>')
    if len(drawn) > MAX_ROWS:
        out.append(f'<text x="{LEFT}" y="{H + ROW * MAX_ROWS + 10}" font-size="11" '
                   f'fill="#666">+{len(drawn) - MAX_ROWS} more</text>')
    return out


def _notes(note: str, hint: str) -> list[str]:
    """Above the plot: a warning on the left (advisory figures), and on the
    right which way is better."""
    out = []
    if note:
        out.append(f'<text x="{LEFT}" y="{TOP - 6}" font-size="10" fill="#a60">'
                   f'{escape(_fit(note, (W - LEFT - RIGHT) / 2, 5.5))}</text>')
    if hint:
        out.append(f'<text x="{W - RIGHT}" y="{TOP - 6}" text-anchor="end" font-size="10" '
                   f'fill="#666">{escape(_fit(hint, (W - LEFT - RIGHT) / 2 - 8, 5.5))}</text>')
    return out


def chart(title: str, lines: list[Line], x_label: str, y_label: str, *,
          x_names: dict[float, str] | None = None, y_range: tuple[float, float] | None = None,
          note: str = "", hint: str = "") -> str:
    """A line chart; x_names labels x ticks (e.g. nights) instead of numbers;
    `hint` says which way is better."""
    drawn = [(ln, sorted(tuple(p) for p in ln.points if _placeable(p))) for ln in lines]
    drawn = [(ln, good) for ln, good in drawn if good]
    rows = min(len(drawn), MAX_ROWS) + (len(drawn) > MAX_ROWS)
    head = _head(title, H + (ROW * rows + 8 if rows else 0))
    if not drawn:
        return head + (f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" fill="#888">'
                       'no data</text></svg>')
    f = _frame(drawn, y_range)
    parts = [head, *_axes(f, x_label, y_label, x_names), *_series(f, drawn), *_legend(drawn),
             *_notes(note, hint), "</svg>"]
    return "".join(parts)
