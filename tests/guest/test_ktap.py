"""The KTAP parser (orchestrator/guest/ktap.py) on the kernel's own samples
(kunit_tool's test data and kselftest_harness's expected output, 7.2.13) and
on kselftest runner output written from runner.sh's format, whole, on a
console and cut short by a dying guest.

Each check is a function that raises AssertionError. test_check_holds runs
it on the parser; test_check_catches_a_broken_parser runs it again on a
parser broken on purpose (SKIP ignored, missing tests marked PASS, no caps,
a backtracking regex, ...) and requires it to fail there, so no check passes
by asserting nothing.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.core.models import Status
from orchestrator.guest import ktap
from orchestrator.guest.ktap import Directive

DATA = Path(__file__).resolve().parent.parent / "data" / "ktap"
KUNIT = DATA / "kunit"
HARNESS = DATA / "kselftest_harness" / "harness-selftest.expected"

CACHESTAT = "kselftest/cachestat/test_cachestat"
MINCORE = "kselftest/mincore/mincore_selftest"
P, F, E, S, M = Status.PASS, Status.FAIL, Status.ERROR, Status.SKIP, Status.MISS
# The caps as the module sets them: a broken parser below changes the module's.
MAX_LINES, MAX_TESTS, MAX_DEPTH = ktap.MAX_LINES, ktap.MAX_TESTS, ktap.MAX_DEPTH
MAX_PROBLEMS, MAX_DIAG = ktap.MAX_PROBLEMS, ktap.MAX_DIAG
WIDEST = max(ktap.ID_WIDTH, ktap.DIAG_WIDTH) + len("...[truncated]")


def kunit(name: str) -> ktap.Report:
    return ktap.parse_file(KUNIT / name, root="kunit")


def sample(name: str, **kw) -> ktap.Report:
    return ktap.parse_file(DATA / name, **kw)


def statuses(report: ktap.Report) -> dict[str, Status]:
    return {t.id: t.status for t in report.tests}


def runner(*tests: tuple[str, list[str], str]) -> str:
    """run_kselftest.sh's output for programs given as (name, their own
    output lines, the runner's result line after "N "), prefixed as
    runner.sh's tap_prefix does."""
    out = ["TAP version 13", f"1..{len(tests)}"]
    for n, (name, lines, result) in enumerate(tests, 1):
        out += ["# timeout set to 45", f"# selftests: {name}"]
        out += [f"# {line}" for line in lines]
        out.append(result.replace("N ", f"{n} selftests: {name} ", 1))
    return "\n".join(out) + "\n"


# -- the status table ----------------------------------------------------------

# The module docstring's table, written out again: the parser must agree.
TABLE = {
    ("ok", ""): P, ("not ok", ""): F,
    ("ok", "SKIP"): S, ("not ok", "SKIP"): S,
    ("ok", "XFAIL"): S, ("not ok", "XFAIL"): F,
    ("ok", "XPASS"): P, ("not ok", "XPASS"): F,
    ("ok", "TIMEOUT"): P, ("not ok", "TIMEOUT"): E,
    ("ok", "ERROR"): P, ("not ok", "ERROR"): E,
    ("ok", "TODO"): P, ("not ok", "TODO"): S,
}


def check_status_table():
    lines = [f"{res} {n} t{n}" + (f" # {d} why" if d else "")
             for n, (res, d) in enumerate(TABLE, 1)]
    got = statuses(ktap.parse("KTAP version 1\n" + f"1..{len(lines)}\n" + "\n".join(lines)))
    assert got == {f"kselftest/t{n}": st for n, st in enumerate(TABLE.values(), 1)}
    assert set(ktap.STATUS) == {(r == "ok", Directive(d)) for r, d in TABLE}


def check_directive_spellings_and_messages():
    # "# error" is kselftest.h's ksft_test_result_error; "# exit=1" the runner's.
    r = ktap.parse("""TAP version 13
1..7
ok 1 a # skip lower case
ok 2 b # SKIPPED: spelt as TAP allows
not ok 3 # error mmap failed
not ok 4 c # TIMEOUT 45 seconds
ok 5 d # XFAIL known leak
ok 6 e # XPASS unknown
not ok 7 f # exit=1
""")
    got = {t.id: (t.status, t.message, t.directive) for t in r.tests}
    assert got == {
        "kselftest/a": (S, "lower case", Directive.SKIP),
        "kselftest/b": (S, "spelt as TAP allows", Directive.SKIP),
        "kselftest/mmap failed": (E, "ERROR mmap failed", Directive.ERROR),
        "kselftest/c": (E, "TIMEOUT 45 seconds", Directive.TIMEOUT),
        "kselftest/d": (S, "XFAIL known leak", Directive.XFAIL),
        "kselftest/e": (P, "XPASS unknown", Directive.XPASS),
        "kselftest/f": (F, "exit=1", Directive.NONE),
    }
    res = r.tests[2].result()
    assert (res.name, res.status, res.properties) == (
        "kselftest/mmap failed", E, {"source": "ktap", "number": "3", "directive": "ERROR"})


def check_harness_counts_match_its_totals_line():
    """kselftest_harness's own expected output ends with the program's
    counts (pass:9 fail:7 xfail:1 xpass:1 skip:1): XPASS joins the passes,
    XFAIL the skips; its stray "not ok 1 # Illegal usage ..." is one more FAIL."""
    r = ktap.parse_file(HARNESS)
    assert Counter(t.status for t in r.tests) == {P: 10, F: 8, S: 2}
    got = statuses(r)
    assert got["kselftest/global.exit_xpass"] == P
    assert got["kselftest/global.exit_xfail"] == S
    assert got["kselftest/global.exit_skip"] == S
    assert got["kselftest/#1"] == F
    assert r.by_id()["kselftest/global.standalone_fail"].message == (
        "standalone_fail: Test terminated by assertion")
    assert r.complete and r.plan == 19
    assert any("test number 1 repeated" in p for p in r.problems)


# -- kselftest runner output ---------------------------------------------------

def check_runner_nesting():
    r = sample("kselftest-pass.log")
    got = statuses(r)
    assert got[CACHESTAT] == P and got[MINCORE] == P
    subtests = [t for t in r.tests if t.parent == CACHESTAT]
    assert len(subtests) == 10     # 7.2.13's test_cachestat reports 10 for its plan of 9
    assert got[f"{CACHESTAT}/cachestat works with /proc/version"] == P
    assert got[f"{CACHESTAT}/tmpfilecachestat is on tmpfs"] == S
    assert got[f"{MINCORE}/global.check_huge_pages"] == S
    assert r.by_id()[f"{MINCORE}/global.check_huge_pages"].message == (
        "No huge pages available or CONFIG_HUGETLB_PAGE disabled.")
    assert any("10 results for a plan of 1..9" in p for p in r.problems)
    assert (r.plan, r.complete, r.died_in) == (2, True, None)
    proc = r.by_id()[f"{CACHESTAT}/cachestat works with /proc/version"]
    assert proc.diagnostics[-1] == ("Using cachestat: Cached: 1, Dirty: 0, Writeback: 0, "
                                    "Evicted: 0, Recently Evicted: 0")


def check_harness_under_the_runner():
    """The same program read alone and under the runner's "# " prefix."""
    own = HARNESS.read_text().splitlines()
    alone = ktap.parse("\n".join(own))
    nested = ktap.parse(runner(("kselftest_harness: harness-selftest", own, "not ok N # exit=1")))
    top = "kselftest/kselftest_harness/harness-selftest"
    assert statuses(nested) == {top: F, **{
        t.id.replace("kselftest/", top + "/", 1): t.status for t in alone.tests}}
    assert nested.by_id()[top].message.startswith("exit=1; failing: global.standalone_fail")


def check_failures_sample():
    r = sample("kselftest-failures.log")
    got = statuses(r)
    assert got[CACHESTAT] == F
    assert got[f"{CACHESTAT}/cachestat fails with a shmem file"] == F
    assert r.by_id()[f"{CACHESTAT}/cachestat fails with a shmem file"].message == (
        "Total number of cached and evicted pages is off.")
    # The runner stopped mincore in check_file_mmap: a hung test is ERROR,
    # the subtest it hung in too, the one after it MISS.
    assert got[MINCORE] == E
    assert r.by_id()[MINCORE].message.startswith(
        "TIMEOUT 45 seconds; failing: global.check_file_mmap")
    assert got[f"{MINCORE}/global.check_file_mmap"] == E
    assert got[f"{MINCORE}/#5"] == M
    binderfs = r.by_id()["kselftest/filesystems/binderfs/binderfs_test"]
    assert (binderfs.status, binderfs.message) == (
        S, "The Android binderfs filesystem is not available")
    assert got["kselftest/mm/map_fixed_noreplace"] == F
    bailed = [t for t in r.tests if t.parent == "kselftest/mm/map_fixed_noreplace"]
    assert [t.status for t in bailed] == [P] + [M] * 8
    assert bailed[-1].message == "not run: bailed out (Error: munmap failed!? Invalid argument)"
    assert got["kselftest/bpf/xskxceiver"] == S
    assert (r.complete, r.died_in) == (True, None)


def check_truncated_console():
    """A guest that died in mincore: finished tests keep their status, the
    test running and its running subtest are ERROR, the rest MISS."""
    r = sample("kselftest-truncated-console.log")
    got = statuses(r)
    assert got[CACHESTAT] == P
    assert got[MINCORE] == E
    assert r.by_id()[MINCORE].message == ktap.DIED
    ran = ("basic_interface", "check_anonymous_locked_pages", "check_huge_pages", "check_file_mmap")
    assert [got[f"{MINCORE}/global.{t}"] for t in ran] == [P, P, S, E]
    assert got[f"{MINCORE}/#5"] == M
    assert got["kselftest/#3"] == M and r.by_id()["kselftest/#3"].message == ktap.UNREACHED
    assert (r.plan, r.complete, r.died_in) == (3, False, MINCORE)
    hung = r.by_id()[f"{MINCORE}/global.check_file_mmap"]
    assert "Kernel panic - not syncing: Fatal exception" in hung.diagnostics


def check_truncated_with_expected_ids():
    expected = [CACHESTAT, MINCORE, "kselftest/mm/mremap_test"]
    r = sample("kselftest-truncated-console.log", expected=expected)
    got = statuses(r)
    assert {e: got[e] for e in expected} == {
        CACHESTAT: P, MINCORE: E, "kselftest/mm/mremap_test": M}
    assert "kselftest/#3" not in got
    nothing = ktap.parse("", expected=expected)
    assert statuses(nothing) == dict.fromkeys(expected, M) and not nothing.found
    assert nothing.tests[0].message == ktap.NO_KTAP


def check_what_starts_a_test():
    """"# selftests: T: X" starts X; "# timeout set to 45" before it does not."""
    died_in_b = ktap.parse(
        "TAP version 13\n1..2\n# timeout set to 45\n# selftests: a: b\n# output\n")
    assert statuses(died_in_b) == {"kselftest/a/b": E, "kselftest/#2": M}
    assert died_in_b.died_in == "kselftest/a/b"
    assert died_in_b.by_id()["kselftest/a/b"].diagnostics == ("timeout set to 45", "output")
    between = ktap.parse("TAP version 13\n1..2\n# selftests: a: b\nok 1 selftests: a: b\n"
                         "# timeout set to 45\n")
    assert statuses(between) == {"kselftest/a/b": P, "kselftest/#2": M}
    assert between.died_in is None and not between.complete


def check_console_noise():
    """The console copy of a run (CRLF, timestamped kernel lines, a KUnit
    document at boot) reads as the runner's file does."""
    plain, console = sample("kselftest-pass.log"), sample("kselftest-pass-console.log")
    assert statuses(console) == statuses(plain)
    assert any("a new KTAP document starts" in p for p in console.problems)
    # A KUnit module a test loads prints its KTAP with timestamps in the
    # middle of the runner's: diagnostics, not the runner's results.
    kunit_lines = ["[   5.100000] KTAP version 1", "[   5.100001] 1..1",
                   "[   5.100002]     # Subtest: example", "[   5.100003]     1..1",
                   "[   5.100004]     not ok 1 example_simple_test",
                   "[   5.100005] not ok 1 example"]
    text = "TAP version 13\n1..1\n# selftests: lib: kunit_loader\n" + "\n".join(kunit_lines) + (
        "\nok 1 selftests: lib: kunit_loader\n")
    r = ktap.parse(text)
    assert statuses(r) == {"kselftest/lib/kunit_loader": P}
    assert "not ok 1 example" in r.tests[0].diagnostics


# -- the kernel's own KTAP samples: kunit_tool_test.py's assertions --------------

def check_kunit_tool_expectations():
    assert set(statuses(kunit("test_is_test_passed-all_passed.log")).values()) == {P}
    assert set(statuses(kunit("test_is_test_passed-all_passed_nested.log")).values()) == {P}
    assert statuses(kunit("test_is_test_passed-all_passed_nested.log"))[
        "kunit/sysctl_test/example/example_mock_test"] == P
    ks = kunit("test_is_test_passed-kselftest.log")
    assert set(statuses(ks).values()) == {P, S} and not ks.problems
    failure = statuses(kunit("test_is_test_passed-failure.log"))
    assert [k for k, v in failure.items() if v == F] == [
        "kunit/example", "kunit/example/example_simple_test"]
    nested = kunit("test_is_test_passed-failure-nested.log")
    assert statuses(nested) == {"kunit/subtest 1": F, "kunit/subtest 1/test 1": P,
                                "kunit/subtest 2": F, "kunit/subtest 2/subsubtest 1": F}
    for empty in ("test_is_test_passed-no_tests_run_no_header.log", "test_insufficient_memory.log"):
        r = kunit(empty)
        assert (r.tests, r.found, r.problems) == ([], False, [ktap.NO_KTAP])
    no_tests = kunit("test_is_test_passed-no_tests_run_with_header.log")
    assert (no_tests.tests, no_tests.found, no_tests.problems) == ([], True, ["no tests reported"])
    missing_plan = kunit("test_is_test_passed-missing_plan.log")
    assert Counter(statuses(missing_plan).values()) == {P: 12} and missing_plan.complete
    assert not missing_plan.problems          # a missing plan is not an error
    no_plan = kunit("test_is_test_passed-no_tests_no_plan.log")
    assert statuses(no_plan) == {"kunit/suite": P, "kunit/suite/case": P}
    assert len(no_plan.problems) == 1          # kunit_tool: errors=1


def check_kunit_skips():
    skipped = kunit("test_skip_tests.log")
    t = skipped.by_id()["kunit/example/example_skip_test"]
    assert (t.status, t.message) == (S, "this test should be skipped")
    assert Counter(statuses(skipped).values()) == {P: 6, S: 1}   # the suite still passes
    all_skipped = kunit("test_skip_all_tests.log")
    assert set(statuses(all_skipped).values()) == {S}
    first = all_skipped.by_id()["kunit/string-stream-test/string_stream_test_empty_on_creation"]
    assert first.message == "all tests skipped"
    assert all_skipped.by_id()["kunit/string-stream-test"].message == ""


def check_kunit_names_and_prefixes():
    hyphen = kunit("test_strip_hyphen.log")
    assert [t.id for t in hyphen.tests if t.parent is None] == [
        "kunit/sysctl_test", "kunit/example"]
    for name in ("test_config_printk_time.log", "test_multiple_prefixes.log",
                 "test_interrupted_tap_output.log", "test_pound_sign.log",
                 "test_pound_no_prefix.log", "test_output_with_prefix_isolated_correctly.log"):
        r = kunit(name)
        assert [t.id for t in r.tests[:1]] == ["kunit/kunit-resource-test"], name
        assert Counter(statuses(r).values()) == {P: 13} and not r.problems, name
    ktap_format = kunit("test_parse_ktap_output.log")
    assert [t.id for t in ktap_format.tests] == ["kunit/suite", "kunit/suite/case_1",
                                                 "kunit/suite/case_2", "kunit/suite/case_3"]
    header = kunit("test_parse_subtest_header.log")
    assert [t.id for t in header.tests] == ["kunit/suite", "kunit/suite/test"]
    attrs = kunit("test_parse_attributes.log").by_id()
    assert "module: example" in attrs["kunit/suite"].diagnostics
    assert "test.speed: slow" in attrs["kunit/suite/test"].diagnostics
    isolated = kunit("test_output_isolated_correctly.log")
    assert [t.id for t in isolated.tests] == ["kunit/example", "kunit/example/example_simple_test",
                                              "kunit/example/example_mock_test"]


def check_kunit_panic_and_inline_cases():
    panic = kunit("test_kernel_panic_interrupt.log")
    got = statuses(panic)
    assert got["kunit/kunit-resource-test"] == P
    assert got["kunit/string-stream-test"] == E and panic.died_in == "kunit/string-stream-test"
    assert [got[f"kunit/string-stream-test/{n}"] for n in
            ("string_stream_test_empty_on_creation", "#2", "#3")] == [P, M, M]
    # kunit_tool_test.py's inline outputs.
    summarize = ktap.parse("""
        KTAP version 1
        1..2
            # Subtest: all_failed_suite
            1..2
            not ok 1 - test1
            not ok 2 - test2
        not ok 1 - all_failed_suite
            # Subtest: some_failed_suite
            1..2
            ok 1 - test1
            not ok 2 - test2
        not ok 1 - some_failed_suite
        """, root="kunit")
    assert [t.id for t in summarize.tests if t.status == F] == [
        "kunit/all_failed_suite", "kunit/all_failed_suite/test1", "kunit/all_failed_suite/test2",
        "kunit/some_failed_suite", "kunit/some_failed_suite/test2"]
    output = ktap.parse(
        "KTAP version 1\n1..1\n  Test output.\n    Indented more.\nnot ok 1 test1\n")
    assert output.tests[0].diagnostics == ("Test output.", "Indented more.")
    late = ktap.parse("TAP version 13\nok 4 test4\n1..4\n")
    assert statuses(late) == {
        "kselftest/test4": P, "kselftest/#1": M, "kselftest/#2": M, "kselftest/#3": M}


# -- untrusted output ------------------------------------------------------------

def check_caps_on_width_plans_and_depth():
    long_name = "n" * 50_000
    r = ktap.parse(f"TAP version 13\n1..1\n# {'d' * 50_000}\nnot ok 1 {long_name}\n")
    (t,) = r.tests
    assert len(t.id) <= WIDEST and all(len(d) <= WIDEST for d in t.diagnostics)
    chatty = ktap.parse("TAP version 13\n1..1\n" + "".join(f"# line {n}\n" for n in range(1000))
                        + "ok 1 a\n")
    (t,) = chatty.tests
    assert (t.diagnostics[-1], len(t.diagnostics)) == ("line 999", MAX_DIAG)
    assert t.dropped == 1000 - MAX_DIAG
    absurd = ktap.parse("TAP version 13\n1..1000000000\nok 1 a\n")
    assert statuses(absurd) == {"kselftest/a": P}
    assert any("plan 1..1000000000 refused" in p for p in absurd.problems)
    deep = ktap.parse(
        "TAP version 13\n" + "".join("  " * i + "KTAP version 1\n" for i in range(1, 40)))
    assert len(deep.tests) < MAX_DEPTH
    assert any("nested deeper" in p for p in deep.problems)
    assert len(deep.problems) <= MAX_PROBLEMS + 1


def check_line_count_cap():
    text = "TAP version 13\n1..2\nok 1 a\n" + "\n" * MAX_LINES + "ok 2 b\n"
    r = ktap.parse(text)
    assert statuses(r) == {"kselftest/a": P, "kselftest/#2": M}
    assert not r.complete and any("lines: the rest is not read" in p for p in r.problems)


def check_test_count_cap():
    text = "TAP version 13\n" + "".join(f"ok {n} t{n}\n" for n in range(1, MAX_TESTS + 20))
    r = ktap.parse(text)
    assert len(r.tests) == MAX_TESTS
    assert any("the rest are ignored" in p for p in r.problems)


def check_text_is_cleaned():
    r = ktap.parse("TAP version 13\n1..1\n# \x1b[2J\x07bell\n"
                   "not ok 1 evil\x1b]0;title\x07 # SKIP \x1b[31mred\n")
    (t,) = r.tests
    for text in (t.id, t.message, *t.diagnostics):
        assert "\x1b" not in text and "\x07" not in text, text


def check_repeats_and_order():
    twice = ktap.parse("TAP version 13\n1..1\nnot ok 1 x\nok 1 x\n")
    assert statuses(twice) == {"kselftest/x": F}     # the first report stands
    assert any("reported again" in p for p in twice.problems)
    swapped = ktap.parse("TAP version 13\n1..2\nok 2 b\nok 1 a\n")
    assert statuses(swapped) == {"kselftest/b": P, "kselftest/a": P}
    assert any("test number 2 where 1 was expected" in p for p in swapped.problems)


HOSTILE = [
    "ok " + "1" * 5000 + "!",
    "ok 1" + "1" * 40 + "!",
    "[" + " " * 5000 + "1." + "2" * 5000,
    "# " * 2000 + "x",
    "#\t" * 2000 + "ok 1 x",
    "1.." + "9" * 5000 + " #" * 1000,
    "#  RUN " + " " * 3000 + "x" * 3000,
    " # Subtest:" * 400,
]


def check_regexes_are_linear():
    """Lines built to make a backtracking expression take exponential time."""
    def too_slow(*_):
        raise TimeoutError
    old = signal.signal(signal.SIGALRM, too_slow)
    old_timer = signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        ktap.parse("TAP version 13\n1..1\n" + "\n".join(HOSTILE * 20))
    except TimeoutError:
        raise AssertionError("parsing hostile lines took more than 2 s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        signal.setitimer(signal.ITIMER_REAL, *old_timer)   # pytest-timeout's, if any


def check_files_are_read_as_untrusted():
    with tempfile.TemporaryDirectory() as tmp:
        real = Path(tmp) / "real.log"
        real.write_text("TAP version 13\n1..1\nok 1 a\n")
        link = Path(tmp) / "link.log"
        link.symlink_to(real)
        fifo = Path(tmp) / "fifo.log"
        os.mkfifo(fifo)
        assert statuses(ktap.parse_file(real)) == {"kselftest/a": P}
        # The FIFO last: a reader that follows links would also block on it.
        for bad, why in ((link, "symbolic links"), (Path(tmp) / "gone", "cannot be opened"),
                         (fifo, "not a regular file")):
            r = ktap.parse_file(bad, expected=["kselftest/a"])
            assert not r.found and statuses(r) == {"kselftest/a": M}, bad
            assert why in r.problems[0], r.problems


CHECKS = {f.__name__.removeprefix("check_"): f for f in (
    check_status_table, check_directive_spellings_and_messages,
    check_harness_counts_match_its_totals_line, check_runner_nesting,
    check_harness_under_the_runner, check_failures_sample, check_truncated_console,
    check_truncated_with_expected_ids, check_what_starts_a_test, check_console_noise,
    check_kunit_tool_expectations, check_kunit_skips, check_kunit_names_and_prefixes,
    check_kunit_panic_and_inline_cases, check_caps_on_width_plans_and_depth, check_line_count_cap,
    check_test_count_cap, check_text_is_cleaned, check_repeats_and_order, check_regexes_are_linear,
    check_files_are_read_as_untrusted)}


@pytest.mark.parametrize("check", CHECKS)
def test_check_holds(check):
    CHECKS[check]()


# -- parsers broken on purpose ------------------------------------------------------

def _status(ok: bool, directive: Directive, status: Status):
    return lambda mp: mp.setitem(ktap.STATUS, (ok, directive), status)


def _wrap(name: str, wrapper):
    def apply(mp):
        mp.setattr(ktap._Parser, name, wrapper(getattr(ktap._Parser, name)))
    return apply


def _missing_as_pass(append):
    def broken(self, f, node):
        if node.status is Status.MISS:
            node.status = Status.PASS
        append(self, f, node)
    return broken


def _no_reason(directive):
    return lambda comment: (directive(comment)[0], "")


def _unstamped(strip):
    return lambda line: (strip(line)[0], False)


def _without_expected(init):
    return lambda self, root, expected, problem="": init(self, root, None, problem)


def _drop_out_of_order(accept):
    return lambda self, f, number, name: number == f.expect and accept(self, f, number, name)


MUTANTS = {
    "skip ignored": lambda mp: (_status(True, Directive.SKIP, P)(mp),
                                _status(False, Directive.SKIP, F)(mp)),
    "skip reason dropped": lambda mp: mp.setattr(ktap, "_directive", _no_reason(ktap._directive)),
    "xfail as pass": _status(True, Directive.XFAIL, P),
    "xpass as fail": _status(True, Directive.XPASS, F),
    "timeout as fail": _status(False, Directive.TIMEOUT, F),
    "missing tests as pass": _wrap("_append", _missing_as_pass),
    "no test is running": lambda mp: mp.setattr(
        ktap._Parser, "_pending_node", lambda self, f, why: None),
    "runner header ignored": lambda mp: mp.setattr(
        ktap._Parser, "_announce", lambda self, level, name: False),
    "expected ids ignored": _wrap("__init__", _without_expected),
    "runner's # nesting ignored": lambda mp: mp.setattr(ktap, "_PREFIX", re.compile(r"[ \t]*")),
    "timestamps kept": lambda mp: mp.setattr(ktap, "_strip_console", lambda line: (line, False)),
    "kernel lines not told apart": lambda mp: mp.setattr(
        ktap, "_strip_console", _unstamped(ktap._strip_console)),
    "no width caps": lambda mp: [mp.setattr(ktap, cap, 10**9)
                                 for cap in ("NAME_WIDTH", "ID_WIDTH", "DIAG_WIDTH")],
    "no diagnostics cap": lambda mp: mp.setattr(ktap, "MAX_DIAG", None),
    "absurd plan accepted": lambda mp: mp.setattr(ktap, "MAX_PLAN", 10**12),
    "no depth cap": lambda mp: mp.setattr(ktap, "MAX_DEPTH", 10**6),
    "no line cap": lambda mp: mp.setattr(ktap, "MAX_LINES", 10**12),
    "no test cap": lambda mp: mp.setattr(ktap, "MAX_TESTS", 10**12),
    "text not cleaned": lambda mp: mp.setattr(ktap, "clean", lambda text, limit=0: text or ""),
    "repeats kept": lambda mp: mp.setattr(
        ktap._Parser, "_accept", lambda self, f, number, name: True),
    "out-of-order dropped": _wrap("_accept", _drop_out_of_order),
    "backtracking regex": lambda mp: mp.setattr(
        ktap, "_RESULT", re.compile(r"(ok|not ok)[ \t]+((?:\d+)+)(?![^ \t])")),
    "links followed": lambda mp: mp.setattr(
        ktap.untrusted, "read_head", lambda path, limit: Path(path).read_bytes()[:limit]),
}

CATCHES = [
    ("status_table", "skip ignored"), ("status_table", "xfail as pass"),
    ("status_table", "xpass as fail"), ("status_table", "timeout as fail"),
    ("directive_spellings_and_messages", "skip reason dropped"),
    ("harness_counts_match_its_totals_line", "xfail as pass"),
    ("runner_nesting", "runner's # nesting ignored"), ("runner_nesting", "skip ignored"),
    ("harness_under_the_runner", "runner's # nesting ignored"),
    ("failures_sample", "timeout as fail"), ("failures_sample", "missing tests as pass"),
    ("truncated_console", "missing tests as pass"), ("truncated_console", "no test is running"),
    ("truncated_console", "runner header ignored"),
    ("truncated_with_expected_ids", "expected ids ignored"),
    ("what_starts_a_test", "runner header ignored"), ("what_starts_a_test", "no test is running"),
    ("console_noise", "kernel lines not told apart"),
    ("kunit_tool_expectations", "runner's # nesting ignored"),
    ("kunit_skips", "skip ignored"), ("kunit_skips", "skip reason dropped"),
    ("kunit_names_and_prefixes", "timestamps kept"),
    ("kunit_panic_and_inline_cases", "missing tests as pass"),
    ("kunit_panic_and_inline_cases", "no test is running"),
    ("caps_on_width_plans_and_depth", "no width caps"),
    ("caps_on_width_plans_and_depth", "absurd plan accepted"),
    ("caps_on_width_plans_and_depth", "no depth cap"),
    ("caps_on_width_plans_and_depth", "no diagnostics cap"),
    ("line_count_cap", "no line cap"), ("test_count_cap", "no test cap"),
    ("text_is_cleaned", "text not cleaned"),
    ("repeats_and_order", "repeats kept"), ("repeats_and_order", "out-of-order dropped"),
    ("regexes_are_linear", "backtracking regex"),
    ("files_are_read_as_untrusted", "links followed"),
]


@pytest.mark.parametrize("check, mutant", CATCHES, ids=[f"{c}-{m}" for c, m in CATCHES])
def test_check_catches_a_broken_parser(check, mutant, monkeypatch):
    MUTANTS[mutant](monkeypatch)
    # A KeyError is a check looking up an id the broken parser did not report.
    with pytest.raises((AssertionError, KeyError)):
        CHECKS[check]()


def test_every_check_and_mutant_is_used():
    assert {c for c, _ in CATCHES} == set(CHECKS)
    assert {m for _, m in CATCHES} == set(MUTANTS)
