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
W, H = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 60, 170, 34, 46


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


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def chart(title: str, lines: list[Line], x_label: str, y_label: str, *,
          x_names: dict[float, str] | None = None, y_range: tuple[float, float] | None = None,
          note: str = "") -> str:
    """A line chart; x_names labels x ticks (e.g. nights) instead of numbers."""
    pts = [p for ln in lines for p in ln.points
           if all(isinstance(c, (int, float)) and math.isfinite(c) for c in p)]
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{W}" height="{H}" '
            f'viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title, {chr(34): "&quot;"})}">'
            f'<title>{escape(title)}</title>'
            f'<rect width="{W}" height="{H}" fill="#fff" stroke="#ccc"/>'
            f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14" '
            f'font-weight="bold">{escape(title)}</text>')
    if not pts:
        return head + (f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" fill="#888">'
                       'no data</text></svg>')
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = y_range if y_range else (min(0.0, min(ys)), max(ys) * 1.1 or 1.0)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return TOP + ph - (y - y0) / (y1 - y0) * ph

    out = [head, f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{LEFT + pw}" y2="{TOP + ph}" '
           'stroke="#333"/>', f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" '
           'stroke="#333"/>']
    for t in _ticks(y0, y1):
        if y0 <= t <= y1:
            out.append(f'<line x1="{LEFT}" y1="{sy(t):.1f}" x2="{LEFT + pw}" y2="{sy(t):.1f}" '
                       f'stroke="#eee"/><text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" '
                       f'text-anchor="end" font-size="11">{_fmt(t)}</text>')
    xt = sorted(x_names) if x_names else [t for t in _ticks(x0, x1, 6) if x0 <= t <= x1]
    for t in xt:
        name = x_names[t] if x_names else _fmt(t)
        out.append(f'<text x="{sx(t):.1f}" y="{TOP + ph + 16}" text-anchor="middle" '
                   f'font-size="11">{escape(name)}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 8}" text-anchor="middle" '
               f'font-size="12">{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{TOP + ph / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {TOP + ph / 2})">{escape(y_label)}</text>')
    for i, ln in enumerate(lines):
        c = COLOURS[i % len(COLOURS)]
        good = sorted(p for p in ln.points if all(math.isfinite(v) for v in p))
        if not good:
            continue
        dash = ' stroke-dasharray="5,3"' if ln.dashed else ""
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2"{dash} '
                   f'points="{coords}"/>')
        for x, y in good:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{c}">'
                       f'<title>{escape(ln.label)}: {_fmt(y)}</title></circle>')
        ly = TOP + 14 * i
        out.append(f'<line x1="{W - RIGHT + 10}" y1="{ly + 6}" x2="{W - RIGHT + 28}" '
                   f'y2="{ly + 6}" stroke="{c}" stroke-width="2"{dash}/>'
                   f'<text x="{W - RIGHT + 32}" y="{ly + 10}" font-size="10">'
                   f'{escape(ln.label[:28])}</text>')
    if note:
        out.append(f'<text x="{LEFT}" y="{TOP - 6}" font-size="10" fill="#a60">'
                   f'{escape(note)}</text>')
    out.append("</svg>")
    return "".join(out)
