"""Figures a guest test declares, drawn by the reports whatever they are
(orchestrator/core/figures.py, guest_tests/figures.py).

The proof that the engine is generic: a made-up suite's figures, recorded by
the suite's own helper, go through run.json, the cell, night.json and the
history into pictures with the title, unit and direction they declared, with
no code anywhere that knows them; once in-process, and once through a real
`orch test` whose guest runs the made-up test (the stand-in guest, the
test run for real in the guest's view) and a real browser. Then what the
DONTCACHE suite declares and older nights (no declarations: the suite's
table is the fallback), and hostile figures. Each check has a control: the
check run against a deliberately broken variant, which it must catch."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import REPO, run_json
from night_sample import HOSTILE, sample_history, sample_night
from test_guest_output import _orch_test
from test_html_page import (
    browse,
    drawn_lines,
    guest_figures,
    looks_like_a_page,
    png_pixels,
)

from orchestrator.core import figures
from orchestrator.nightly import cell_rows, history
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.night import Night
from orchestrator.reports import html_page, svg_plot
from orchestrator.run.record import ConfigRecord, RunRecord, TestRecord

TEST = "guest_tests/test_made_up.py::test_made_up"
# A suite nobody wrote code for: a sweep against queue depth and a figure
# over the nights, lower being better.
MADE_UP = {
    "iops": {"title": "made-up IOPS vs queue depth", "unit": "kIOPS", "better": "higher",
             "x": "queue depth"},
    "p99_us": {"title": "made-up p99 latency", "unit": "microseconds", "better": "lower",
               "min": 0, "max": 500},
}
SWEEP_TITLE, NIGHT_TITLE = "base: made-up IOPS vs queue depth", "made-up p99 latency, by night"
NIGHTS = ("2026-11-26", "2026-11-27", "2026-11-28")


# -- the checks ------------------------------------------------------------------------

def pictures(html: str) -> dict[str, str]:
    """Each SVG of a page, by its title."""
    return {m.group(1): m.group(0) for m in
            re.finditer(r'<svg [^>]*><title>([^<]*)</title>.*?</svg>', html, re.DOTALL)}


def assert_drawn(html: str, title: str, lines: int, y_label: str, hint: str,
                 x_label: str | None = None) -> None:
    """A picture titled `title` with `lines` lines drawn, its y axis and
    direction as declared (and its x axis, for a sweep)."""
    svg = pictures(html).get(title)
    assert svg is not None, f"no picture {title!r} among {list(pictures(html))}"
    assert len(drawn_lines(svg)) == lines, svg
    assert f">{y_label}</text>" in svg, svg
    assert f">{hint}</text>" in svg if hint else "is better" not in svg, svg
    assert x_label is None or f">{x_label}</text>" in svg, svg


# -- a made-up suite, in-process ------------------------------------------------------

def made_up_props(value: float) -> dict[str, str]:
    """What the suite's helper records for the made-up test."""
    out: list[tuple[str, str]] = []
    record = guest_figures().Recorder(out, MADE_UP)
    for qd in (1, 2, 4, 8):
        record("iops", value * qd, at=qd)
    record("p99_us", 300.0 - value)
    return dict(out)


def made_up_record(value: float) -> RunRecord:
    cfg = ConfigRecord("base")
    cfg.baseline.tests = [TestRecord(TEST, "PASS", "", 1.0, made_up_props(value / 2))]
    cfg.patched.tests = [TestRecord(TEST, "PASS", "", 1.0, made_up_props(value))]
    return RunRecord("0", ["orch", "test"], "/run", "now", state="done", verdict="PASS",
                     exit_code=0, configs=[cfg])


def made_up_nights(tmp_path: Path, records: dict[str, RunRecord]) -> tuple[Night, dict]:
    """Each night's cell from its record, as the nightly makes it, kept in
    a real history; tonight's Night read back from its night.json."""
    plan = sample_night().plan
    s, t = plan.series[0], plan.trees[0]
    h = history.History(tmp_path / "history.sqlite")
    for night, rec in records.items():
        n = Night(night=night, started=night, plan=plan, state="done", exit_code=0)
        n.cells = [cell_rows.from_record(rec, s, t, "base", f"cells/{night}")]
        h.record_night(n)
        n.write(tmp_path / night)
    points = {s.key: h.series_history(s.key)}
    h.close()
    return nightrec.read(tmp_path / night), points


def test_a_made_up_figure_is_drawn_without_any_code_for_it(tmp_path):
    n, points = made_up_nights(tmp_path, {night: made_up_record(10.0 * (i + 1))
                                          for i, night in enumerate(NIGHTS)})
    assert n.cells[0].declarations["iops"].x == "queue depth"   # night.json kept them
    out = tmp_path / "site"
    out.mkdir()
    html_page.write_night_site(n, points, out)
    html = (out / "index.html").read_text()
    assert_drawn(html, NIGHT_TITLE, 1, "microseconds", "lower is better", "night")
    assert_drawn(html, SWEEP_TITLE, 2, "kIOPS", "higher is better", "queue depth")
    sweep = pictures(html)[SWEEP_TITLE]
    assert all(f">{qd}</text>" in sweep for qd in (1, 2, 4, 8))
    series = (out / "series" / html_page.page_name(n.plan.series[0].key)).read_text()
    assert NIGHT_TITLE in pictures(series) and SWEEP_TITLE in pictures(series)
    # The run's own page: its sweep.
    run_page = html_page.write_run_page(made_up_record(10.0), tmp_path).read_text()
    assert_drawn(run_page, SWEEP_TITLE, 2, "kIOPS", "higher is better", "queue depth")


def welded(props: dict) -> figures.TestFigures:
    """The broken variant: an engine that knows its one suite's figures."""
    got = real_parse(props)
    got.values = {k: v for k, v in got.values.items() if k == "evicted"}
    got.sweeps = {k: v for k, v in got.sweeps.items() if k in ("mib_per_s", "contentions")}
    return got


real_parse = figures.parse


def test_control_the_made_up_check_catches_an_engine_welded_to_its_suite(tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(figures, "parse", welded)
    n, points = made_up_nights(tmp_path, {night: made_up_record(10.0) for night in NIGHTS})
    out = tmp_path / "site"
    out.mkdir()
    html_page.write_night_site(n, points, out)
    html = (out / "index.html").read_text()
    for title, lines, unit, hint in ((NIGHT_TITLE, 1, "microseconds", "lower is better"),
                                     (SWEEP_TITLE, 2, "kIOPS", "higher is better")):
        with pytest.raises(AssertionError, match="no picture"):
            assert_drawn(html, title, lines, unit, hint)


def test_control_the_drawn_check_catches_a_picture_that_ignores_its_declaration():
    svg = svg_plot.chart(NIGHT_TITLE, [svg_plot.Line("a", [(0, 1), (1, 2)])], "night",
                         "p99_us")                    # the name for a unit, no direction
    with pytest.raises(AssertionError):
        assert_drawn(svg, NIGHT_TITLE, 1, "microseconds", "lower is better")
    with pytest.raises(AssertionError):
        assert_drawn(svg, NIGHT_TITLE, 2, "p99_us", "")


# -- a made-up suite, for real -----------------------------------------------------------

PROBE = """\
import os
import sys

sys.path.append(os.path.join(os.getcwd(), "guest_tests"))   # the data root: the suite's helper
from figures import Recorder

MADE_UP = {made_up!r}


def test_made_up(request):
    record = Recorder(request.node.user_properties, MADE_UP)
    for qd in (1, 2, 4, 8):
        record("iops", 10.0 * qd, at=qd)
    record("p99_us", 250.0)
"""


def test_a_made_up_guest_test_is_drawn_in_a_browser(tmp_path, mini):
    """`orch test` with the made-up test run for real in the guest's view,
    `orch report --html`, the nightly's cell and site from its run.json;
    all of it in Chromium."""
    probe = tmp_path / "sel" / "test_made_up.py"
    probe.parent.mkdir()
    probe.write_text(PROBE.format(made_up=MADE_UP))
    rd = tmp_path / "run"
    r = _orch_test(tmp_path, mini, probe, rd)
    assert "Traceback" not in r.stderr, r.stderr
    data = run_json(rd)
    props = data["configs"][0]["patched"]["tests"][0]["properties"]
    assert props["figure.iops@8"] == "80" and props["figure.p99_us.better"] == "lower", props
    rec = RunRecord.from_json(data)
    plan = sample_night().plan
    n = Night(night=NIGHTS[-1], started=NIGHTS[-1], plan=plan, state="done", exit_code=0)
    n.cells = [cell_rows.from_record(rec, plan.series[0], plan.trees[0], "base", "cells/x")]
    assert n.cells[0].figures[figures.sweep_key("baseline", "iops", 8)] == 80.0
    points = [nightrec.HistoryPoint(NIGHTS[-1], 1, plan.trees[0].label, "c", "base", "PASS",
                                    n.cells[0].figures)]
    out = tmp_path / "site"
    out.mkdir()
    html_page.write_night_site(n, {plan.series[0].key: points}, out)
    shot = tmp_path / "night.png"
    dom, console = browse(tmp_path, out / "index.html", shot)
    assert console == [], console
    assert_drawn(dom, NIGHT_TITLE, 0, "microseconds", "lower is better")   # one night: a point
    assert_drawn(dom, SWEEP_TITLE, 2, "kIOPS", "higher is better", "queue depth")
    assert looks_like_a_page(png_pixels(shot))
    page = html_page.write_run_page(rec, rd)
    dom, console = browse(tmp_path, page)
    assert console == [], console
    assert_drawn(dom, SWEEP_TITLE, 2, "kIOPS", "higher is better", "queue depth")


# -- the DONTCACHE suite and older nights ---------------------------------------------------

def test_nothing_in_orch_names_a_figure_of_the_suite():
    """The suite's figures are its own: no module or template of orch names
    one (its names, its titles, the properties they came from before)."""
    words = [*guest_figures().DECLARED, "fraction_evicted", "lock_stat",
             *(d["title"] for d in guest_figures().DECLARED.values())]
    assert named_in(REPO / "orchestrator", words) == []


def named_in(root: Path, words: list[str]) -> list[str]:
    pattern = re.compile("|".join(rf"\b{re.escape(w)}\b" for w in words))
    return [f"{p.relative_to(root)}: {m.group(0)}"
            for p in sorted(root.rglob("*")) if p.suffix in (".py", ".j2", ".json")
            for m in pattern.finditer(p.read_text())]


def test_control_the_naming_check_finds_a_name(tmp_path):
    shutil.copytree(REPO / "orchestrator" / "reports", tmp_path / "reports",
                    ignore=shutil.ignore_patterns("__pycache__"))
    page = tmp_path / "reports" / "html_page.py"
    page.write_text(page.read_text() + '\nLEGACY = {"mib_per_s": "throughput"}\n')
    assert named_in(tmp_path, list(guest_figures().DECLARED)) == [
        "reports/html_page.py: mib_per_s"]


def test_an_older_night_is_drawn_from_the_suites_table(tmp_path):
    """sample_night is a night from before declarations: its pictures get
    the titles, units and directions of guest_tests/figures.py's DECLARED."""
    assert all(c.declarations is None for c in sample_night().cells)
    html_page.write_night_site(sample_night(), sample_history(), tmp_path)
    html = (tmp_path / "index.html").read_text()
    assert_drawn(html, "DONTCACHE pages evicted, by night", 2, "fraction evicted",
                 "higher is better", "night")
    assert_drawn(html, "base: throughput vs writers", 2, "MiB/s, all writers",
                 "higher is better", "writers (N devices)")
    assert_drawn(html, "debug: lock contentions vs writers", 2, "lock contentions (lock_stat)",
                 "lower is better", "writers (N devices)")


def test_control_without_the_suites_table_an_older_night_is_drawn_bare(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "suite_declarations", lambda root=None: {})
    html_page.write_night_site(sample_night(), sample_history(), tmp_path)
    html = (tmp_path / "index.html").read_text()
    with pytest.raises(AssertionError, match="no picture"):
        assert_drawn(html, "base: throughput vs writers", 2, "MiB/s, all writers",
                     "higher is better")
    assert_drawn(html, "base: mib_per_s", 2, "mib_per_s", "")   # its name, and nothing more


def test_a_declaration_in_the_record_wins_over_the_suites_table(tmp_path):
    n = sample_night()
    for c in n.cells:
        c.declarations = {"mib_per_s": figures.Declaration("MiB/s as tonight declared it",
                                                           "MiB/s", "higher", "N")}
    html_page.write_night_site(n, sample_history(), tmp_path)
    html = (tmp_path / "index.html").read_text()
    assert_drawn(html, "base: MiB/s as tonight declared it", 2, "MiB/s", "higher is better", "N")


# -- hostile figures -------------------------------------------------------------------------

def hostile_props() -> dict[str, str]:
    """What a guest could record: markup in every text, numbers that are not,
    and a flood of figures."""
    props = {f"figure.{HOSTILE}": "1", "figure.ok": "1e300", "figure.nan": "NaN",
             "figure.inf@1": "-Infinity", "figure.big": str(10 ** 400), "figure.scale": "1",
             "figure.ok.title": HOSTILE * 20, "figure.ok.unit": HOSTILE,
             "figure.ok.better": HOSTILE, "figure.sweep@1": "1", "figure.sweep@2": "2",
             "figure.sweep.x": HOSTILE, "figure.sweep.title": HOSTILE}
    props |= {f"figure.flood{i}@{j}": str(i * j) for i in range(1000) for j in range(1000)}
    return props


# The caps, as this test was written (a variant that changes the module's
# constants must not change what the check asks).
NAMES, POINTS, NOTES, HUGE = figures.MAX_NAMES, figures.MAX_POINTS, figures.MAX_NOTES, 1e15


def assert_contained(got: figures.TestFigures) -> None:
    """At most NAMES figures of POINTS points, every value placeable, every
    text cut, and what was left out said in a few lines."""
    names = set(got.values) | set(got.sweeps) | set(got.declarations)
    assert len(names) <= NAMES, len(names)
    assert all(len(p) <= POINTS for p in got.sweeps.values())
    values = [*got.values.values(), *(v for p in got.sweeps.values() for v in p.values())]
    assert all(abs(v) < HUGE for v in values)
    assert all(len(d.title) <= 80 and len(d.unit) <= 40 for d in got.declarations.values())
    assert len(got.notes) <= NOTES and got.more_notes > 0


def test_hostile_figures_are_refused_or_capped(tmp_path):
    props = hostile_props()
    assert len(props) > 10 ** 6
    got = figures.parse(props)
    assert_contained(got)
    assert "ok" not in got.values                       # 1e300: past HUGE
    assert got.sweeps["sweep"] == {1.0: 1.0, 2.0: 2.0}
    assert got.declarations["ok"].better is None
    notes = " ".join(got.notes)
    for why in ("is not a finite number", "not figure.<name>"):
        assert why in notes, notes
    assert "is reserved" in figures.parse({"figure.scale": "1"}).notes[0]
    # Through the cell and the pages: capped, escaped, nothing run.
    rec = made_up_record(1.0)
    rec.configs[0].patched.tests[0].properties = props
    cell = cell_rows.from_record(rec, sample_night().plan.series[0],
                                 sample_night().plan.trees[0], "base", "cells/x")
    assert len(cell.figures) <= cell_rows.MAX_CELL_FIGURES
    n = sample_night()
    n.cells = [cell]
    html_page.write_night_site(n, {}, tmp_path)
    html = (tmp_path / "index.html").read_text()
    assert "<script" not in html and "<img" not in html
    drawn = html.count("<svg") - html.count(">no data</text>")
    assert drawn == html_page.MAX_CHARTS and "more figures not drawn" in html
    dom, console = browse(tmp_path, tmp_path / "index.html")
    assert console == [] and "<script" not in dom


def test_control_the_containment_check_catches_an_engine_without_caps(monkeypatch):
    monkeypatch.setattr(figures, "MAX_NAMES", 10 ** 9)
    monkeypatch.setattr(figures, "MAX_POINTS", 10 ** 9)
    with pytest.raises(AssertionError):
        assert_contained(figures.parse(hostile_props()))
