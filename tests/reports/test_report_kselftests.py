"""The night's reports name a kselftest as its runner does (issue 28): an id
"kselftest/<T>/<X>" (T may hold "/") is JUnit's classname "kselftest.<T>"
and name "X", and KCIDB's test path "kselftest.<T>.<X>" (KCIDB's catalog
roots kernel selftests at "kselftest"); a suite of one's own keeps pytest's
names. Read back as CI viewers read them (junitparser) and validated with
kcidb-io's schema.
"""

from __future__ import annotations

import re

import kcidb_io
import pytest
from junitparser import JUnitXml
from night_sample import IRQ, sample_night
from test_report_formats import _unescape

from orchestrator.nightly.night import TestCell
from orchestrator.reports import junit_report
from orchestrator.reports.junit_report import junit_xml
from orchestrator.reports.kcidb_report import kcidb_json
from orchestrator.reports.kcidb_report import test_path as kcidb_path

CACHESTAT = "kselftest/cachestat/test_cachestat"
BINDERFS = "kselftest/filesystems/binderfs/binderfs_test"
PING = "kselftest/drivers/net/ping.py"
SUBTEST = "kselftest/cachestat/test_cachestat/cachestat works with a [normal] file"
OWN = "my-tests/test_own.py::test_x[a-b]"
PATH = kcidb_io.schema.LATEST.json["$defs"]["path"]["pattern"]


@pytest.mark.parametrize("nodeid,junit,path", [
    (CACHESTAT, ("kselftest.cachestat", "test_cachestat"),
     "kselftest.cachestat.test_cachestat"),
    (BINDERFS, ("kselftest.filesystems.binderfs", "binderfs_test"),
     "kselftest.filesystems.binderfs.binderfs_test"),
    # A test named as a Python file stays so (no ".py" dropped, no module path).
    (PING, ("kselftest.drivers.net", "ping.py"), "kselftest.drivers.net.ping-2epy"),
    ("kselftest/mm/run_vmtests.sh", ("kselftest.mm", "run_vmtests.sh"),
     "kselftest.mm.run_vmtests-2esh"),
    # A subtest, named by its message: "[" and "::" are no pytest syntax there.
    (SUBTEST, ("kselftest.cachestat.test_cachestat", "cachestat works with a [normal] file"),
     "kselftest.cachestat.test_cachestat.cachestat-20works-20with-20a-20-5bnormal-5d-20file"),
    ("kselftest/t/a::b[1]", ("kselftest.t", "a::b[1]"), "kselftest.t.a-3a-3ab-5b1-5d"),
    # A runner's result without "selftests: T: X" (ktap.py: "kselftest/NAME").
    ("kselftest/#3", ("kselftest", "#3"), "kselftest.-233"),
    # Pytest ids, the builtin suite's and one's own (--suite), as before.
    (IRQ, ("guest_tests.test_blockdev_dontcache", "test_dontcache_write_irq_completion_evicts"),
     "guest_tests.test_blockdev_dontcache.test_dontcache_write_irq_completion_evicts"),
    (OWN, ("my-tests.test_own", "test_x[a-b]"), "my--tests.test_own.test_x.a--b"),
])
def test_a_kselftest_is_named_as_its_runner_names_it(nodeid, junit, path):
    assert junit_report._split_nodeid(nodeid) == junit
    assert kcidb_path(nodeid) == path
    assert re.fullmatch(PATH, path)
    if nodeid.startswith("kselftest/"):
        # Every part reads back: nothing of the id is lost.
        assert "/".join(_unescape(p) for p in path.split(".")) == nodeid


def _night_with_kselftests():
    """sample_night() whose base cell of the first series ran kselftests
    beside its guest tests: one passing, one regressed, one skipped."""
    n = sample_night()
    cell = n.cells[0]
    cell.tests += [TestCell(CACHESTAT, "PASS", "PASS", "passing"),
                   TestCell(BINDERFS, "PASS", "FAIL", "regressed", "not ok 1 binderfs"),
                   TestCell(SUBTEST, "PASS", "SKIP", "now skipped", "tmpfs"),
                   TestCell(PING, "PASS", "PASS", "passing")]
    return n, cell


def test_junit_lists_kselftests_by_target_and_test():
    n, _ = _night_with_kselftests()
    xml = JUnitXml.fromstring(junit_xml(n))
    suite = next(iter(xml))
    got = {(c.classname, c.name.rpartition("[")[0]): type(c.result[0]).__name__ if c.result
           else None for c in suite}
    assert got[("kselftest.cachestat", "test_cachestat")] is None
    assert got[("kselftest.filesystems.binderfs", "binderfs_test")] == "Failure"
    assert got[("kselftest.cachestat.test_cachestat",
                "cachestat works with a [normal] file")] == "Skipped"
    assert got[("kselftest.drivers.net", "ping.py")] is None
    assert (suite.tests, suite.failures, suite.skipped) == (7, 1, 1)


def test_kcidb_reports_kselftests_under_kselftest():
    n, _ = _night_with_kselftests()
    data = kcidb_json(n)
    kcidb_io.schema.LATEST.validate(data)
    by_id = {t["misc"]["nodeid"]: t for t in data["tests"]}
    assert by_id[CACHESTAT]["path"] == "kselftest.cachestat.test_cachestat"
    assert (by_id[BINDERFS]["path"], by_id[BINDERFS]["status"]) == (
        "kselftest.filesystems.binderfs.binderfs_test", "FAIL")
    assert (by_id[SUBTEST]["path"], by_id[SUBTEST]["status"]) == (
        "kselftest.cachestat.test_cachestat.cachestat-20works-20with-20a-20-5bnormal-5d-20file",
        "SKIP")
    assert by_id[PING]["path"] == "kselftest.drivers.net.ping-2epy"
