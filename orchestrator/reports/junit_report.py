"""A night as JUnit XML (junit.xml), for the test views of GitLab and Jenkins.

One <testsuite> per cell (series revision x tree x config), one <testcase>
per test on the patched side, marked by its patched status. A cell that
stopped before its tests (NO-APPLY, BUILD-FAILED, ERROR) has one testcase for
the step that stopped it, and a cell with a new kernel splat one for that.

Both viewers ignore the <testsuite> name when they list tests: GitLab shows
a testcase's classname as its "suite" and keeps only the first of testcases
with the same classname and name; Jenkins groups by classname. The same test
runs in every cell, so each testcase's name carries the cell in pytest's
parameter brackets: "test_x[<series> v3 / <tree> / debug]".
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from orchestrator.core.models import Status
from orchestrator.core.sanitize import clean
from orchestrator.nightly.night import Cell, CellStatus, Night, TestCell
from orchestrator.reports.reportlib import cell_name, one_line

# XML 1.0 allows only these characters (tab, newline and carriage return
# are the only controls); ElementTree escapes markup but writes any other
# character as it is, which leaves a file no parser reads. C1 controls are
# allowed by XML 1.0 but are terminal escapes: they go too.
_NOT_XML = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# A cell that ran no tests: the step that stopped it, and how it counts.
# A patch that does not apply or a kernel that does not build is the series'
# fault (a failure); ERROR is orch's or the machine's (an error).
_STEP = {"NO-APPLY": ("apply", "failure"), "BUILD-FAILED": ("build", "failure"),
         "ERROR": ("run", "error"), "FAIL": ("run", "failure")}

# The patched status -> the JUnit element. FLAKY (mixed outcomes over
# --repeat) is a failure, as orch's own verdict counts it; MISS (expected but
# never reported) is an error of the run, not of the test.
_ELEMENT = {"FAIL": "failure", "FLAKY": "failure", "ERROR": "error", "MISS": "error",
            "SKIP": "skipped", None: "skipped"}


_KSELFTEST = "kselftest/"   # guest.kselftest_run.PREFIX: the reports read records only


def xml_text(text: str | None, limit: int = 4000) -> str:
    """Untrusted text that XML 1.0 can carry."""
    return _NOT_XML.sub("?", clean(text, limit))


def _split_nodeid(nodeid: str) -> tuple[str, str]:
    """A pytest node id as JUnit's (classname, name), the way pytest's own
    junit.xml names it: "dir/test_f.py::Class::test[p]" ->
    ("dir.test_f.Class", "test[p]"). Parameters may hold "::", so the split
    is made before the first "[" only. A kselftest's id is no node id:
    "kselftest/<T>/<X>" (a target T may hold "/": drivers/net) is
    ("kselftest.<T>", "X"), as its run_kselftest.sh names the collection
    and the test; a subtest's "kselftest/<T>/<X>/<name>" is
    ("kselftest.<T>.<X>", "<name>")."""
    if nodeid.startswith(_KSELFTEST):
        where, _, name = nodeid.rpartition("/")
        return where.replace("/", "."), name
    head, bracket, params = nodeid.partition("[")
    parts = head.split("::")
    name = parts[-1] + bracket + params
    module = parts[0].removesuffix(".py").replace("/", ".") if len(parts) > 1 else ""
    return ".".join(p for p in [module, *parts[1:-1]] if p), name


def _case(suite: ET.Element, classname: str, name: str, label: str,
          seconds: float | None = None) -> ET.Element:
    case = ET.SubElement(suite, "testcase", classname=xml_text(classname, 300),
                         name=xml_text(f"{name}[{label}]", 500))
    if seconds is not None:
        case.set("time", f"{seconds:.3f}")
    return case


def _mark(case: ET.Element, element: str, message: str, text: str, kind: str) -> None:
    """`kind` goes in the type attribute, which Jenkins shows beside the
    message: the test's transition, or the cell's status."""
    el = ET.SubElement(case, element, message=xml_text(one_line(message, 300)))
    if element != "skipped":
        el.set("type", xml_text(one_line(kind, 100)))
    el.text = xml_text(text, 16000)


def _test_text(cell: Cell, t: TestCell) -> str:
    lines = [clean(t.message)] if t.message else []
    lines += [f"baseline: {t.baseline or 'not run'}, patched: {t.patched or 'not run'} "
              f"({t.transition})",
              f"reproduce: {cell.reproduce}"]
    if cell.run_dir:
        lines.append(f"run directory: {cell.run_dir}")
    return "\n".join(lines)


def _test_case(suite: ET.Element, cell: Cell, t: TestCell, label: str) -> str | None:
    classname, name = _split_nodeid(t.name)
    case = _case(suite, classname, name, label)
    if t.properties:
        props = ET.SubElement(case, "properties")
        for k, v in sorted(t.properties.items()):
            ET.SubElement(props, "property", name=xml_text(k, 100), value=xml_text(v, 500))
    if t.patched == Status.PASS:
        return None
    element = _ELEMENT.get(t.patched, "error")   # a status this orch does not know
    if cell.status == CellStatus.PASS and t.transition == "still failing" \
            and t.patched in (Status.FAIL, Status.ERROR):
        # The run's verdict: failing on the baseline too, and not a test the
        # series is expected to fix. Counted as pytest counts an xfail.
        _mark(case, "skipped", f"known failure (failing on the baseline too; not a target "
              f"of this series): {(t.message.splitlines() or [''])[0]}".rstrip(": "),
              _test_text(cell, t), t.transition)
        return "skipped"
    if element == "skipped":
        message = t.message or ("not run on the patched side" if t.patched is None
                                else "skipped")
    else:
        message = (t.message.splitlines() or [""])[0] or f"{t.patched} ({t.transition})"
    _mark(case, element, message, _test_text(cell, t), t.transition)
    return element


def _cell_suite(root: ET.Element, night: Night, cell: Cell) -> dict[str, int]:
    label = cell_name(night, cell)
    suite = ET.SubElement(root, "testsuite", name=xml_text(label, 300))
    props = ET.SubElement(suite, "properties")
    for k, v in (("series", cell.series), ("version", str(cell.version)),
                 ("msgid", cell.msgid), ("tree", cell.tree), ("commit", cell.commit),
                 ("config", cell.config), ("status", cell.status), ("detail", cell.detail),
                 ("reproduce", cell.reproduce), ("run_dir", cell.run_dir or "")):
        ET.SubElement(props, "property", name=k, value=xml_text(v, 500))
    counts = {"tests": 0, "failure": 0, "error": 0, "skipped": 0}

    def count(element: str | None) -> None:
        counts["tests"] += 1
        if element:
            counts[element] += 1

    for t in cell.tests:
        count(_test_case(suite, cell, t, label))
    if not cell.tests:
        step, element = _STEP.get(cell.status, ("run", None))
        case = _case(suite, "orch", step, label,
                     cell.build_seconds.get("patched") if step == "build" else None)
        if element:
            _mark(case, element, cell.detail or cell.status,
                  f"{clean(cell.detail)}\nstatus: {cell.status}\nreproduce: {cell.reproduce}",
                  cell.status)
        count(element)
    new_splats = [s for s in cell.splats if s.side == "patched"]
    if new_splats:
        # A kernel warning that only the patched kernel printed fails the
        # cell's tests in no viewer otherwise.
        case = _case(suite, "orch", "splats", label)
        _mark(case, "failure", f"{len(new_splats)} new kernel splat(s): {new_splats[0].title}",
              "\n".join(f"{s.fingerprint}: {clean(s.title, 300)}" for s in new_splats)
              + f"\nreproduce: {cell.reproduce}", "new splat")
        count("failure")
    suite.set("tests", str(counts["tests"]))
    suite.set("failures", str(counts["failure"]))
    suite.set("errors", str(counts["error"]))
    suite.set("skipped", str(counts["skipped"]))
    seconds = cell.build_seconds.get("patched", 0.0) + cell.boot_seconds.get("patched", 0.0)
    suite.set("time", f"{seconds:.3f}")
    if night.started:
        suite.set("timestamp", xml_text(night.started, 64))
    return counts


def junit_xml(night: Night) -> str:
    root = ET.Element("testsuites", name=xml_text(f"orch nightly {night.night}", 100))
    totals = {"tests": 0, "failure": 0, "error": 0, "skipped": 0}
    for cell in night.cells:
        for k, v in _cell_suite(root, night, cell).items():
            totals[k] += v
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failure"]))
    root.set("errors", str(totals["error"]))
    root.set("skipped", str(totals["skipped"]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
