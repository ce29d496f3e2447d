"""The nightly job's machine-readable and mail reports, on sample_night():
junit.xml read back with junitparser (what CI viewers see), kcidb.json
validated with kcidb-io's own schema, and summary.txt's shape. Each check
is shown to catch a broken variant (a control character left in, a wrong
count, a bad id or status), so a green run means the check can fail."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import kcidb_io
import pytest
from junitparser import JUnitXml
from night_sample import HOSTILE, IRQ, SCALE, TASK, sample_night

from orchestrator.nightly.night import Cell, CellSplat, Change, TestCell
from orchestrator.reports import junit_report
from orchestrator.reports.junit_report import junit_xml
from orchestrator.reports.kcidb_report import kcidb_json
from orchestrator.reports.kcidb_report import test_path as kcidb_path
from orchestrator.reports.night_text import MAX_LINES, WIDTH, summary_text

REPO = Path(__file__).resolve().parent.parent.parent
LORE_V3 = REPO / "tests" / "data" / "lore" / "blk-dontcache-v3.mbox"

# Everything a hostile guest or mail could put in a text field: terminal
# escapes, NUL, a bell, a lone surrogate (json.loads makes one from
# "\ud800"), a non-character, C1 CSI, a bidi override and a forged line.
NASTY = "\x1b[31mred\x00\x07\ud800\ufffe\x9b2J\u202eevil\nFAIL forged line\r"
# No XML 1.0 character, no terminal control (tab, newline and CR aside).
BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def nasty_night():
    """sample_night() with NASTY in every untrusted field."""
    n = sample_night()
    n.plan.series[1].title = "[PATCH] mm: " + NASTY
    for c in n.cells:
        c.detail = "detail " + NASTY
        c.splats = [CellSplat("a1b2c3d4e5f6", "WARNING " + NASTY, "patched")]
        for t in c.tests:
            t.message = "AssertionError " + NASTY
            t.properties = {"k" + NASTY: "v" + NASTY}
    n.changes.append(Change("new-failure", "text " + NASTY, True, n.cells[2].series,
                            n.cells[2].tree, "base", None, n.cells[2].reproduce))
    return n


# ---------------------------------------------------------------- JUnit

def label(cell_title: str, config: str, version: int = 3) -> str:
    return f"{cell_title} v{version} / debian:linux-source-7.2 / {config}"


GOOD = "block: enable RWF_DONTCACHE for block..."
EVIL = 'mm: <script>console.error("pwned")</s...'

# What sample_night() must give, written out by hand (not computed by the
# code under test): per suite, its (classname, test name, result element).
BLK = "guest_tests.test_blockdev_dontcache"
EXPECTED_JUNIT = [
    (label(GOOD, "base"), [
        (BLK, "test_dontcache_write_irq_completion_evicts", None),
        (BLK, "test_dontcache_write_task_completion_evicts", None),
        ("guest_tests.test_scale_bench", "test_scale_dontcache_writers", None)]),
    (label(GOOD, "debug"), [
        (BLK, "test_dontcache_write_irq_completion_evicts", None),
        (BLK, "test_dontcache_write_task_completion_evicts", "Failure"),
        ("guest_tests.test_scale_bench", "test_scale_dontcache_writers", None),
        ("orch", "splats", "Failure")]),
    (label(EVIL, "base", 1), [("orch", "apply", "Failure")]),
]


def junit_problems(text: str, expected) -> list[str]:
    """What is wrong with `text` against `expected` (EXPECTED_JUNIT's shape),
    read as GitLab and Jenkins read it: counts, names, results, and no two
    testcases with the same classname and name (GitLab keeps only the first)."""
    xml = JUnitXml.fromstring(text)
    problems = []
    suites = list(xml)
    if [s.name for s in suites] != [e[0] for e in expected]:
        problems.append(f"suites {[s.name for s in suites]}")
    for suite, (name, cases) in zip(suites, expected):
        got = [(c.classname, c.name, type(c.result[0]).__name__ if c.result else None)
               for c in suite]
        want = [(cls, f"{test}[{name}]", res) for cls, test, res in cases]
        if got != want:
            problems.append(f"{name}: {got} != {want}")
        counts = (suite.tests, suite.failures, suite.errors, suite.skipped)
        want_counts = (len(cases), sum(r == "Failure" for *_, r in cases),
                       sum(r == "Error" for *_, r in cases),
                       sum(r == "Skipped" for *_, r in cases))
        if counts != want_counts:
            problems.append(f"{name}: counts {counts} != {want_counts}")
    all_cases = [(c.classname, c.name) for s in suites for c in s]
    if len(set(all_cases)) != len(all_cases):
        problems.append("two testcases with the same classname and name")
    totals = (xml.tests, xml.failures, xml.errors, xml.skipped)
    want_totals = (sum(len(c) for _, c in expected),
                   sum(r == "Failure" for _, c in expected for *_, r in c), 0, 0)
    if totals != want_totals:
        problems.append(f"totals {totals} != {want_totals}")
    return problems


def test_junit_sample_counts_and_statuses():
    text = junit_xml(sample_night())
    assert junit_problems(text, EXPECTED_JUNIT) == []


def test_junit_failure_text_has_message_and_reproduce():
    n = sample_night()
    xml = JUnitXml.fromstring(junit_xml(n))
    suites = list(xml)
    task = [c for c in suites[1] if c.name.startswith("test_dontcache_write_task")][0]
    failure = task.result[0]
    assert failure.message == "AssertionError: 3/16 DONTCACHE folios still cached"
    assert failure.type == "still failing"
    assert n.cells[1].reproduce in failure.text
    assert "baseline: FAIL, patched: FAIL" in failure.text
    apply = list(suites[2])[0].result[0]
    assert apply.message == n.cells[2].detail and apply.type == "NO-APPLY"
    assert n.cells[2].reproduce in apply.text
    # Markup in untrusted text arrives as text, escaped on the way.
    assert HOSTILE in apply.text and "<script>" not in junit_xml(n)


def test_junit_checker_catches_wrong_variants():
    """The checker above fails on a dropped testcase, on a failure turned
    into a pass, and on testcase names without the cell (which GitLab would
    fold into one)."""
    text = junit_xml(sample_night())
    root = ET.fromstring(text)
    suite = root.findall("testsuite")[1]
    suite.remove(suite.findall("testcase")[0])
    assert junit_problems(ET.tostring(root, encoding="unicode"), EXPECTED_JUNIT)

    root = ET.fromstring(text)
    for case in root.iter("testcase"):
        for f in case.findall("failure"):
            case.remove(f)
    assert junit_problems(ET.tostring(root, encoding="unicode"), EXPECTED_JUNIT)

    root = ET.fromstring(text)
    for case in root.iter("testcase"):
        case.set("name", case.get("name").split("[")[0])
    problems = junit_problems(ET.tostring(root, encoding="unicode"), EXPECTED_JUNIT)
    assert "two testcases with the same classname and name" in problems


def test_junit_other_statuses():
    n = sample_night()
    cell = n.cells[0]
    cell.tests = [TestCell("guest_tests/t.py::Cls::test_e[a-b]", "PASS", "ERROR", "broke"),
                  TestCell("guest_tests/t.py::test_s", "SKIP", "SKIP", "skipped", "no null_blk"),
                  TestCell("guest_tests/t.py::test_n", "PASS", None, "not run"),
                  TestCell("guest_tests/t.py::test_m", "PASS", "MISS", "missing"),
                  TestCell("guest_tests/t.py::test_f", "PASS", "FLAKY", "flaky", "1 of 3")]
    n.cells[1] = dataclasses.replace(n.cells[1], status="BUILD-FAILED", tests=[], splats=[],
                                     detail="make: *** [vmlinux] Error 2")
    n.cells[2] = dataclasses.replace(n.cells[2], status="ERROR", detail="qemu died")
    xml = JUnitXml.fromstring(junit_xml(n))
    s0, s1, s2 = list(xml)
    got = [(c.classname, c.name.split("[" + s0.name)[0],
            type(c.result[0]).__name__ if c.result else None) for c in s0]
    assert got == [("guest_tests.t.Cls", "test_e[a-b]", "Error"),
                   ("guest_tests.t", "test_s", "Skipped"),
                   ("guest_tests.t", "test_n", "Skipped"),
                   ("guest_tests.t", "test_m", "Error"),
                   ("guest_tests.t", "test_f", "Failure")]
    assert (s0.tests, s0.failures, s0.errors, s0.skipped) == (5, 1, 2, 2)
    (build,) = list(s1)
    assert build.name.startswith("build[") and type(build.result[0]).__name__ == "Failure"
    assert build.time == 124.0
    (run,) = list(s2)
    assert run.name.startswith("run[") and type(run.result[0]).__name__ == "Error"
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (7, 2, 3, 2)


def test_junit_strips_control_characters():
    text = junit_xml(nasty_night())
    assert not BAD_CHARS.search(text)
    text.encode("utf-8")               # no lone surrogate left to fail the write
    ET.fromstring(text.encode("utf-8"))   # a strict XML 1.0 parser takes it
    xml = JUnitXml.fromstring(text)
    assert xml.tests == 10     # nasty_night() gives every cell a new splat
    # Attributes are one line: the forged line stays inside the message.
    messages = [r.message for s in xml for c in s for r in c.result]
    assert all("\n" not in m for m in messages)
    assert any("FAIL forged line" in m for m in messages)


def test_junit_control_left_in_is_caught(monkeypatch):
    """The control: with the stripping undone, the same night gives a file
    that junitparser (and GitLab's parser) refuses."""
    monkeypatch.setattr(junit_report, "xml_text", lambda text, limit=0: text or "")
    text = junit_xml(nasty_night())
    assert BAD_CHARS.search(text)
    with pytest.raises(UnicodeEncodeError):      # the lone surrogate: not even writable
        text.encode("utf-8")
    n = sample_night()
    # A property value meets no other cleaning on its way to the XML.
    n.cells[1].tests[1].properties = {"pages_still_cached": "\x1b[31m3"}
    with pytest.raises(ET.ParseError):           # an escape: not XML 1.0
        JUnitXml.fromstring(junit_xml(n))


# ---------------------------------------------------------------- KCIDB

ID = re.compile(r"^[a-z0-9_]+:")


def test_kcidb_sample_validates_and_links():
    data = kcidb_json(sample_night())
    kcidb_io.schema.LATEST.validate(data)
    assert data["version"] == {"major": 5, "minor": 3}
    # 2 series x 1 tree, and the tree alone for the baselines; 2 cells built
    # both sides, but the baseline of a tree+config is one build each.
    counts = {k: len(data.get(k, [])) for k in ("checkouts", "builds", "tests", "issues",
                                                 "incidents")}
    assert counts == {"checkouts": 3, "builds": 4, "tests": 6, "issues": 1, "incidents": 1}
    ids = {k: {o["id"] for o in data[k]} for k in counts}
    for k in counts:
        assert all(ID.match(i) for i in ids[k]), k
        assert len(ids[k]) == counts[k], f"duplicate {k} ids"
        # The prefix is the origin's name (the pattern alone lets any
        # lower-case word through).
        assert all(o["id"].startswith(o["origin"] + ":") and o["origin"] == "orch"
                   for o in data[k]), k
    assert all(b["checkout_id"] in ids["checkouts"] for b in data["builds"])
    assert all(t["build_id"] in ids["builds"] for t in data["tests"])
    (inc,) = data["incidents"]
    assert inc["issue_id"] in ids["issues"] and inc["build_id"] in ids["builds"]
    debug_patched = [b for b in data["builds"] if b["config_name"] == "debug"
                     and b["misc"]["side"] == "patched"]
    assert inc["build_id"] == debug_patched[0]["id"]

    statuses = sorted((t["misc"]["nodeid"], t["status"]) for t in data["tests"])
    assert statuses == sorted([(IRQ, "PASS"), (TASK, "PASS"), (SCALE, "PASS"),
                               (IRQ, "PASS"), (TASK, "FAIL"), (SCALE, "PASS")])
    for t in data["tests"]:
        assert "::" not in t["path"] and "[" not in t["path"]
    evil = [c for c in data["checkouts"] if c.get("message_id") == "evil@example.org"]
    assert evil[0]["valid"] is False and "does not apply" in evil[0]["log_excerpt"]
    patched = [b for b in data["builds"] if b["misc"]["side"] == "patched"]
    assert {b["duration"] for b in patched} == {124.0}
    assert all(b["status"] == "PASS" for b in data["builds"])


def test_kcidb_broken_documents_are_rejected():
    """The control: the same validation call refuses a bad id, a bad status,
    a test path with pytest's "::", and a build without its checkout link."""
    good = kcidb_json(sample_night())
    validate = kcidb_io.schema.LATEST.validate
    validate(copy.deepcopy(good))
    breakers = [
        lambda d: d["checkouts"][0].update(id="no-origin-prefix"),
        lambda d: d["builds"][0].update(id="ORCH:upper"),
        lambda d: d["tests"][0].update(status="BROKEN"),
        lambda d: d["builds"][0].update(status="OK"),
        lambda d: d["tests"][0].update(path="guest_tests/t.py::test[x]"),
        lambda d: d["builds"][0].pop("checkout_id"),
        lambda d: d["issues"][0].update(version=-1),
    ]
    for i, brk in enumerate(breakers):
        bad = copy.deepcopy(good)
        brk(bad)
        with pytest.raises(jsonschema.exceptions.ValidationError):
            validate(bad)
            pytest.fail(f"breaker {i} was not rejected")


def test_kcidb_other_statuses_and_origin():
    n = sample_night()
    n.cells[0].tests = [TestCell("guest_tests/t.py::test_e", "PASS", "ERROR", "broke"),
                        TestCell("guest_tests/t.py::test_s", "SKIP", "SKIP", "skipped"),
                        TestCell("guest_tests/t.py::test_n", "PASS", None, "not run"),
                        TestCell("guest_tests/t.py::test_m", "PASS", "MISS", "missing"),
                        TestCell("guest_tests/t.py::test_f", "PASS", "FLAKY", "flaky"),
                        TestCell("guest_tests/t.py::test_f", "PASS", "PASS", "same id twice")]
    n.cells[1] = dataclasses.replace(n.cells[1], status="BUILD-FAILED", tests=[], splats=[],
                                     booted={}, boot_seconds={})
    data = kcidb_json(n, origin="my_lab")
    kcidb_io.schema.LATEST.validate(data)
    assert all(o["id"].startswith("my_lab:") and o["origin"] == "my_lab"
               for k in ("checkouts", "builds", "tests") for o in data[k])
    got = [t["status"] for t in data["tests"]][:6]
    assert got == ["ERROR", "SKIP", "MISS", "MISS", "FAIL", "PASS"]
    failed = [b for b in data["builds"] if b.get("status") == "FAIL"]
    assert len(failed) == 1 and failed[0]["config_name"] == "debug"
    with pytest.raises(ValueError):
        kcidb_json(n, origin="Orch-CI")


def test_kcidb_baseline_build_is_shared():
    """Two series on the same tree and config share one baseline kernel:
    one build, on the tree's own checkout (no patches)."""
    n = sample_night()
    n.cells[2] = dataclasses.replace(n.cells[2], status="PASS", detail="",
                                     build_seconds={"baseline": 0.0, "patched": 99.0},
                                     built={"baseline": False, "patched": True},
                                     booted={"baseline": True, "patched": True})
    data = kcidb_json(n)
    kcidb_io.schema.LATEST.validate(data)
    sides = sorted((b["config_name"], b["misc"]["side"]) for b in data["builds"])
    assert sides == [("base", "baseline"), ("base", "patched"), ("base", "patched"),
                     ("debug", "baseline"), ("debug", "patched")]
    (tree_co,) = [c for c in data["checkouts"] if c.get("patchset_hash") == ""]
    assert all(b["checkout_id"] == tree_co["id"] for b in data["builds"]
               if b["misc"]["side"] == "baseline")
    assert all(b["checkout_id"] != tree_co["id"] for b in data["builds"]
               if b["misc"]["side"] == "patched")


def _unescape(component: str) -> str:
    """The reverse of report_kcidb's path escape, written here on its own."""
    out, i = [], 0
    while i < len(component):
        ch = component[i]
        if ch != "-":
            out.append(ch)
            i += 1
        elif component[i + 1] == "-":
            out.append("-")
            i += 2
        elif component[i + 1] == "u":
            out.append(chr(int(component[i + 2:i + 8], 16)))
            i += 8
        else:
            out.append(chr(int(component[i + 1:i + 3], 16)))
            i += 3
    return "".join(out)


@pytest.mark.parametrize("nodeid, path", [
    (IRQ, "guest_tests.test_blockdev_dontcache.test_dontcache_write_irq_completion_evicts"),
    ("guest_tests.test_blockdev_dontcache::test_x", "guest_tests.test_blockdev_dontcache.test_x"),
    ("guest_tests/sub/test_m.py::TestC::test_x[irq]", "guest_tests.sub.test_m.TestC.test_x.irq"),
    ("guest_tests/t.py::test_x[1-2]", "guest_tests.t.test_x.1--2"),
    ("guest_tests/t.py::test_x[a::b/c.d é[1]]",
     "guest_tests.t.test_x.a-3a-3ab-2fc-2ed-20-e9-5b1-5d"),
    ("guest_tests/t.py::test_x[\u2603]", "guest_tests.t.test_x.-u002603"),
])
def test_kcidb_test_path(nodeid, path):
    assert kcidb_path(nodeid) == path
    assert kcidb_io.schema.LATEST.json["$defs"]["path"]["pattern"]
    assert re.fullmatch(kcidb_io.schema.LATEST.json["$defs"]["path"]["pattern"], path)
    # The parameters read back exactly.
    if "[" in nodeid:
        param = nodeid.partition("[")[2][:-1]
        assert _unescape(path.split(".")[-1]) == param


def _sha256sum_patchset(files: list[Path]) -> str:
    """The schema's own recipe: sha256sum *.patch | cut -c-64 | sha256sum."""
    out = subprocess.run(["sha256sum", *map(str, files)], capture_output=True, text=True,
                         check=True).stdout
    lines = "".join(line[:64] + "\n" for line in out.splitlines())
    return hashlib.sha256(lines.encode()).hexdigest()


def test_kcidb_patchset_from_the_mbox(tmp_path):
    n = sample_night()
    (tmp_path / "series").mkdir()
    shutil.copy(LORE_V3, tmp_path / n.plan.series[0].mbox)
    data = kcidb_json(n, night_dir=tmp_path)
    kcidb_io.schema.LATEST.validate(data)
    (co,) = [c for c in data["checkouts"] if c.get("patchset_files")]
    assert co["patchset_files"] == [{"name": "blk-dontcache-v3.mbx",
                                     "url": (tmp_path / "series/blk-dontcache-v3.mbx").as_uri()}]
    # The thread holds a cover letter, 2 patches and 2 replies: the patches
    # alone, cut at their "From " lines by a different means, and hashed the
    # way the schema says.
    text = LORE_V3.read_bytes()
    parts = [b"From " + p for p in text.split(b"\nFrom ")[1:]]
    parts.insert(0, text.split(b"\nFrom ")[0])
    parts = [p if i == len(parts) - 1 else p + b"\n" for i, p in enumerate(parts)]
    patches = [p for p in parts if re.search(rb"\nSubject: \[PATCH RFC v3 [12]/2\]", p)]
    assert len(patches) == 2
    files = []
    for i, p in enumerate(patches):
        files.append(tmp_path / f"{i:04}.patch")
        files[-1].write_bytes(p)
    assert co["patchset_hash"] == _sha256sum_patchset(files)

    published = kcidb_json(n, night_dir=tmp_path, url_base="https://ci.example.org/n/")
    (co,) = [c for c in published["checkouts"] if c.get("patchset_files")]
    assert co["patchset_files"][0]["url"] == \
        "https://ci.example.org/n/series/blk-dontcache-v3.mbx"


def test_kcidb_patchset_absent_or_outside(tmp_path):
    n = sample_night()
    data = kcidb_json(n, night_dir=tmp_path)         # no mbox there
    kcidb_io.schema.LATEST.validate(data)
    assert not any("patchset_files" in c for c in data["checkouts"])
    secret = tmp_path / "secret"
    secret.write_text("From x\n\ndiff --git a/x b/x\n")
    (tmp_path / "night").mkdir()
    n.plan.series[0].mbox = "../secret"                # never read outside the night
    data = kcidb_json(n, night_dir=tmp_path / "night")
    assert not any("patchset_files" in c for c in data["checkouts"])


def test_kcidb_hostile_text_validates_clean():
    data = kcidb_json(nasty_night())
    kcidb_io.schema.LATEST.validate(data)

    def strings(x):
        if isinstance(x, dict):
            for k, v in x.items():
                yield from strings(k)
                yield from strings(v)
        elif isinstance(x, list):
            for v in x:
                yield from strings(v)
        elif isinstance(x, str):
            yield x
    for s in strings(data):
        assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x1b]", s), s
    # No untrusted text in an id: the hash covers it.
    for k in ("checkouts", "builds", "tests", "incidents"):
        assert all(re.fullmatch(r"orch:[a-z]+:2026-11-28:[0-9a-f]{20}", o["id"]) for o in data[k])


# ---------------------------------------------------------------- the summary

def _long_token_line(line: str) -> bool:
    """A line that is one token too long for WIDTH (a test id): allowed."""
    return len(line.strip().removesuffix(" \\").split()) == 1


def _commands(text: str) -> list[str]:
    """The "$ " commands in a summary, continuation lines joined."""
    cmds, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if cur is not None:
            cur += " " + s.removesuffix(" \\")
            if not s.endswith(" \\"):
                cmds.append(cur)
                cur = None
        elif s.startswith("$ "):
            cur = s[2:].removesuffix(" \\")
            if not s.endswith(" \\"):
                cmds.append(cur)
                cur = None
    return cmds


def test_summary_sample():
    n = sample_night()
    text = summary_text(n, site_url="https://ci.example.org/orch/")
    lines = text.splitlines()
    assert len(lines) <= MAX_LINES
    assert all(len(line) <= WIDTH or _long_token_line(line) for line in lines), \
        [line for line in lines if len(line) > WIDTH]
    assert lines[0] == "orch nightly 2026-11-28: something new fails (exit 1)"
    assert "https://ci.example.org/orch/nights/2026-11-28/" in text
    # Regressions first, each marked; every reproduce command there in full.
    marks = [line[:2] for line in lines if line.startswith(("! ", "- "))]
    assert marks == ["! "] * 3 + ["- "] * 3
    assert sum("REGRESSION" in line for line in lines) == 3
    assert _commands(text) == [n.changes[0].reproduce, n.changes[1].reproduce,
                               n.changes[3].reproduce]
    # The matrix: one line per cell, worst first.
    matrix = lines[lines.index("Cells (status, config, tree, series), worst first:") + 1:]
    assert [m.split()[0] for m in matrix] == ["NO-APPLY", "FAIL", "PASS"]
    assert [m.split()[1] for m in matrix] == ["base", "debug", "base"]


def test_summary_wrapped_command_is_the_same_command():
    """A reproduce command broken over lines with backslashes gives the
    shell the same words, quotes included."""
    n = sample_night()
    cmd = ("orch test 20251127-blk-dontcache-v3-0-abc@columbia.edu --tree '/srv/my trees/linux' "
           "--base 578fc99b56ba --config debug --guest-test "
           "'guest_tests/test_memcg_pressure.py::test_dontcache_under_memcg_limit[irq mode]'")
    n.changes = [Change("new-failure", "x", True, n.cells[1].series, n.cells[1].tree, "debug",
                        None, cmd)]
    text = summary_text(n)
    block = text[text.index("    $ "):].split("\n\n")[0]
    assert block.count("\\\n") >= 2
    script = "set -- " + block.replace("    $ orch", "", 1) + '\nprintf "%s\\0" "$@"'
    got = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    assert got.decode().split("\0")[:-1] == [
        "test", "20251127-blk-dontcache-v3-0-abc@columbia.edu", "--tree", "/srv/my trees/linux",
        "--base", "578fc99b56ba", "--config", "debug", "--guest-test",
        "guest_tests/test_memcg_pressure.py::test_dontcache_under_memcg_limit[irq mode]"]


def test_summary_caps_lines_and_counts_the_rest():
    n = sample_night()
    base = n.cells[0]
    n.cells = [dataclasses.replace(base, config=f"cfg{i}", status="PASS" if i % 3 else "FAIL")
               for i in range(30)]
    n.changes = [Change("new-failure", f"test {i} fails", i % 2 == 0, base.series, base.tree,
                        f"cfg{i}", None, f"orch test x --config cfg{i}") for i in range(50)]
    lines = summary_text(n).splitlines()
    assert len(lines) <= MAX_LINES
    more_changes = [line for line in lines if line.startswith("... and ")
                    and "change" in line]
    more_cells = [line for line in lines if line.startswith("... and ") and "cell" in line]
    shown_changes = sum(line.startswith(("! ", "- ")) for line in lines)
    shown_cells = sum(line.startswith(("PASS ", "FAIL ")) for line in lines)
    assert shown_changes + int(more_changes[0].split()[2]) == 50
    assert shown_cells + int(more_cells[0].split()[2]) == 30
    assert shown_cells >= 8
    # Regressions first, and the FAIL cells before the PASS ones.
    assert all(line.startswith("! ") for line in lines if line.startswith(("! ", "- ")))
    cells = [line.split()[0] for line in lines if line.startswith(("PASS ", "FAIL "))]
    assert cells == sorted(cells)


@pytest.mark.parametrize("code, state, words", [
    (0, "done", "nothing new fails (exit 0)"),
    (2, "done", "bad NIGHTLY.toml (exit 2)"),
    (5, "done", "the night produced no result (exit 5)"),
    (None, "running", "still running"),
    (None, "interrupted", "no exit status (interrupted)"),
])
def test_summary_exit_meaning(code, state, words):
    n = sample_night()
    n.exit_code, n.state = code, state
    if code == 5:
        n.cells, n.changes = [], []
    text = summary_text(n)
    assert text.splitlines()[0] == f"orch nightly 2026-11-28: {words}"
    if state != "done":
        assert f"state: {state}" in text
    if code == 5:
        assert "0 cells (none)" in text and "No changes since the last night." in text


def test_summary_hostile_text_stays_on_its_line():
    text = summary_text(nasty_night())
    assert not BAD_CHARS.search(text)
    assert "\u202e" not in text
    lines = text.splitlines()
    assert not any(line.startswith("FAIL forged line") for line in lines)
    assert len(lines) <= MAX_LINES
    # The control: the same check catches text that was not cleaned.
    assert BAD_CHARS.search(NASTY) and "\nFAIL forged line" in NASTY


def test_reports_take_a_night_without_cells():
    n = sample_night()
    n.cells, n.changes, n.exit_code = [], [], 5
    assert JUnitXml.fromstring(junit_xml(n)).tests == 0
    kcidb_io.schema.LATEST.validate(kcidb_json(n))
    assert summary_text(n).startswith("orch nightly 2026-11-28: the night produced no result")


def test_cell_with_only_a_baseline_splat():
    """A splat on the baseline is linked to the baseline build and is no
    JUnit failure (it is not the series' doing)."""
    n = sample_night()
    n.cells[0].splats = [CellSplat("ffee00", "BUG: sleeping function called", "baseline")]
    data = kcidb_json(n)
    kcidb_io.schema.LATEST.validate(data)
    inc = [i for i in data["incidents"] if i["issue_id"] == "orch:splat:ffee00"]
    build = [b for b in data["builds"] if b["id"] == inc[0]["build_id"]]
    assert build[0]["misc"]["side"] == "baseline"
    suite = list(JUnitXml.fromstring(junit_xml(n)))[0]
    assert suite.failures == 0 and suite.tests == 3


def test_unknown_cell_and_test_status_is_not_a_pass():
    n = sample_night()
    n.cells[0] = dataclasses.replace(n.cells[0], status="WEIRD")
    n.cells[0].tests[0] = TestCell(IRQ, "PASS", "XPASS", "odd")
    suite = list(JUnitXml.fromstring(junit_xml(n)))[0]
    assert suite.errors == 1
    data = kcidb_json(n)
    kcidb_io.schema.LATEST.validate(data)
    assert data["tests"][0]["status"] == "ERROR"
    assert summary_text(n).splitlines()[-3].startswith("WEIRD")


def test_cell_without_tests_that_passed():
    n = sample_night()
    n.cells = [Cell(series=n.cells[0].series, version=3, msgid=n.cells[0].msgid,
                    tree=n.cells[0].tree, commit=n.cells[0].commit, config="base",
                    status="PASS", detail="", run_dir=None, reproduce="orch test x")]
    (case,) = list(list(JUnitXml.fromstring(junit_xml(n)))[0])
    assert case.name.startswith("run[") and case.is_passed
