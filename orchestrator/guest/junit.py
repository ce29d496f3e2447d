"""Read the JUnit XML the guest wrote: untrusted input, parsed defensively."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from orchestrator.core import figures
from orchestrator.core.models import Status, TestResult
from orchestrator.core.sanitize import clean
from orchestrator.core.untrusted import UntrustedError, read_capped

MAX_BYTES = 8 << 20
# Distinct property names kept per test case: a guest's million would fill
# run.json, night.json and the history's rows.
MAX_PROPERTIES = 512
DROPPED = "properties_dropped"


class JUnitError(Exception):
    pass


def parse(path: Path) -> list[TestResult]:
    """Each <testcase> as a TestResult named "classname::name", which is
    what selection.junit_key() makes of a pytest node id."""
    try:
        data = read_capped(path, MAX_BYTES)
    except UntrustedError as e:
        raise JUnitError(str(e))
    # Entity expansion is the classic XML bomb: pytest never writes a DTD.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise JUnitError(f"{path.name} has a DTD or entities")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise JUnitError(f"{path.name} is not valid XML: {e}")
    results = []
    for case in root.iter("testcase"):
        classname = case.get("classname", "")
        name = case.get("name", "")
        full = clean(f"{classname}::{name}" if classname else name, 300)
        status, message = Status.PASS, ""
        for tag, st in (("failure", Status.FAIL), ("error", Status.ERROR),
                        ("skipped", Status.SKIP)):
            el = case.find(tag)
            if el is not None:
                status = st
                message = el.get("message") or (el.text or "")
                break
        props = _properties(case)
        try:
            seconds = float(case.get("time", "0"))
        except ValueError:
            seconds = 0.0
        results.append(TestResult(full, status, clean(message), seconds, props))
    return results


def _properties(case: ET.Element) -> dict[str, str]:
    """The test case's properties (the last value of a name repeated), at
    most MAX_PROPERTIES names, the figures among them screened (figures.screen)."""
    props: dict[str, str] = {}
    dropped = 0
    for p in case.iter("property"):
        name = clean(p.get("name"), 100)
        if name in props or len(props) < MAX_PROPERTIES:
            props[name] = clean(p.get("value"), 500)
        else:
            dropped += 1
    if dropped:
        props[DROPPED] = f"{dropped} more left out (at most {MAX_PROPERTIES} names kept)"
    return figures.screen(props)
