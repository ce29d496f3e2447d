"""The HTML reports, opened in a real browser (Chromium, headless): the
night's site for a representative night (tests/night_sample.py, hostile
text in every untrusted field) and `orch report RUN_DIR --html` for a real
run on the stand-in tree. Checked: a screenshot that shows a page, the
plots, no console errors, and untrusted text escaped, never run."""

from __future__ import annotations

import re
import shutil
import struct
import zlib
from pathlib import Path

import markupsafe
import pytest

from orchestrator import html_report, svg_plot

from helpers import browse, build_only, orch, run_json, series
from night_sample import HOSTILE, sample_history, sample_night


def png_colours(path: Path) -> int:
    """How many distinct pixel values a PNG has (a blank page has one)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, _h, depth, ctype = struct.unpack(">IIBB", body[:10])
            bpp = {2: 3, 6: 4}[ctype] * depth // 8
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp + 1
    # Filter bytes aside, the rows' bytes: enough to count distinct values.
    seen = {raw[i:i + bpp] for r in range(0, len(raw), stride * 16)
            for i in range(r + 1, r + stride, bpp * 7)}
    return len(seen)


def test_the_console_check_sees_an_error(tmp_path):
    """The control for every "no console errors" below."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script>console.error("control-error")</script></body></html>')
    _, console = browse(tmp_path, page)
    assert any("control-error" in l for l in console), console


def test_night_site_in_a_browser(tmp_path):
    out = tmp_path / "night"
    out.mkdir()
    pages = html_report.write_night_site(sample_night(), sample_history(), out)
    index = out / "index.html"
    assert index in pages and len(pages) == 3
    html = index.read_text()
    # The changes are the headline: before the matrix.
    assert html.index('id="changes"') < html.index('id="matrix"') < html.index('id="plots"')
    for c in sample_night().changes:
        if c.reproduce:
            assert str(markupsafe.escape(c.reproduce)) in html
    # Untrusted text only ever escaped, in every page and every plot.
    for p in pages:
        text = p.read_text()
        assert "<script" not in text and "onerror=alert" not in text.replace(
            "onerror=alert(1)&gt;", ""), p
    assert "&lt;script&gt;console.error(&#34;pwned&#34;)&lt;/script&gt;" in html
    shot = tmp_path / "night.png"
    dom, console = browse(tmp_path, index, shot)
    assert console == [], console                          # and "pwned" never ran
    assert dom.count("<svg") >= 5 and "<polyline" in dom and "evicted over nights" in dom
    assert "mib per s vs writers" in dom and "contentions vs writers" in dom
    assert shot.stat().st_size > 20_000 and png_colours(shot) > 20
    shutil.copy(shot, Path("/tmp/orch-night-screenshot.png"))
    series_page = out / "series" / html_report.page_name(sample_night().plan.series[0].key)
    dom, console = browse(tmp_path, series_page)
    assert console == [] and "History" in dom and dom.count("<svg") >= 1
    # Links are relative: run directories beside the page.
    assert re.search(r'href="cells/[^"]+/run.json"', html)
    assert 'href="../../../nights/2026-11-26/' in series_page.read_text()


def test_a_plot_escapes_its_labels_and_draws_nothing_without_data():
    svg = svg_plot.chart(HOSTILE, [svg_plot.Line(HOSTILE, [(1, 2), (2, 3)])], "x", "y")
    assert "<script" not in svg and "&lt;script&gt;" in svg and "<polyline" in svg
    empty = svg_plot.chart("t", [svg_plot.Line("a", [])], "x", "y")
    assert "no data" in empty and "<polyline" not in empty
    nan = svg_plot.chart("t", [svg_plot.Line("a", [(1, float("nan"))])], "x", "y")
    assert "no data" in nan


def test_orch_report_html_of_a_run(tmp_path, env, mini):
    mbox = series(mini, tmp_path, "s", [("mini: <b>bold</b> & co", {"f.c": "int f;\n"})])
    r, rd = build_only(env, tmp_path, mini, mbox)
    assert r.returncode == 0, r.stderr
    r = orch(env, tmp_path, "report", str(rd), "--html")
    assert r.returncode == 0, r.stderr
    page = rd / "report.html"
    assert f"html: {page}" in r.stdout
    html = page.read_text()
    assert "mini: &lt;b&gt;bold&lt;/b&gt; &amp; co" in html and "<b>bold</b>" not in html
    assert "config base" in html and run_json(rd)["verdict"] in html
    dom, console = browse(tmp_path, page)
    assert console == [] and "baseline" in dom and "patched" in dom


@pytest.mark.parametrize("bad", ['{"schema_version": "9.0"}', "{}"])
def test_orch_report_html_of_a_bad_run_dir_is_exit_2(tmp_path, env, bad):
    (tmp_path / "rd").mkdir()
    (tmp_path / "rd" / "run.json").write_text(bad)
    r = orch(env, tmp_path, "report", str(tmp_path / "rd"), "--html")
    assert r.returncode == 2 and "Traceback" not in r.stderr
