"""The HTML reports, opened in a real browser (Chromium, headless): the
night's site for a representative night (tests/night_sample.py, hostile
text in every untrusted field) and `orch report RUN_DIR --html` for real
runs on the stand-in tree. Checked: a screenshot that shows the page (its
status colours and plot lines really drawn), the plots, no console errors,
every link relative and leading to a file, and untrusted text escaped,
never run. Each browser check has a control that shows it can fail."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import helpers
import markupsafe
import pytest
import standin_guest
from helpers import IRQ_TEST, build_only, orch, run_json, series
from night_sample import HOSTILE, IRQ, TASK, sample_history, sample_night

from orchestrator import cli
from orchestrator.core import figures
from orchestrator.reports import html_page, svg_plot
from orchestrator.run.record import ConfigRecord, RunRecord, TestRecord

NIGHT = "2026-11-28"


# -- reading what the browser drew -----------------------------------------------

def _unfilter(ftype: int, line: bytearray, prev: bytearray, bpp: int) -> bytearray:
    """One PNG scanline with its filter undone (PNG spec, section 9)."""
    n = len(line)
    if ftype == 1:                                         # Sub
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 255
    elif ftype == 2:                                       # Up
        line = bytearray((x + y) & 255 for x, y in zip(line, prev))
    elif ftype == 3:                                       # Average
        for i in range(n):
            line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
    elif ftype == 4:                                       # Paeth
        for i in range(bpp):
            line[i] = (line[i] + prev[i]) & 255
        for i in range(bpp, n):
            a, b, c = line[i - bpp], prev[i], prev[i - bpp]
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    return line


def png_pixels(path: Path) -> Counter:
    """Every pixel's (r, g, b) of an 8-bit RGB(A) PNG, counted: the filters
    undone, so these are the colours on the screen, not the encoder's deltas
    (no Pillow: plain zlib and struct)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and not interlace, (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * bpp
    prev, pixels = bytearray(stride), Counter()
    for y in range(h):
        at = y * (stride + 1)
        prev = _unfilter(raw[at], bytearray(raw[at + 1:at + 1 + stride]), prev, bpp)
        pixels.update(zip(prev[0::bpp], prev[1::bpp], prev[2::bpp]))
    return pixels


def rgb(hex_colour: str) -> tuple[int, ...]:
    return tuple(bytes.fromhex(hex_colour.lstrip("#")))


def looks_like_a_page(pixels: Counter) -> bool:
    """Not a blank (or nearly blank) screen: many colours, none of them all."""
    total = sum(pixels.values())
    return len(pixels) > 50 and pixels.most_common(1)[0][1] < 0.97 * total


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("href", "src") and v is not None]


def links(page: Path) -> list[str]:
    p = Links()
    p.feed(page.read_text())
    return p.urls


def assert_links_resolve(page: Path) -> None:
    """Every link is relative (the site is copied around and opened from
    file://) and leads to a file or directory that is there."""
    for url in links(page):
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and not url.startswith("/"), (page, url)
        target = (page.parent / unquote(parts.path)).resolve()
        assert target.exists(), f"{page}: {url} leads nowhere ({target})"


def drawn_lines(html: str) -> list[str]:
    """The points of every plotted line with at least two points."""
    return [p for p in re.findall(r'<polyline [^>]*points="([^"]*)"', html)
            if len(re.findall(r"-?[\d.]+,-?[\d.]+", p)) >= 2]


def browse(tmp_path: Path, page: Path, shot: Path | None = None) -> tuple[str, list[str]]:
    """helpers.browse, failing clearly where the page hangs the browser: a
    script that ran and opened a dialog (the sample's hostile
    `onerror=alert(1)`, were it not escaped) blocks headless Chromium."""
    try:
        return helpers.browse(tmp_path, page, shot)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        console = [l for l in (err or "").splitlines() if ":CONSOLE" in l]
        pytest.fail(f"Chromium hung on {page} (a script ran and opened a dialog?); "
                    f"its console: {console}")


# -- controls: each browser check can fail -----------------------------------------

def test_the_console_check_sees_an_error(tmp_path):
    """The control for every "no console errors" below."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script>console.error("control-error")</script></body></html>')
    _, console = browse(tmp_path, page)
    assert any("control-error" in l for l in console), console


def test_the_screenshot_check_sees_a_blank_page(tmp_path):
    """The control for looks_like_a_page: a page with nothing on it fails it."""
    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>")
    shot = tmp_path / "blank.png"
    browse(tmp_path, page, shot)
    assert not looks_like_a_page(png_pixels(shot))


# -- the night's site ------------------------------------------------------------------

def night_layout(tmp_path: Path) -> Path:
    """The nightly's --out as it would be: out/nights/<night>/ with each
    cell's run directory, and the past nights' run directories the history
    names, so that the site's links have something to lead to."""
    out = tmp_path / "out"
    ndir = out / "nights" / NIGHT
    for c in sample_night().cells:
        (ndir / c.run_dir / "logs").mkdir(parents=True)
        (ndir / c.run_dir / "run.json").write_text("{}")
    for points in sample_history().values():
        for p in points:
            (out / p.run_dir / "logs").mkdir(parents=True, exist_ok=True)
            (out / p.run_dir / "run.json").write_text("{}")
    for name in ("junit.xml", "kcidb.json", "summary.txt", "night.json", "plan.json"):
        (ndir / name).write_text("")
    return ndir


def test_night_site_in_a_browser(tmp_path):
    ndir = night_layout(tmp_path)
    n = sample_night()
    pages = html_page.write_night_site(n, sample_history(), ndir, links_base="../../")
    index = ndir / "index.html"
    assert index in pages and len(pages) == 3 and all(p.exists() for p in pages)
    html = index.read_text()
    # The changes are the headline: every one of them before the matrix.
    matrix = html.index('id="matrix"')
    assert html.index('id="changes"') < matrix < html.index('id="plots"')
    for c in n.changes:
        assert 0 <= html.index(str(markupsafe.escape(c.text))) < matrix, c.text
        if c.reproduce:
            assert f"<code>{markupsafe.escape(c.reproduce)}</code>" in html[:matrix]
    # Every failing cell's reproduce command in the matrix, copyable.
    for c in n.cells:
        if c.status != "PASS":
            assert f"<code>{markupsafe.escape(c.reproduce)}</code>" in html[matrix:], c.id
    # The plan: revisions, the tree's commit and where it moved from, the configs.
    assert "v3" in html and "578fc99b56ba" in html and "moved from 7.2.12-1" in html
    # Plots: per series, eviction over nights; per cell, throughput and lock
    # contention against the writers, marked advisory (the cells ran under TCG).
    # The sample night is one from before figures carried declarations: its
    # titles, units and directions are the suite's own table's
    # (guest_tests/figures.py). The other series has no figures: its picture
    # says so.
    assert html.count("<svg") == 2 + 2 * 2 and html.count(">no data</text>") == 1
    assert len(drawn_lines(html)) == 2 + 2 * 2 * 2          # eviction: base and debug
    for title in ("DONTCACHE pages evicted, by night", "base: throughput vs writers",
                  "debug: lock contentions vs writers"):
        assert f">{title}</text>" in html, title
    assert html.count("advisory: measured under TCG") == 5
    assert html.count(">higher is better</text>") == 1 + 2 and \
        html.count(">lower is better</text>") == 2
    assert "test_dontcache_write_irq_completion_evicts base" in html   # a legend
    # Untrusted text only ever escaped, in every page and every plot.
    for p in pages:
        text = p.read_text()
        assert "<script" not in text and "<img" not in text, p
    assert "&lt;script&gt;console.error(&#34;pwned&#34;)&lt;/script&gt;" in html
    for p in pages:
        assert_links_resolve(p)
    assert re.search(r'href="cells/[^"]+/run.json"', html)

    shot = tmp_path / "night.png"
    dom, console = browse(tmp_path, index, shot)
    assert console == [], console                          # and "pwned" never ran
    assert "<script" not in dom and "<img" not in dom
    assert dom.count("<svg") == 6 and len(drawn_lines(dom)) == 10
    pixels = png_pixels(shot)
    assert looks_like_a_page(pixels)
    # The matrix's colours and the plots' lines are on the screen.
    for colour in ("#d8f5d8", "#f8d0d0", "#fde7c4", *svg_plot.COLOURS[:2]):
        assert pixels[rgb(colour)] > 100, colour
    shutil.copy(shot, Path("/tmp/orch-night-screenshot.png"))

    series_page = ndir / "series" / html_page.page_name(n.plan.series[0].key)
    text = series_page.read_text()
    assert 'href="../../../nights/2026-11-26/cells/x--base/run.json"' in text
    assert text.count("<svg") == 1 + 2 * 2 and "History" in text
    assert text.count("<tr>") == 1 + len(sample_history()[n.plan.series[0].key])
    dom, console = browse(tmp_path, series_page)
    assert console == [] and dom.count("<svg") == 5


def test_scale_plots_are_advisory_only_under_tcg(tmp_path):
    n = sample_night()
    for c in n.cells:
        c.accel = "kvm"
    html_page.write_night_site(n, sample_history(), tmp_path)
    html = (tmp_path / "index.html").read_text()
    assert "measured under TCG" not in html and "throughput vs writers" in html


def test_a_plot_escapes_its_labels_and_draws_nothing_without_data():
    svg = svg_plot.chart(HOSTILE, [svg_plot.Line(HOSTILE, [(1, 2), (2, 3)])], "x", "y",
                         note=HOSTILE, x_names={1: HOSTILE})
    assert "<script" not in svg and "<img" not in svg and "&lt;script&gt;" in svg
    assert len(drawn_lines(svg)) == 1
    for pts in ([], [(1, float("nan"))], [(1, 1e300)], ["x", None, (1,), ("a", "b")]):
        empty = svg_plot.chart("t", [svg_plot.Line("a", pts)], "x", "y")
        assert "no data" in empty and "<polyline" not in empty, pts


def test_a_plot_with_many_lines_keeps_its_legend_in_the_picture():
    lines = [svg_plot.Line(f"guest_tests/t.py::test_{i}_" + "x" * 200, [(0, i), (1, i)])
             for i in range(20)]
    svg = svg_plot.chart("t" * 300, lines, "x", "y")
    height = float(re.search(r'height="([\d.]+)"', svg).group(1))
    ys = [float(y) for y in re.findall(r'<text [^>]*y="([\d.]+)"', svg)]
    assert max(ys) <= height and "+8 more" in svg and len(drawn_lines(svg)) == 20
    assert "\u2026" in svg                                  # long labels cut, not spilled


def test_legend_names_tell_tests_apart():
    assert html_page.short_tests({IRQ, TASK}) == {IRQ: "irq_completion_evicts",
                                                    TASK: "task_completion_evicts"}
    assert html_page.short_tests({IRQ}) == {IRQ: IRQ.rsplit("::", 1)[1]}
    a, b = "guest_tests/a.py::test_x", "guest_tests/b.py::test_x"
    assert html_page.short_tests({a, b}) == {a: "a.py::test_x", b: "b.py::test_x"}


# -- one `orch test` run -----------------------------------------------------------------

def scale_figures(base: float) -> dict[str, str]:
    """The properties guest_tests/test_scale_bench.py records for its sweeps,
    by the suite's own helper (guest_tests/figures.py), with a title a
    hostile guest could declare."""
    props: list[tuple[str, str]] = []
    record = guest_figures().Recorder(props, {
        "mib_per_s": {**guest_figures().DECLARED["mib_per_s"], "title": HOSTILE},
        "contentions": guest_figures().DECLARED["contentions"]})
    for n in (1, 2, 4):
        record("mib_per_s", base * n, at=n)
        record("contentions", 2.0 * n + 1.0, at=n)
    return dict(props)


def guest_figures():
    """guest_tests/figures.py, the suite's helper (a module of the guest's
    sys.path, not of the host's)."""
    spec = importlib.util.spec_from_file_location("guest_figures",
                                                  helpers.REPO / "guest_tests" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_orch_report_html_of_a_run(tmp_path, env, mini, monkeypatch):
    """A real run (the stand-in guest: the patched kernel fails its test and
    splats), with what a hostile guest could write in its message and
    scale.json; `orch report RUN_DIR --html` makes its page."""
    for k in ("ORCH_CACHE", "HOME"):
        monkeypatch.setenv(k, env[k])
    standin_guest.install(monkeypatch)
    mbox = series(mini, tmp_path, "s", [(f"mini: {HOSTILE}", {
        "f.c": 'const char a[] = "ORCH-GUEST:FAIL";\nconst char b[] = "ORCH-GUEST:SPLAT";\n'})])
    rd = tmp_path / "run"
    assert cli.main(["test", "--offline-mode", "--mbox", str(mbox), "--tree", str(mini),
                     "--run-dir", str(rd), "--config", "base", "--guest-test", IRQ_TEST]) == 1
    data = run_json(rd)
    cfg = data["configs"][0]
    cfg["comparison"][0]["reason"] = f"regressed: {HOSTILE}"
    cfg["baseline"]["tests"][0]["properties"].update(scale_figures(40.0))
    cfg["patched"]["tests"][0]["properties"].update(scale_figures(30.0))
    (rd / "run.json").write_text(json.dumps(data))

    r = orch(env, tmp_path, "report", str(rd), "--html")
    assert r.returncode == 1, r.stderr                  # the run's own exit status
    page = rd / "report.html"
    assert f"html: {page}" in r.stdout
    html = page.read_text()
    row = re.search(r"<tr><td>([^<]*)</td><td class=\"PASS\">PASS</td>"
                    r"<td class=\"FAIL\">FAIL</td><td>regressed", html)
    assert row and row.group(1) == IRQ_TEST, html
    assert "New splats" in html and "WARNING: CPU: 0 PID: 1 at mm/filemap.c" in html
    assert data["verdict"] in html and "build" in html and "boot + tests" in html
    assert "<script" not in html and "<img" not in html
    escaped = "&lt;script&gt;console.error(&#34;pwned&#34;)&lt;/script&gt;"
    assert f"<h1>orch test: mini: {escaped}" in html and f"regressed: {escaped}" in html
    assert html.count("<svg") == 2 and len(drawn_lines(html)) == 4
    assert '>base: &lt;script&gt;console.error("pwned")' in html and "advisory" in html
    assert ">base: lock contentions vs writers</text>" in html
    assert_links_resolve(page)
    assert {"logs/build-base-patched.log", "logs/console-base-patched.log"} <= set(links(page))
    dom, console = browse(tmp_path, page)
    assert console == [], console
    assert "<script" not in dom and dom.count("<svg") == 2


def test_orch_report_html_of_a_build_only_run(tmp_path, env, mini):
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
    assert_links_resolve(page)


@pytest.mark.parametrize("props", [
    {"figure.x@1": "not a list", "figure.x@two": "1", "figure.x@nan": "2"},
    {"figure.x@1": "NaN", "figure.x@2": "Infinity", "figure.x@3": "1e999",
     "figure.x@4": str(10 ** 400), "figure.x@1e300": "1", "figure.x@5": "-1e300"},
    {"figure.x@1": "1", "figure.x@2": "2", "figure.x.title": HOSTILE, "figure.x.x": HOSTILE,
     "figure.x.unit": HOSTILE, "figure.x.better": HOSTILE, "figure.x.min": "7",
     "figure.x.max": "-7"},
    {f"figure.{HOSTILE}@1": "1", "figure.x@1": HOSTILE, "figure.@1": "1", "figure.": "2"},
])
def test_a_run_page_survives_any_figures(tmp_path, props):
    """A run.json's properties are the guest's (or an artifact's): whatever
    they say, the page is written, shows what can be placed and escapes
    the rest."""
    rec = RunRecord("0", ["orch", "test"], str(tmp_path), "now", verdict="PASS", exit_code=0,
                    configs=[ConfigRecord("base")])
    rec.configs[0].patched.tests = [TestRecord("guest_tests/t.py::test_x", "PASS", "", 1.0,
                                               props)]
    html = html_page.write_run_page(rec, tmp_path).read_text()
    assert "config base" in html and "<script" not in html and "<img" not in html
    placeable = [k for k in props if re.fullmatch(r"figure\.x@[1-5]", k)
                 and figures.number(props[k]) is not None]
    assert len(drawn_lines(html)) == (len(placeable) >= 2)


@pytest.mark.parametrize("bad", ['{"schema_version": "9.0"}', "{}"])
def test_orch_report_html_of_a_bad_run_dir_is_exit_2(tmp_path, env, bad):
    (tmp_path / "rd").mkdir()
    (tmp_path / "rd" / "run.json").write_text(bad)
    r = orch(env, tmp_path, "report", str(tmp_path / "rd"), "--html")
    assert r.returncode == 2 and "Traceback" not in r.stderr
