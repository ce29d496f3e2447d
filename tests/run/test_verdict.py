"""The verdict rules, on results written by real pytest through orch's own
guest harness command and plugin (run on the host: the same command line
the guest runs, with the console marks going to a file instead of
/dev/kmsg), then judged the way `orch test` judges them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.core import sanitize
from orchestrator.core.errors import BadInput, Exit
from orchestrator.core.models import GuestRun, Status, TestResult
from orchestrator.guest import junit, selection, splats, vm
from orchestrator.kernel import kconfig
from orchestrator.run import verdict

S = Status

CASES = '''
import os, pytest
SIDE = os.environ.get("CASE_SIDE", "baseline")

def test_steady():
    pass

def test_skips_on_patched():
    if SIDE == "patched":
        pytest.skip("null_blk configfs is not available in this kernel")

def test_fails_on_baseline_skips_on_patched():
    if SIDE == "patched":
        pytest.skip("cgroup2 memory controller missing")
    assert 0, "EOPNOTSUPP"

def test_regresses():
    assert SIDE == "baseline", "16/16 folios still cached"

def test_fixed():
    assert SIDE == "patched", "block device rejects RWF_DONTCACHE"
'''


def harness(tmp_path: Path, name: str, source: str, side: str = "baseline", *,
            extra: list[str] = (), repeat: int = 1, env: dict | None = None,
            tests: list[str] | None = None):
    """Run the guest harness command on the host over `source`; return what
    orch expected and what it read back."""
    src = tmp_path / f"test_{name}.py"
    if not src.exists():
        src.write_text(source)
    sel = tests or [str(src)]
    expected = selection.collect(sel)
    results = tmp_path / f"res-{name}-{side}"
    results.mkdir()
    console = tmp_path / f"console-{name}-{side}.log"
    console.write_text("[    0.000000] Linux version 7.2.13 (test)\n")
    cmd = vm.guest_command(results, sel, [*vm.timeout_args(20), *vm.repeat_args(repeat),
                                          *extra])
    subprocess.run(["sh", "-c", cmd], timeout=120, env={
        **os.environ, "CASE_SIDE": side, **(env or {})})
    # The guest plugin writes its marks to /dev/kmsg there; here the
    # command's ORCH_MARKS is pointed at the stand-in console.
    return expected, results, console


@pytest.fixture(autouse=True)
def marks_to_console(monkeypatch):
    real = vm.guest_command

    def command(results, tests, args):
        c = real(results, tests, args)
        return c.replace("ORCH_MARKS=/dev/kmsg",
                         f"ORCH_MARKS={results.parent}/console-{results.name[4:]}.log")
    monkeypatch.setattr(vm, "guest_command", command)


def judged(tmp_path, name, source, side, **kw) -> tuple[list[str], GuestRun, verdict.Side]:
    expected, results, console = harness(tmp_path, name, source, side, **kw)
    g = vm.outcome(results, console, expected, kw.get("repeat", 1))
    return expected, g, verdict.judge_side(expected, g, side == "patched")


def short(name: str) -> str:
    return name.split("::")[-1]


def test_transitions_on_real_junit(tmp_path):
    exp, gb, b = judged(tmp_path, "cases", CASES, "baseline")
    _, gp, p = judged(tmp_path, "cases", CASES, "patched")
    assert gb.harness_rc == 1 and gp.harness_rc == 1 and gb.finished
    assert [short(n) for n in exp] == ["test_steady", "test_skips_on_patched",
                                      "test_fails_on_baseline_skips_on_patched",
                                      "test_regresses", "test_fixed"]
    v = verdict.judge_config("base", exp, b, p, [], [])
    got = {short(c.name): (c.baseline.value, c.patched.value, c.transition)
           for c in v.comparisons}
    assert got == {
        "test_steady": ("PASS", "PASS", "passing"),
        "test_skips_on_patched": ("PASS", "SKIP", "now skipped"),
        "test_fails_on_baseline_skips_on_patched": ("FAIL", "SKIP", "now skipped"),
        "test_regresses": ("PASS", "FAIL", "regressed"),
        "test_fixed": ("FAIL", "PASS", "fixed")}
    assert v.verdict == "FAIL"
    # A skip is a failure with its reason, never "fixed" and never silent.
    skip = next(c for c in v.comparisons if short(c.name) == "test_skips_on_patched")
    assert skip.reason == "null_blk configfs is not available in this kernel"
    assert any("test_skips_on_patched now skipped (null_blk configfs" in r for r in v.regressions)
    assert any("test_fails_on_baseline_skips_on_patched now skipped" in r for r in v.regressions)
    # Node ids (as pytest collected them on the host) are the one test id;
    # their path part depends on where the file lies relative to the rootdir.
    assert [c.name for c in v.comparisons] == exp
    assert all(c.name.split("::")[0].endswith("test_cases.py") for c in v.comparisons)


def test_every_expected_test_skipped_on_patched_is_error(tmp_path):
    src = "import pytest, os\ndef test_a():\n    if os.environ['CASE_SIDE'] == 'patched':\n" \
          "        pytest.skip('no cachestat')\n"
    exp, _, b = judged(tmp_path, "allskip", src, "baseline")
    _, _, p = judged(tmp_path, "allskip", src, "patched")
    assert b.status == "PASS"
    assert (p.status, p.reason) == ("ERROR", "every expected test skipped")
    v = verdict.judge_config("base", exp, b, p, [], [])
    assert v.verdict == "FAIL" and "patched guest: every expected test skipped" in v.failures[0]
    # A baseline may skip what it lacks; it is not an error there.
    skip_all = "import pytest\ndef test_a():\n    pytest.skip('flag rejected')\n"
    _, _, b2 = judged(tmp_path, "skipbase", skip_all, "baseline")
    assert b2.status == "PASS" and b2.tests[exp[0].replace("allskip", "skipbase")].status == S.SKIP


@pytest.mark.parametrize("rc,source,extra", [
    (2, "def test_a():\n    raise KeyboardInterrupt\ndef test_b():\n    pass\n", []),
    (4, "def test_a():\n    pass\n", ["--no-such-option"]),
    (5, "def test_a():\n    pass\n", ["-k", "no_such_name"]),
])
def test_harness_exit_other_than_0_or_1_is_error(tmp_path, rc, source, extra):
    exp, g, side = judged(tmp_path, f"rc{rc}", source, "patched", extra=extra)
    assert g.harness_rc == rc
    assert side.status == "ERROR"
    assert side.reason.startswith(f"the guest's pytest exited {rc}") or \
        side.reason.startswith("guest test harness crashed")
    # Whatever it did not report is MISS, never PASS.
    assert all(t.status != S.PASS or rc == 2 for t in side.tests.values())


def test_kernel_that_dies_mid_suite_keeps_finished_tests(tmp_path):
    """No JUnit file and no exit status (the kernel died): the console marks
    keep the finished tests' outcomes and name the test it died in."""
    src = ("import os, pytest\n"
           "def test_1(): pass\n"
           "def test_2(): pytest.skip('no scratch disk')\n"
           "def test_3(): assert 0, 'cached'\n"
           "def test_4(): os._exit(0)\n"
           "def test_5(): pass\n")
    exp, results, console = harness(tmp_path, "dies", src, "patched")
    (results / "harness-rc").unlink()   # a dead kernel writes nothing more
    assert not (results / "junit.xml").exists()
    g = vm.outcome(results, console, exp)
    side = verdict.judge_side(exp, g, True)
    got = {short(n): (t.status.value, t.message) for n, t in side.tests.items()}
    assert got == {"test_1": ("PASS", ""), "test_2": ("SKIP", "no scratch disk"),
                   "test_3": ("FAIL", "AssertionError: cached"),
                   "test_4": ("ERROR", "the guest died or hung during this test"),
                   "test_5": ("MISS", verdict.NOT_RUN)}
    assert short(exp[3]) == "test_4"
    assert side.status == "ERROR" and f"(during {exp[3]})" in side.reason
    # Against a baseline that passed everything: the unreached test is
    # "not run (guest crashed)", not "regressed".
    base = verdict.Side("PASS", "", {n: TestResult(n, S.PASS) for n in exp})
    v = verdict.judge_config("base", exp, base, side, [], [])
    tr = {short(c.name): c.transition for c in v.comparisons}
    assert tr["test_5"] == verdict.NOT_RUN and tr["test_4"] == "regressed"
    assert v.verdict == "FAIL"


def test_repeat_reports_mixed_outcomes_as_flaky(tmp_path):
    src = ("import os\n"
           "def test_flips(tmp_path_factory):\n"
           "    f = os.path.join(os.environ['FLIP_DIR'], 'n')\n"
           "    n = int(open(f).read()) if os.path.exists(f) else 0\n"
           "    open(f, 'w').write(str(n + 1))\n"
           "    assert n % 2 == 0, f'run {n} flipped'\n"
           "def test_solid(): pass\n")
    exp, g, side = judged(tmp_path, "flaky", src, "patched", repeat=3,
                          env={"FLIP_DIR": str(tmp_path)})
    assert [short(n) for n in exp] == ["test_flips", "test_solid"]
    t = side.tests[exp[0]]
    assert t.status == S.FLAKY and t.outcomes == ["PASS", "FAIL", "PASS"]
    assert t.message.startswith("1 FAIL, 2 PASS in 3 runs; AssertionError: run 1 flipped")
    assert side.tests[exp[1]].outcomes == ["PASS"] * 3 and side.tests[exp[1]].status == S.PASS
    assert side.status == "FAIL"
    base = verdict.Side("PASS", "", {n: TestResult(n, S.PASS) for n in exp})
    v = verdict.judge_config("base", exp, base, side, [], [])
    assert [c.transition for c in v.comparisons] == ["flaky", "passing"]
    assert v.verdict == "FAIL"


def test_selection_that_matches_nothing_is_bad_input(tmp_path):
    (tmp_path / "test_none.py").write_text("def helper():\n    pass\n")
    for sel in ([str(tmp_path / "test_none.py")],
                ["guest_tests/test_blockdev_dontcache.py::test_no_such_test"],
                ["guest_tests/no_such_file.py"]):
        with pytest.raises(BadInput, match="no guest test matches the selection"):
            selection.collect(sel)
    assert len(selection.collect(None)) >= 20  # the shipped suite collects on the host


def test_expected_test_not_reported_is_miss():
    exp = ["t.py::a", "t.py::b"]
    g = GuestRun(True, "tcg", 1.0, Path("/dev/null"), Path("/dev/null"),
                 [TestResult("t.py::a", S.PASS), TestResult("t.py::zzz", S.PASS)],
                 harness_rc=0, finished=True)
    side = verdict.judge_side(exp, g, True)
    assert side.tests["t.py::b"].status == S.MISS and side.status == "FAIL"
    assert set(side.tests) == set(exp)   # what it was not asked, it cannot pass


def side(status, tests, reason="", infra=False):
    return verdict.Side(status, reason, {n: TestResult(n, s) for n, s in tests.items()},
                        infra=infra)


def test_infra_on_one_config_does_not_hide_a_regression_on_another():
    exp = ["t.py::a"]
    ok = side("PASS", {"t.py::a": S.PASS})
    broken = side("ERROR", {"t.py::a": S.MISS}, "guest did not finish within 900s, killed")
    v = {"base": verdict.judge_config("base", exp, broken, ok, [], []),
         "debug": verdict.judge_config("debug", exp, ok, side("FAIL", {"t.py::a": S.FAIL}),
                                       [], [])}
    assert v["base"].verdict == "INFRA-ERROR" and v["debug"].verdict == "FAIL"
    assert verdict.run_exit(v) == (Exit.TESTS_FAILED, "FAIL")
    line = verdict.headline(v)
    assert line.index("config debug: t.py::a regressed") < line.index("config base: baseline")
    # Infrastructure alone: 5; every config passing: 0.
    assert verdict.run_exit({"base": v["base"]}) == (Exit.INFRA, "INFRA-ERROR")
    assert verdict.run_exit({"x": verdict.judge_config("x", exp, ok, ok, [], [])}) == \
        (Exit.OK, "PASS")
    # A patched boot of the wrong kernel is orch's error, not the series'.
    wrong = side("ERROR", {"t.py::a": S.MISS}, "booted kernel is not the one built", True)
    assert verdict.judge_config("x", exp, ok, wrong, [], []).verdict == "INFRA-ERROR"


def test_headline_is_short_and_says_the_panic_first():
    exp = [f"guest_tests/test_x.py::test_{i}" for i in range(60)]
    b = side("PASS", {n: S.PASS for n in exp})
    p = side("ERROR", {n: S.MISS for n in exp}, "kernel panicked: x")
    p.tests = {n: TestResult(n, S.FAIL if i < 30 else S.MISS,
                             "" if i < 30 else verdict.NOT_RUN) for i, n in enumerate(exp)}
    p.died_in = exp[30]
    panic = splats.scan("[ 1.0] Kernel panic - not syncing: dontcache: batch corrupted\n")
    v = {"base": verdict.judge_config("base", exp, b, p, [], panic)}
    line = verdict.headline(v)
    assert len(line) <= verdict.HEADLINE
    assert line.startswith("config base: patched kernel panic: Kernel panic - not syncing: "
                           "dontcache: batch corrupted (during guest_tests/test_x.py::test_30)")
    assert "test_0 regressed" in line and line.endswith("more")
    assert len(v["base"].regressions) == 31 and len(v["base"].failures) == 31


def test_marks_are_not_splats_and_pytest_output_stays_off_the_console(tmp_path):
    src = ("import pytest\n"
           "def test_a():\n"
           "    print('WARNING: CPU: 0 PID: 1 at mm/filemap.c:1 fake+0x0/0x10')\n"
           "def test_b():\n"
           "    pytest.skip('WARNING: a reason that quotes a splat')\n")
    exp, results, console = harness(tmp_path, "echo", src, "patched")
    text = console.read_text()
    assert "orch-test: end SKIP" in text and "WARNING: CPU" not in text
    assert "WARNING: CPU: 0" in (results / "harness.log").read_text()
    assert splats.scan(text) == []
    # The same line from the kernel is a splat.
    assert splats.scan("[ 2.0] WARNING: CPU: 0 PID: 1 at mm/filemap.c:1 fake+0x0/0x10\n")


def test_junit_parse(tmp_path):
    f = tmp_path / "junit.xml"
    f.write_text(JUNIT.replace("\x1b", ""))  # XML 1.0 cannot carry ESC at all
    res = {t.name: t for t in junit.parse(f)}
    assert res["test_blockdev_dontcache::test_ok"].status == S.PASS
    assert res["test_blockdev_dontcache::test_ok"].properties == {"device": "null_blk /dev/nullb0"}
    assert res["test_blockdev_dontcache::test_bad"].status == S.FAIL
    assert res["x.test_s::test_skip"].status == S.SKIP
    assert res["x.test_s::test_skip"].message == "no cachestat"
    assert res["x.test_e::test_err"].status == S.ERROR


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="test_blockdev_dontcache" name="test_ok" time="0.5">
<properties><property name="device" value="null_blk /dev/nullb0"/></properties></testcase>
<testcase classname="test_blockdev_dontcache" name="test_bad" time="1"><failure message="Failed: \x1b[31mred\x1b[0m">x</failure></testcase>
<testcase classname="x.test_s" name="test_skip"><skipped message="no cachestat"/></testcase>
<testcase classname="x.test_e" name="test_err"><error message="fixture broke"/></testcase>
</testsuite></testsuites>"""


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
    f.unlink()
    f.symlink_to("/dev/zero")          # read to the end, this never ends
    with pytest.raises(junit.JUnitError, match="symbolic link"):
        junit.parse(f)
    f.unlink()
    os.mkfifo(f)                        # opened for reading, this blocks
    with pytest.raises(junit.JUnitError, match="not a regular file"):
        junit.parse(f)


def test_clean_strips_control_characters():
    assert sanitize.clean("a\x1b[2Jb\x07c\nd") == "a?[2Jb?c\nd"
    assert sanitize.clean("x" * 5000).endswith("...[truncated]")


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


def test_a_side_carries_its_splats_and_a_config_compares_them():
    """Judging is pure: one side alone keeps what its console showed (bisect
    --splat compares it with the parent's), and a config compares baseline
    and patched splats without being handed them again."""
    exp = ["t.py::a"]
    g = GuestRun(True, "tcg", 1.0, Path("/dev/null"), Path("/dev/null"),
                 [TestResult("t.py::a", S.PASS)], harness_rc=0, finished=True)
    old = splats.Splat("warning", "WARNING: at mm/old.c:1 old_fn")
    new = splats.Splat("bug", "BUG: unable to handle page fault at mm/filemap.c")
    b = verdict.judge_side(exp, g, False, [old])
    p = verdict.judge_side(exp, g, True, [old, new])
    # A splat does not change one side's own status: tests decide that.
    assert (b.status, p.status) == ("PASS", "PASS") and p.splats == [old, new]
    v = verdict.judge_config("base", exp, b, p)
    assert v.verdict == "FAIL" and v.new_splats == [new] and v.preexisting_splats == [old]
    assert verdict.judge_config("base", exp, p, p).verdict == "PASS"


# -- targets: a still-failing test fails the run only when it is a target ----

STILL = '''
import os
SIDE = os.environ.get("CASE_SIDE", "baseline")

def test_fails_on_both():
    assert 0, "EOPNOTSUPP"

def test_target_fails_on_both():
    assert 0, "16/16 folios still cached"

def test_fixed():
    assert SIDE == "patched", "block device rejects RWF_DONTCACHE"
'''


def test_a_still_failing_test_fails_the_run_only_as_a_target(tmp_path):
    exp, _, b = judged(tmp_path, "still", STILL, "baseline")
    _, _, p = judged(tmp_path, "still", STILL, "patched")
    both, target, fixed = exp
    # No targets (--expect-fixed none, or nothing the series touches): two
    # known failures, listed, and the config passes.
    v = verdict.judge_config("base", exp, b, p, targets=set())
    assert v.verdict == "PASS" and v.failures == [] and v.regressions == []
    assert v.known == [f"config base: {both} still failing",
                       f"config base: {target} still failing"]
    assert v.known_tests == [both, target]
    assert verdict.run_exit({"base": v}) == (Exit.OK, "PASS")
    assert verdict.headline({"base": v}) == ""
    # The target still failing is the series' failure; the other is known.
    v = verdict.judge_config("base", exp, b, p, targets={target, fixed})
    assert v.verdict == "FAIL" and v.failures == [f"config base: {target} still failing"]
    assert v.known_tests == [both]
    # No rule given (targets=None): every test is a target, as before.
    v = verdict.judge_config("base", exp, b, p)
    assert v.verdict == "FAIL" and len(v.failures) == 2 and v.known == []


def test_what_is_not_still_failing_is_judged_as_before_for_every_test(tmp_path):
    """Regressions, now-skipped, new splats, a flaky or missing test, one the
    baseline did not run and a patched guest that broke fail a config even
    when no test is a target."""
    exp, _, b = judged(tmp_path, "cases", CASES, "baseline")
    _, _, p = judged(tmp_path, "cases", CASES, "patched")
    v = verdict.judge_config("base", exp, b, p, targets=set())
    assert v.verdict == "FAIL" and len(v.regressions) == 3 and v.known == []

    def config(base: Status, patched: Status, **kw) -> verdict.ConfigVerdict:
        return verdict.judge_config("base", ["t.py::a"], side("FAIL", {"t.py::a": base}),
                                    side("FAIL", {"t.py::a": patched}), targets=set(), **kw)

    assert config(S.FAIL, S.FAIL).verdict == "PASS"
    assert config(S.ERROR, S.FAIL).verdict == "PASS"
    for base, patched in ((S.SKIP, S.FAIL), (S.MISS, S.FAIL), (S.FLAKY, S.FAIL),
                          (S.FAIL, S.FLAKY), (S.FAIL, S.MISS), (S.PASS, S.FAIL)):
        v = config(base, patched)
        assert v.verdict == "FAIL" and v.known == [], (base, patched, v)
    warn = splats.Splat("warning", "WARNING: at mm/filemap.c:1 folio_end_dropbehind")
    v = config(S.FAIL, S.FAIL, b_splats=[], p_splats=[warn])
    assert v.verdict == "FAIL" and v.known_tests == ["t.py::a"] and len(v.regressions) == 1
    broken = side("ERROR", {"t.py::a": S.FAIL}, "the guest's pytest exited 3")
    v = verdict.judge_config("base", ["t.py::a"], side("FAIL", {"t.py::a": S.FAIL}), broken,
                             targets=set())
    assert v.verdict == "FAIL" and v.failures[0].endswith("patched guest: the guest's "
                                                          "pytest exited 3")
