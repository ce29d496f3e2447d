"""--suite DIR (issue 28): a pytest suite of one's own, written like
guest_tests/, run beside (or instead of) the builtin one, with the same
plugin and the same results.

  - a suite's ids start with its directory's name (`smoke/test_x.py::t`),
    the builtin's stay `guest_tests/...` exactly, so kept results and the
    nightly's history stay valid; --guest-test NAME/... selects in it;
  - a directory that is not one, two suites of one name, the names orch
    keeps (guest_tests, kselftest), orch's own files: bad input, one line;
  - each suite is its own pytest session in the guest (its own JUnit file
    and exit status), all of them read back and merged into one report;
  - the results key holds each suite's files under its name; without a
    suite every key, id and guest command is what it was;
  - a suite's own about.toml says what its tests are about.

The suite used is guest_selftest/smoke (copied, so that a test may change
it), and a second one written here. The guest's
command runs for real on the host, in the guest's view (vm.guest_view), as
the stand-in guest's harness mode does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import REPO, TESTS_DIR
from test_selection_flags import IDS, small_data_root

from orchestrator.core import proc, sandbox
from orchestrator.core.errors import BadInput
from orchestrator.core.models import Status
from orchestrator.guest import about, harvest, result_cache, selection, vm

SMOKE = REPO / "guest_selftest" / "smoke"
SMOKE_IDS = ["smoke/test_skips.py::test_needs_a_device_the_guest_lacks",
             "smoke/test_smoke.py::test_page_size_is_a_power_of_two",
             "smoke/test_smoke.py::test_proc_reports_the_running_kernel"]
OTHER_TEST = "def test_other():\n    pass\n\n\ndef test_other_fails():\n    assert 1 == 2\n"
OTHER_IDS = ["other/test_other.py::test_other", "other/test_other.py::test_other_fails"]


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A data root of its own (test_selection_flags' small one: IDS)."""
    root = small_data_root(tmp_path / "data")
    monkeypatch.setenv("ORCH_DATA", str(root))
    return root


@pytest.fixture
def smoke(tmp_path) -> Path:
    d = tmp_path / "mine" / "smoke"
    shutil.copytree(SMOKE, d)
    return d


@pytest.fixture
def other(tmp_path) -> Path:
    d = tmp_path / "elsewhere" / "other"
    d.mkdir(parents=True)
    (d / "test_other.py").write_text(OTHER_TEST)
    return d


# 1. ids ----------------------------------------------------------------------------

def test_a_suites_ids_start_with_its_name_and_the_builtins_are_unchanged(data, smoke):
    s = selection.suites([smoke])
    assert s == [selection.Suite("smoke", smoke.resolve())]
    # --suite alone: that suite, not the builtin.
    assert selection.collect(None, suites=s) == SMOKE_IDS
    # The builtin's ids beside it are what they always were.
    assert selection.collect(None, suites=s, builtin=True) == IDS + SMOKE_IDS
    assert selection.collect(["guest_tests/test_b.py"], suites=s) == [IDS[2]] + SMOKE_IDS
    # Without a suite nothing changed.
    assert selection.collect(None) == selection.collect(None, suites=()) == IDS
    assert selection.collect(None, builtin=False) == []   # --kselftest alone: no pytest
    # A boot's guest runs the sessions whose ids the host collected.
    assert selection.expects_builtin(IDS + SMOKE_IDS, s)
    assert not selection.expects_builtin(SMOKE_IDS + ["kselftest/mini/test_mini"], s)


def test_guest_test_selects_in_the_suite_it_names(data, smoke):
    s = selection.suites([smoke])
    one = "smoke/test_smoke.py::test_page_size_is_a_power_of_two"
    assert selection.collect([one], suites=s) == [one]
    # By its path too (inside the suite): the same id, never a builtin one.
    assert selection.collect([str(smoke / "test_smoke.py")], suites=s) == SMOKE_IDS[1:]
    # Naming a test of the suite leaves the builtin out, and the rest of the suite.
    assert selection.collect(["smoke/test_skips.py", "guest_tests/test_a.py::test_beta"],
                             suites=s) == [IDS[1], SMOKE_IDS[0]]
    assert selection.collect(None, "proc", suites=s) == SMOKE_IDS[2:]
    for bad in ("smoke/test_nosuch.py", "smoke/../smoke2/test_x.py"):
        with pytest.raises(BadInput, match=r"no guest test matches the selection: smoke/") as e:
            selection.collect([bad], suites=s)
        assert "\n" not in str(e.value)


def test_a_suite_whose_collection_fails_is_bad_input_with_pytests_words(data, other):
    (other / "test_broken.py").write_text("import orch_no_such_module_h28\n")
    with pytest.raises(BadInput, match=r"--suite .*/other: pytest could not collect it .*"
                       "orch_no_such_module_h28"):
        selection.collect(None, suites=selection.suites([other]))
    (other / "test_broken.py").unlink()
    (other / "test_other.py").write_text("x = 1\n")
    with pytest.raises(BadInput, match=r"--suite .*/other: pytest collects no test in it"):
        selection.collect(None, suites=selection.suites([other]))


# 2. refused -------------------------------------------------------------------------

def _refused(given, words: str) -> None:
    with pytest.raises(BadInput) as e:
        selection.suites(given)
    line = str(e.value)
    assert "\n" not in line and words in line, line


def test_what_cannot_be_a_suite_is_refused_in_one_line(data, smoke, tmp_path):
    _refused([tmp_path / "nosuch"], "nosuch: no such directory")
    (tmp_path / "file").write_text("")
    _refused([tmp_path / "file"], "file: not a directory")
    twin = tmp_path / "twin" / "smoke"
    shutil.copytree(SMOKE, twin)
    _refused([smoke, twin], f"another suite is named smoke ({smoke.resolve()})")
    _refused([smoke, smoke], "given twice")
    for name in ("kselftest", "guest_tests"):
        (tmp_path / name).mkdir()
        _refused([tmp_path / name], f"the name {name!r} is orch's own")
    _refused([data / "guest_tests"], "the name 'guest_tests' is orch's own")
    # orch's own files: its tests, the data root itself or above it.
    for own in (data / "tests", data, data.parent):
        _refused([own], "orch's own files are not a guest suite")
    (data / "guest_tests" / "sub").mkdir()
    _refused([data / "guest_tests" / "sub"], "lies inside the builtin suite")
    _refused([smoke.parent, smoke], "lies inside the suite")
    (tmp_path / "my suite").mkdir()
    _refused([tmp_path / "my suite"], "letters, digits and _ . + - only")


def test_in_a_checkout_orchs_tests_are_no_suite_and_the_smoke_suite_is():
    """The data root is the repository: tests/ and what is under it are
    orch's own; guest_selftest/smoke, beside guest_tests/, is a suite."""
    for own in (TESTS_DIR, TESTS_DIR / "guest", REPO):
        _refused([own], "orch's own files are not a guest suite")
    assert selection.suites([SMOKE]) == [selection.Suite("smoke", SMOKE)]
    assert selection.collect(None, suites=[SMOKE]) == SMOKE_IDS


def test_a_directory_too_big_to_be_a_suite_is_refused(data, tmp_path, monkeypatch):
    big = tmp_path / "big"
    big.mkdir()
    for i in range(5):
        (big / f"f{i}").write_text("x")
    monkeypatch.setattr(selection, "MAX_SUITE_FILES", 4)
    _refused([big], "too big to be a test suite")


def test_a_builtin_id_that_reads_as_a_suites_is_refused(data, tmp_path):
    """A test file outside the data root gets an id relative to the common
    parent; one that starts with a suite's name would be taken for its."""
    outside = tmp_path / "lone" / "test_lone.py"
    outside.parent.mkdir()
    outside.write_text("def test_lone():\n    pass\n")
    # Beside the data root: its id is lone/test_lone.py::test_lone.
    assert selection.collect([str(outside)]) == ["lone/test_lone.py::test_lone"]
    suite = tmp_path / "x" / "lone"
    suite.mkdir(parents=True)
    (suite / "test_s.py").write_text("def test_s():\n    pass\n")
    with pytest.raises(BadInput, match="lone/test_lone.py::test_lone starts with the name "
                       "of a suite"):
        selection.collect([str(outside)], suites=selection.suites([suite]))


# 3. the guest's command and view --------------------------------------------------

OLD_COMMAND = (  # vm.guest_command before suites existed
    "cat /proc/version > {res}/proc-version; cd {root} && PYTHONDONTWRITEBYTECODE=1 "
    "ORCH_RESULTS={res} ORCH_MARKS=/dev/kmsg {py} -m pytest -rA --junitxml={res}/junit.xml "
    "-c /dev/null --rootdir {rootdir} --confcutdir {root}/guest_tests -o junit_family=xunit1 "
    "-p no:cacheprovider -p orchestrator.guest.pytest_plugin{k} --timeout=3 {targets} "
    "> {res}/harness.log 2>&1; echo $? > {res}/harness-rc")


@pytest.mark.parametrize("tests, keyword", [(None, None), (["guest_tests/test_a.py"], "beta")])
def test_without_a_suite_the_guest_command_is_what_it_was(data, tmp_path, tests, keyword):
    import sys
    res = tmp_path / "res"
    want = OLD_COMMAND.format(res=res, root=data, rootdir=data, py=sys.executable,
                              k=f" -k {keyword}" if keyword else "",
                              targets=" ".join(tests or ["guest_tests"]))
    assert vm.guest_command(res, tests, ["--timeout=3"], keyword) == want
    assert vm.guest_command(res, tests, ["--timeout=3"], keyword, suites=()) == want


def test_the_guest_runs_one_session_per_suite_into_one_report(data, smoke, other, tmp_path):
    """The builtin suite and two of one's own in one boot: the guest's own
    command (run here, in the guest's view), three JUnit files, one report."""
    s = selection.suites([smoke, other])
    expected = selection.collect(None, suites=s, builtin=True)
    assert expected == IDS + SMOKE_IDS + OTHER_IDS
    results = tmp_path / "results"
    results.mkdir()
    marks = results / ".marks"
    cmd = vm.guest_command(results, None, vm.timeout_args(60), suites=s, builtin=True)
    assert cmd.count(" -m pytest ") == 3
    (results / "harness.sh").write_text(cmd.replace("ORCH_MARKS=/dev/kmsg",
                                                    f"ORCH_MARKS={marks}") + "\n")
    kernel = SimpleNamespace(image=tmp_path / "bzImage")
    kernel.image.write_bytes(b"")
    argv = ["sh", str(results / "harness.sh")]
    if sandbox.probe()[0]:
        # What the guest sees: each suite whole, nothing else of their parents.
        (smoke.parent / "secret").write_text("not the guest's")
        view = vm.guest_view(kernel, results, None, suites=s)
        assert smoke.resolve() in view.readable and other.resolve() in view.readable
        argv[1:1] = ["-c", f"cat {smoke.parent / 'secret'} > {results}/leak 2>&1; sh \"$0\""]
        r = sandbox.run(argv, view, data, timeout=180)
        assert "not the guest's" not in (results / "leak").read_text()
    else:
        r = proc.run(argv, cwd=data, timeout=180)
    assert sorted(p.name for p in results.iterdir() if "junit" in p.name or "-rc" in p.name) \
        == ["harness-rc", "harness-rc-other", "harness-rc-smoke", "junit-other.xml",
            "junit-smoke.xml", "junit.xml"], r.output
    log = (results / "harness.log").read_text()
    assert log.count("rootdir: ") == 3, log
    console = marks.read_text()
    # The suites named, or found from their files (by name then).
    for given, order in [(s, ["smoke", "other"]), (None, ["other", "smoke"])]:
        rep = harvest.read(results, console, expected, suites=given)
        assert rep.sessions == ["guest_tests", *order]
        assert rep.finished and rep.junit == results / "junit.xml"
        assert rep.harness_rc == 1      # other's failure
        got = {t.name: t.status for t in rep.tests}
        assert sorted(got) == sorted(expected) and len(rep.tests) == len(expected)
        assert got[OTHER_IDS[1]] == Status.FAIL and got[SMOKE_IDS[0]] == Status.SKIP
        assert [got[i] for i in IDS + SMOKE_IDS[1:] + OTHER_IDS[:1]] == [Status.PASS] * 6
    page = next(t for t in rep.tests if t.name == SMOKE_IDS[1])
    assert page.properties["page_size"].isdigit()   # its conftest's fixture ran
    g = vm.outcome(results, marks, expected)
    assert g.ok and g.finished and sorted(t.name for t in g.tests) == sorted(expected), g.error
    classes = {c.get("classname") for c in ET.parse(results / "junit-smoke.xml").iter("testcase")}
    assert classes == {"smoke.test_skips", "smoke.test_smoke"}


def test_a_guest_that_dies_in_a_suites_session(data, smoke, tmp_path):
    """The builtin's session finished; the kernel died in the suite's: the
    suite's finished tests from the console, the running one named."""
    s = selection.suites([smoke])
    expected = IDS + SMOKE_IDS
    results = tmp_path / "results"
    results.mkdir()
    cases = "".join(f'<testcase classname="guest_tests.{i.split("/")[1].split(".")[0]}" '
                    f'name="{i.split("::")[1]}"/>' for i in IDS)
    (results / "junit.xml").write_text(f"<testsuites><testsuite>{cases}</testsuite></testsuites>")
    (results / "harness-rc").write_text("0\n")
    console = "\n".join([*(f"orch-test: start {i}\norch-test: end PASS {i}" for i in IDS),
                         "orch-test: done 0",
                         f"orch-test: start {SMOKE_IDS[0]}",
                         f"orch-test: end SKIP {SMOKE_IDS[0]}  # no device",
                         f"orch-test: start {SMOKE_IDS[1]}",
                         "[   12.0] Kernel panic - not syncing: Fatal exception"])
    rep = harvest.read(results, console, expected, suites=s)
    assert rep.sessions == ["guest_tests", "smoke"]
    assert not rep.finished and rep.junit is None
    assert rep.junit_error == "junit-smoke.xml is missing"
    assert rep.died_in == SMOKE_IDS[1] and rep.harness_rc is None
    got = {t.name: (t.status, t.message) for t in rep.tests}
    assert got == {**{i: (Status.PASS, "") for i in IDS},
                   SMOKE_IDS[0]: (Status.SKIP, "no device")}
    # Each once: the builtin's from its JUnit file, the suite's from the console.
    assert [t.outcomes for t in rep.tests] == [[]] * 4
    assert [t.properties.get("source") for t in rep.tests] == [None] * 3 + ["console marks"]
    assert rep.junits == [results / "junit.xml"]


def test_sessions_follow_the_ids_expected_of_them(tmp_path):
    """Without a suite, read as before (junit.xml, harness-rc); a kselftest's
    id is no pytest session's; no pytest id at all, no session."""
    (tmp_path / "junit.xml").write_text(
        '<testsuites><testsuite><testcase classname="guest_tests.test_a" name="test_x"/>'
        "</testsuite></testsuites>")
    (tmp_path / "harness-rc").write_text("0\n")
    rep = harvest.read(tmp_path, "", ["guest_tests/test_a.py::test_x",
                                      "kselftest/cachestat/test_cachestat"])
    assert rep.sessions == ["guest_tests"] and rep.finished
    assert [t.name for t in rep.tests] == ["guest_tests/test_a.py::test_x"]
    rep = harvest.read(tmp_path, "", ["kselftest/cachestat/test_cachestat"])
    assert rep.sessions == [] and rep.finished and rep.tests == []
    for name, kept in [("junit-smoke.xml", True), ("harness-rc-smoke", True),
                       ("junit.xml", False), ("junit-kselftest.xml", False),
                       ("harness-rc-", False), ("junit-../x.xml", False)]:
        assert harvest.session_file(name) is kept, name


def test_the_guest_is_shown_each_suite_whole(data, smoke, tmp_path):
    s = selection.suites([smoke])
    kernel = SimpleNamespace(image=tmp_path / "bzImage")
    view = vm.guest_view(kernel, tmp_path, ["smoke/test_smoke.py"], suites=s)
    assert smoke.resolve() in view.readable
    # Its tests are shown with it, not one by one beside it.
    assert vm.selected_files(data, "smoke/test_smoke.py", s) == []
    assert vm.selected_files(data, str(smoke / "test_smoke.py"), s) == []
    assert not any("smoke/test_smoke.py" in str(p) for p in view.readable)


# 4. the results key -----------------------------------------------------------------

ARGS = ("0" * 64, None, 300.0, "tcg")


def _pinned(monkeypatch, tmp_path) -> None:
    """Everything the key holds besides the suite, fixed, so a golden value holds."""
    plugin = tmp_path / "pytest_plugin.py"
    plugin.write_text("# the plugin\n")
    monkeypatch.setattr(result_cache, "PLUGIN", plugin)
    monkeypatch.setattr(result_cache, "__version__", "0.1.0")
    monkeypatch.setattr(vm, "APPEND", ["null_blk.nr_devices=0"])
    monkeypatch.setattr(vm, "SCRATCH_MB", 256)
    result_cache._suite_digest.cache_clear()


def test_without_a_suite_the_digest_and_key_are_what_they_were(data, tmp_path, monkeypatch):
    _pinned(monkeypatch, tmp_path)
    digest = hashlib.sha256()
    for name in ["guest_tests/test_a.py", "guest_tests/test_b.py",
                 "orchestrator/guest/pytest_plugin.py"]:
        digest.update(name.encode() + b"\0" + (
            (tmp_path / "pytest_plugin.py") if "plugin" in name else data / name).read_bytes())
    assert result_cache.suite_digest(()) == digest.hexdigest() == \
        "fc426120c0cccd2e63dfcfc9e9632490427f668c401d7d688bf28fa7a2c87740"
    before = ["0.1.0", "0" * 64, [], digest.hexdigest(), 300.0, "tcg", 1, 2, "2G",
              ["null_blk.nr_devices=0"], 256, "guest view 3"]
    golden = hashlib.sha256(json.dumps(before).encode()).hexdigest()[:32]
    assert golden == "52d5c1a638d1cc317539ecb11f041cfa"
    assert result_cache.key(*ARGS) == result_cache.key(*ARGS, suites=()) == golden


def test_the_key_holds_each_suites_files_under_its_name(data, smoke, other, tmp_path,
                                                       monkeypatch):
    _pinned(monkeypatch, tmp_path)
    s = selection.suites([smoke])

    def key(suites=s) -> str:
        result_cache._suite_digest.cache_clear()
        return result_cache.key(*ARGS, suites=suites)

    plain, first = result_cache.key(*ARGS), key()
    assert first != plain
    assert key([smoke]) == first             # its path, as the run level carries it
    (smoke / "test_smoke.py").write_text((smoke / "test_smoke.py").read_text() + "\n# x\n")
    changed = key()
    assert changed != first
    (smoke / "sub").mkdir()
    (smoke / "sub" / "data.bin").write_bytes(b"\1")
    assert key() != changed
    (smoke / "sub" / "data.bin").unlink()
    (smoke / "sub").rmdir()
    # What the guest never reads keys nothing: about.toml, bytecode.
    (smoke / "about.toml").write_text("# edited\n" + (smoke / "about.toml").read_text())
    (smoke / "__pycache__").mkdir(exist_ok=True)
    (smoke / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert key() == changed
    # The same suite elsewhere is the same suite; another name is not.
    moved = tmp_path / "moved" / "smoke"
    shutil.copytree(smoke, moved)
    assert key(selection.suites([moved])) == changed
    renamed = tmp_path / "moved" / "smoke2"
    shutil.copytree(smoke, renamed)
    assert key(selection.suites([renamed])) != changed
    # Two suites: both, in their order.
    both, swapped = key(selection.suites([smoke, other])), key(selection.suites([other, smoke]))
    assert len({both, swapped, changed}) == 3


# 5. about.toml ----------------------------------------------------------------------

def test_a_suites_own_about_toml_says_what_its_tests_are_about(data, smoke):
    s = selection.suites([smoke])
    ids = selection.collect(["guest_tests/test_a.py"], suites=s) + \
        ["kselftest/cachestat/test_cachestat"]
    root = selection.rootdir(data, ["guest_tests/test_a.py"], s)
    assert root == data
    found = about.tests_about(ids, root, ["mm/filemap.c"], s)
    assert found.about == [smoke.resolve() / "about.toml"]
    assert found.named == SMOKE_IDS[1:]
    # The builtin's tests (no about.toml in this data root) are unnamed, the
    # suite's test no entry names too; a kselftest is neither.
    assert found.unnamed == IDS[:2] + SMOKE_IDS[:1]
    other = about.tests_about(ids, root, ["fs/ext4/inode.c"], s)
    assert other.named == [] and other.unnamed == found.unnamed
