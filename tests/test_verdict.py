"""Baseline-vs-patched transitions and the defensive JUnit reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import junit, kconfig, verdict
from orchestrator.models import GuestRun, Status, TestResult

S = Status


def run(*tests, ok=True):
    return GuestRun(ok, "tcg", 1.0, Path("/dev/null"), None,
                    [TestResult(n, s) for n, s in tests], "" if ok else "no results")


def test_transitions():
    b = run(("a", S.PASS), ("b", S.FAIL), ("c", S.PASS), ("d", S.FAIL), ("e", S.PASS))
    p = run(("a", S.PASS), ("b", S.PASS), ("c", S.FAIL), ("d", S.ERROR), ("f", S.PASS))
    got = {c.name: (c.baseline, c.patched, c.transition) for c in verdict.compare(b, p)}
    assert got == {"a": (S.PASS, S.PASS, "passing"), "b": (S.FAIL, S.PASS, "fixed"),
                   "c": (S.PASS, S.FAIL, "regressed"), "d": (S.FAIL, S.ERROR, "still failing"),
                   "e": (S.PASS, S.MISS, "regressed"), "f": (S.MISS, S.PASS, "passing")}
    assert [c.name for c in verdict.patched_failures(verdict.compare(b, p))] == ["c", "d", "e"]


def test_side_that_never_reported_is_error():
    b = run(("a", S.PASS))
    p = run(ok=False)
    (c,) = verdict.compare(b, p)
    assert (c.patched, c.transition) == (S.ERROR, "regressed")


def test_skip_is_not_a_pass():
    (c,) = verdict.compare(run(("a", S.FAIL)), run(("a", S.SKIP)))
    assert c.transition == "skipped" and c.patched == S.SKIP


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="test_blockdev_dontcache" name="test_ok" time="0.5">
<properties><property name="device" value="null_blk /dev/nullb0"/></properties></testcase>
<testcase classname="test_blockdev_dontcache" name="test_bad" time="1"><failure message="Failed: \x1b[31mred\x1b[0m">x</failure></testcase>
<testcase classname="x.test_s" name="test_skip"><skipped message="no cachestat"/></testcase>
<testcase classname="x.test_e" name="test_err"><error message="fixture broke"/></testcase>
</testsuite></testsuites>"""


def test_junit_parse(tmp_path):
    f = tmp_path / "junit.xml"
    f.write_text(JUNIT.replace("\x1b", ""))  # XML 1.0 cannot carry ESC at all
    res = {t.name: t for t in junit.parse(f)}
    assert res["test_blockdev_dontcache::test_ok"].status == S.PASS
    assert res["test_blockdev_dontcache::test_ok"].properties == {"device": "null_blk /dev/nullb0"}
    assert res["test_blockdev_dontcache::test_bad"].status == S.FAIL
    assert res["test_s::test_skip"].status == S.SKIP
    assert res["test_e::test_err"].status == S.ERROR


def test_junit_refuses_bombs_and_junk(tmp_path):
    f = tmp_path / "junit.xml"
    f.write_text('<!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite><testcase name="&a;"/></testsuite>')
    with pytest.raises(junit.JUnitError, match="DTD"):
        junit.parse(f)
    f.write_text("<testsuite><testcase")
    with pytest.raises(junit.JUnitError, match="not valid XML"):
        junit.parse(f)
    f.write_bytes(b" " * (junit.MAX_BYTES + 1))
    with pytest.raises(junit.JUnitError, match="larger"):
        junit.parse(f)


def test_clean_strips_control_characters():
    assert junit.clean("a\x1b[2Jb\x07c\nd") == "a?[2Jb?c\nd"
    assert junit.clean("x" * 5000).endswith("...[truncated]")


def test_kconfig_dropped_options():
    wanted = kconfig.parse("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=64\n")
    final = kconfig.parse("CONFIG_A=y\nCONFIG_C=y\nCONFIG_D=64\n")
    assert kconfig.dropped(wanted, final) == ["CONFIG_B=y (got n)", "CONFIG_C=n (got y)"]


def test_kconfig_base_is_loadable_and_matrix_names_exist():
    for name in kconfig.default_matrix():
        kc = kconfig.load(name)
        assert kc.start == "tinyconfig"
        assert kc.wanted["CONFIG_CACHESTAT_SYSCALL"] == "y"
        assert kc.wanted["CONFIG_BLK_DEV_NULL_BLK"] == "y"
