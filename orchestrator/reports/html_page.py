"""The HTML reports: a night's site (the matrix with the changes first, a
page per series with its history, plots) and one page for an `orch test` run.

jinja2 with autoescape on for every template: titles, test messages,
console text and anything the guest wrote are untrusted, and nothing of
them is ever marked safe. The plots are inline SVG from svg_plot (which
escapes its labels), one for each figure the guest's tests declared
(orchestrator.core.figures), whatever it measures; the pages need no
network and no JavaScript.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import jinja2

from orchestrator.core import figures, names, paths
from orchestrator.core.figures import Declaration
from orchestrator.nightly import cell_rows
from orchestrator.nightly.night import Cell, HistoryPoint, Night
from orchestrator.reports import svg_plot
from orchestrator.reports.reportlib import exit_meaning
from orchestrator.run.record import RunRecord

TEMPLATES = paths.DATA / "templates"


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def page_name(key: str) -> str:
    return names.slug(key, 80, strip=False, empty="") + ".html"


def short_tests(names: set[str]) -> dict[str, str]:
    """Legend labels for test node ids: the function name, less the prefix
    all of them share (test_dontcache_write_irq_... and ..._task_... would
    otherwise be cut to the same few characters)."""
    funcs = {n: n.rsplit("::", 1)[-1] for n in names}
    if len(set(funcs.values())) < len(funcs):     # one name in two modules: the whole id
        funcs = dict(zip(names, names))
    common = ""
    if len(set(funcs.values())) > 1:
        common = os.path.commonprefix(list(funcs.values()))
        common = re.match(r"(.*[_/:])?", common).group(0)   # at a word's edge
    return {n: f[len(common):] or f for n, f in funcs.items()}


# Pictures per series (over the nights) or per cell (sweeps) at most: a
# guest that declares a hundred figures gets a line saying so, not a
# hundred pictures.
MAX_CHARTS = 16
ADVISORY = "advisory: measured under TCG"


def _more(count: int) -> list[str]:
    # An int only: nothing untrusted in this markup.
    return [f'<p class="detail">{count - MAX_CHARTS} more figures not drawn</p>'] \
        if count > MAX_CHARTS else []


def night_charts(points: list[HistoryPoint], declared: dict[str, Declaration] | None = None,
                 advisory: bool = False) -> list[str]:
    """Each figure over the nights, whatever it measures: a picture per
    figure, a line per test x config, as its declaration says (`declared`,
    else the suite's own table for nights that carry none)."""
    nights = sorted({p.night for p in points})
    xi = {night: float(i) for i, night in enumerate(nights)}
    found: dict[str, dict[tuple[str, str], list[tuple[float, float]]]] = {}
    for p in points:
        for key, v in p.figures.items():
            k = figures.parse_key(key)
            if k is not None and k.test is not None:
                found.setdefault(k.name, {}).setdefault((k.test, p.config), []).append(
                    (xi[p.night], v))
    if not found:     # still a picture, saying so: the page's place for them stays
        return [svg_plot.chart("figures, by night", [], "night", "")]
    suite = figures.suite_declarations()
    out = []
    for name in sorted(found)[:MAX_CHARTS]:
        d = figures.declared(name, declared, suite)
        short = short_tests({test for test, _ in found[name]})
        lines = sorted((f"{short[test]} {config}", pts)
                       for (test, config), pts in found[name].items())
        out.append(svg_plot.chart(f"{d.title or name}, by night",
                                  [svg_plot.Line(k, v) for k, v in lines], "night",
                                  d.unit or name, x_names={i: n[5:] for n, i in xi.items()},
                                  y_range=d.y_range, note=ADVISORY if advisory else "",
                                  hint=d.hint))
    return out + _more(len(found))


def sweep_charts(title: str, values: dict[str, float],
                 declared: dict[str, Declaration] | None, accel: str | None) -> list[str]:
    """Each sweep of one cell against its x, baseline against patched (the
    scale benchmark's N writers on N devices is one), as declared."""
    found: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for key, v in values.items():
        k = figures.parse_key(key)
        if k is not None and k.side is not None:
            found.setdefault(k.name, {}).setdefault(k.side, []).append((k.x, v))
    suite = figures.suite_declarations()
    out = []
    for name, sides in list(found.items())[:MAX_CHARTS]:
        d = figures.declared(name, declared, suite)
        lines = [svg_plot.Line(side, sorted(sides[side]), dashed=side == "baseline")
                 for side in figures.SIDES if side in sides]
        xs = {x for pts in sides.values() for x, _ in pts}
        out.append(svg_plot.chart(f"{title}: {d.title or name}", lines, d.x or "x",
                                  d.unit or name, x_names={x: figures.x_text(x) for x in xs},
                                  y_range=d.y_range,
                                  note=ADVISORY if accel == "tcg" else "", hint=d.hint))
    return out + _more(len(found))


def _declared(cells: list[Cell]) -> dict[str, Declaration]:
    """What tonight's cells declared, by figure name (the first cell's wins)."""
    out: dict[str, Declaration] = {}
    for c in cells:
        for name, d in (c.declarations or {}).items():
            out.setdefault(name, d)
    return out


def _series_pictures(n: Night, history: dict[str, list[HistoryPoint]]
                     ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per series: its figures over the nights, and tonight's sweeps, a
    chart per cell named by its config (and by its tree when there are several)."""
    where = ((lambda c: f"{c.tree} {c.config}") if len(n.plan.trees) > 1
             else (lambda c: c.config))
    over_nights, sweeps = {}, {}
    for s in n.plan.series:
        cells = [c for c in n.cells if c.series == s.key]
        over_nights[s.key] = night_charts(history.get(s.key, []), _declared(cells),
                                          any(c.accel == "tcg" for c in cells))
        sweeps[s.key] = [svg for c in cells
                         for svg in sweep_charts(where(c), c.figures, c.declarations, c.accel)]
    return over_nights, sweeps


def write_night_site(n: Night, history: dict[str, list[HistoryPoint]], out: Path,
                     links_base: str = "../../") -> list[Path]:
    """index.html and series/<key>.html in `out` (the night's directory).
    `links_base`: from `out` to the directory history run dirs are relative
    to (the nightly's --out)."""
    env = _env()
    cells = {(c.series, c.tree, c.config): c for c in n.cells}
    columns = [(t.label, c) for t in n.plan.trees for c in n.plan.configs]
    pages = {s.key: page_name(s.key) for s in n.plan.series}
    over_nights, sweeps = _series_pictures(n, history)
    written = []
    index = out / "index.html"
    index.write_text(env.get_template("night.html.j2").render(
        title=f"orch nightly {n.night}", n=n, meaning=exit_meaning(n.exit_code, n.state),
        cells=cells, columns=columns, pages=pages, night_svgs=over_nights, sweep_svgs=sweeps,
        any_tcg=any(c.accel == "tcg" for c in n.cells)), encoding="utf-8")
    written.append(index)
    (out / "series").mkdir(exist_ok=True)
    for s in n.plan.series:
        path = out / "series" / pages[s.key]
        path.write_text(env.get_template("series.html.j2").render(
            title=s.title, n=n, s=s, points=history.get(s.key, []), root="../" + links_base,
            night_svgs=over_nights[s.key], sweep_svgs=sweeps[s.key]), encoding="utf-8")
        written.append(path)
    return written


def write_run_page(rec: RunRecord, run_dir: Path) -> Path:
    """run_dir/report.html for one `orch test` run, from its record: each
    config's sweeps, and what its tests' figures left out."""
    run_dir = run_dir.resolve()

    def rel(p: str) -> str:
        try:
            return str(Path(p).resolve().relative_to(run_dir))
        except ValueError:
            return Path(p).as_uri() if Path(p).is_absolute() else p
    accel = rec.accel.mode if rec.accel else None
    sweeps, notes = {}, {}
    for c in rec.configs:
        got = cell_rows.cell_figures(c)
        sweeps[c.name] = sweep_charts(c.name, got.values, got.declarations, accel)
        notes[c.name] = [(side, t.name, t.properties[figures.NOTES])
                         for side in figures.SIDES for t in getattr(c, side).tests or []
                         if figures.NOTES in (t.properties or {})]
    subject = (rec.series or {}).get("subject") or "run"
    path = run_dir / "report.html"
    path.write_text(_env().get_template("run.html.j2").render(
        title=f"orch test: {subject}", rec=rec, subject=subject, rel=rel, sweep_svgs=sweeps,
        figure_notes=notes), encoding="utf-8")
    return path
