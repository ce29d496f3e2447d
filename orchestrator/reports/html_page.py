"""The HTML reports: a night's site (the matrix with the changes first, a
page per series with its history, plots) and one page for an `orch test` run.

jinja2 with autoescape on for every template: titles, test messages,
console text and anything the guest wrote are untrusted, and nothing of
them is ever marked safe. The plots are inline SVG from svg_plot (which
escapes its labels); the pages need no network and no JavaScript.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import jinja2

from orchestrator.core import paths
from orchestrator.nightly import cell_rows
from orchestrator.nightly.night import HistoryPoint, Night, SeriesRev
from orchestrator.reports import svg_plot
from orchestrator.reports.reportlib import exit_meaning
from orchestrator.run.record import RunRecord

TEMPLATES = paths.DATA / "templates"
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def page_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80] + ".html"


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


def eviction_chart(points: list[HistoryPoint], advisory: bool = False) -> str:
    """Fraction of DONTCACHE pages evicted, per test x config, over nights."""
    nights = sorted({p.night for p in points})
    xi = {night: float(i) for i, night in enumerate(nights)}
    short = short_tests({k[8:] for p in points for k in p.figures if k.startswith("evicted:")})
    lines: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        for name, v in p.figures.items():
            if name.startswith("evicted:"):
                lines.setdefault(f"{short[name[8:]]} {p.config}", []).append((xi[p.night], v))
    return svg_plot.chart("DONTCACHE pages evicted, by night",
                          [svg_plot.Line(k, v) for k, v in sorted(lines.items())],
                          "night", "fraction evicted",
                          x_names={i: n[5:] for n, i in xi.items()}, y_range=(0.0, 1.05),
                          note="advisory: measured under TCG" if advisory else "")


def scale_charts(title: str, figures: dict[str, float], accel: str | None) -> list[str]:
    """Throughput and lock contention against the number of writers (one
    per device), baseline vs patched: the question the reviewers asked."""
    out = []
    names = {"mib_per_s": "throughput", "contentions": "lock contentions"}
    for what, unit in (("mib_per_s", "MiB/s, all writers"),
                       ("contentions", "lock contentions (lock_stat)")):
        lines, ns = [], set()
        for side in ("baseline", "patched"):
            pts = sorted((float(k.rsplit(":", 1)[1]), v) for k, v in figures.items()
                         if k.startswith(f"scale:{side}:{what}:"))
            if pts:
                lines.append(svg_plot.Line(side, pts, dashed=side == "baseline"))
                ns.update(x for x, _ in pts)
        if lines:
            out.append(svg_plot.chart(f"{title}: {names[what]} vs writers",
                                      lines, "writers (N devices)", unit,
                                      x_names={x: f"{x:.0f}" for x in ns},
                                      note="advisory: measured under TCG" if accel == "tcg"
                                      else ""))
    return out


def write_night_site(n: Night, history: dict[str, list[HistoryPoint]], out: Path,
                     links_base: str = "../../") -> list[Path]:
    """index.html and series/<key>.html in `out` (the night's directory).
    `links_base`: from `out` to the directory history run dirs are relative
    to (the nightly's --out)."""
    env = _env()
    cells = {(c.series, c.tree, c.config): c for c in n.cells}
    columns = [(t.label, c) for t in n.plan.trees for c in n.plan.configs]
    pages = {s.key: page_name(s.key) for s in n.plan.series}
    tcg = {s.key: any(c.accel == "tcg" for c in n.cells if c.series == s.key)
           for s in n.plan.series}
    evict = {s.key: eviction_chart(history.get(s.key, []), tcg[s.key]) for s in n.plan.series}
    # A chart per cell: named by its config, and by its tree too when there are several.
    where = ((lambda c: f"{c.tree} {c.config}") if len(n.plan.trees) > 1
             else (lambda c: c.config))
    scale = {s.key: [svg for c in n.cells if c.series == s.key
                     for svg in scale_charts(where(c), c.figures, c.accel)]
             for s in n.plan.series}
    written = []
    index = out / "index.html"
    index.write_text(env.get_template("night.html.j2").render(
        title=f"orch nightly {n.night}", n=n, meaning=exit_meaning(n.exit_code, n.state),
        cells=cells, columns=columns, pages=pages, eviction_svgs=evict, scale_svgs=scale,
        any_tcg=any(c.accel == "tcg" for c in n.cells)), encoding="utf-8")
    written.append(index)
    (out / "series").mkdir(exist_ok=True)
    for s in n.plan.series:
        written.append(_series_page(env, n, s, history.get(s.key, []), evict[s.key],
                                    scale[s.key], out / "series" / pages[s.key],
                                    "../" + links_base))
    return written


def _series_page(env, n: Night, s: SeriesRev, points: list[HistoryPoint], eviction: str,
                 scale: list[str], path: Path, root: str) -> Path:
    path.write_text(env.get_template("series.html.j2").render(
        title=s.title, n=n, s=s, points=points, root=root,
        eviction_svg=eviction, scale_svgs=scale), encoding="utf-8")
    return path


def write_run_page(rec: RunRecord, run_dir: Path) -> Path:
    """run_dir/report.html for one `orch test` run, from its record."""
    run_dir = run_dir.resolve()

    def rel(p: str) -> str:
        try:
            return str(Path(p).resolve().relative_to(run_dir))
        except ValueError:
            return Path(p).as_uri() if Path(p).is_absolute() else p
    scale = {}
    for c in rec.configs:
        scale[c.name] = scale_charts(c.name, cell_rows.figures(c),
                                     rec.accel.mode if rec.accel else None)
    subject = (rec.series or {}).get("subject") or "run"
    path = run_dir / "report.html"
    path.write_text(_env().get_template("run.html.j2").render(
        title=f"orch test: {subject}", rec=rec, subject=subject, rel=rel, scale_svgs=scale),
        encoding="utf-8")
    return path
