"""Which guest tests a run selects (issue 27, item 9): --guest-test, -k EXPR
and --list-tests, the same on the host's collection and in the guest.

  - a mistyped --guest-test file is bad input (2) in every install: pytest,
    given a path that does not exist, would load the conftest.py of every
    test*/ directory beside the suite (in a checkout orch's own tests/,
    which imports what only orch's [test] extra installs); a selection of
    orch's own files is refused the same way, and a conftest.py outside the
    suite is never loaded (tests/guest/test_bare_install.py: the real
    install without the extra);
  - --list-tests prints the selected ids and exits 0, before any fetch or
    build, on test, bisect and check;
  - -k EXPR selects like pytest's -k: an expression that selects nothing or
    does not parse is bad input (check: 128); the guest runs exactly what
    the host collected, and a kept result of another -k is never reused.

The data root of most tests is a small one of their own (ORCH_DATA), so the
ids are known; the end-to-end runs are real `orch test` / `orch check` runs
on the stand-in tree, whose guest runs the selected tests for real
(standin_guest, harness=True).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import FIXED, REPO, TESTS_DIR, one_error_line, orch, run_json, series

from orchestrator.core import paths
from orchestrator.core.errors import BadInput
from orchestrator.guest import result_cache, selection, vm
from orchestrator.run import boots

SUITE_A = "def test_alpha():\n    pass\n\n\ndef test_beta():\n    pass\n"
SUITE_B = "def test_gamma():\n    pass\n"
IDS = ["guest_tests/test_a.py::test_alpha", "guest_tests/test_a.py::test_beta",
       "guest_tests/test_b.py::test_gamma"]
# Where pytest would look when a selected path does not exist: a test*/
# directory beside the suite, as orch's own tests/ is in a checkout, whose
# conftest.py loads a plugin that imports what only the [test] extra
# installs (tests/schema_check.py, jsonschema): pytest's exit 3, which
# orch took for a broken suite (status 5).
BROKEN_CONFTEST = 'pytest_plugins = ["orch_h6_schema_check"]\n'
BROKEN_PLUGIN = "import orch_h6_module_only_a_test_extra_installs  # noqa: F401\n"


def small_data_root(root: Path) -> Path:
    """An orch data directory (kconfigs from the checkout) whose suite is
    IDS, beside a tests/ whose conftest.py cannot be imported."""
    shutil.copytree(REPO / "kconfigs", root / "kconfigs")
    (root / "guest_tests").mkdir()
    (root / "guest_tests" / "test_a.py").write_text(SUITE_A)
    (root / "guest_tests" / "test_b.py").write_text(SUITE_B)
    (root / "tests").mkdir()
    (root / "tests" / "conftest.py").write_text(BROKEN_CONFTEST)
    (root / "tests" / "orch_h6_schema_check.py").write_text(BROKEN_PLUGIN)
    (root / "tests" / "test_orch_itself.py").write_text("def test_orch():\n    pass\n")
    return root


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    root = small_data_root(tmp_path / "data")
    monkeypatch.setenv(paths.DATA_ENV, str(root))
    return root


@pytest.fixture
def data_env(env, data) -> dict:
    return {**env, paths.DATA_ENV: str(data)}


def _test_run(env, tmp_path, *args):
    """`orch test` of v3's mbox on no tree: the selection is checked first."""
    return orch(env, tmp_path, "test", "--offline-mode", "--mbox",
                str(REPO / "tests" / "data" / "lore" / "blk-dontcache-v3.mbox"),
                "--tree", str(tmp_path / "no-tree"), "--run-dir", str(tmp_path / "run"), *args)


# 1. a mistyped file, orch's own files, conftests outside the suite --------

def test_a_mistyped_test_file_is_bad_input_whatever_orchs_own_tests_import(data_env, tmp_path):
    """Was status 5, "No module named 'jsonschema'", in an install without
    the [test] extra: pytest loaded tests/conftest.py for the missing file."""
    r = _test_run(data_env, tmp_path, "--guest-test", "guest_tests/test_nosuch.py")
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert line.startswith("orch: error: no guest test matches the selection: "
                           "guest_tests/test_nosuch.py (guest_tests/test_nosuch.py: no such "
                           "file or directory"), line
    assert "orch_h6_module" not in r.stderr


@pytest.mark.parametrize("target", ["tests/test_orch_itself.py", "tests", ".",
                                    "guest_tests/../tests/test_orch_itself.py::test_orch"])
def test_orchs_own_files_are_not_guest_tests(data, target):
    with pytest.raises(BadInput, match=r"is not under the guest suite .*/guest_tests: orch's "
                       "own files are not guest tests"):
        selection.collect([target])


def test_a_test_file_beside_the_suite_is_still_selectable(data):
    """guest_selftest/ (the harness's own checks, test_crash_e2e.py) lies
    in the data root beside guest_tests/: it is not orch's own tests."""
    own = data / "guest_selftest"
    own.mkdir()
    (own / "test_beside.py").write_text("def test_beside():\n    pass\n")
    assert selection.collect(["guest_selftest/test_beside.py"]) == \
        ["guest_selftest/test_beside.py::test_beside"]


def test_no_conftest_outside_the_suite_is_loaded(data):
    """Not the data root's either: the suite's conftest.py files are its own."""
    (data / "conftest.py").write_text("raise RuntimeError('the data root conftest ran')\n")
    assert selection.collect(None) == IDS
    args = selection.pytest_base_args(data, None)
    assert args[args.index("--confcutdir") + 1] == str(data / "guest_tests")


# 2. --list-tests ---------------------------------------------------------

@pytest.mark.parametrize("command", [["test"], ["bisect"], ["check"]])
def test_list_tests_prints_the_selection_and_nothing_else(data_env, tmp_path, command):
    """No Message-ID, no tree, no cache, no run directory: the ids, one per
    line on stdout, after --guest-test and -k."""
    cache = Path(data_env["ORCH_CACHE"])
    r = orch(data_env, tmp_path, *command, "--list-tests")
    assert (r.returncode, r.stdout.splitlines()) == (0, IDS), r.stderr
    r = orch(data_env, tmp_path, *command, "--list-tests", "--guest-test",
             "guest_tests/test_a.py", "--guest-test", "guest_tests/test_b.py",
             "-k", "alpha or gamma")
    assert (r.returncode, r.stdout.splitlines()) == (0, [IDS[0], IDS[2]]), r.stderr
    assert r.stderr == ""
    assert not cache.exists() and not (tmp_path / "orch-runs").exists()


def test_list_tests_of_the_real_suite_is_its_collection(env, tmp_path):
    r = orch(env, tmp_path, "test", "--list-tests", "-k", "irq")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == selection.collect(None, "irq")
    assert r.stdout and all("irq" in line for line in r.stdout.splitlines())


# 3. -k EXPR --------------------------------------------------------------

@pytest.mark.parametrize("expr, words", [
    ("delta", "no guest test matches the selection: guest_tests/ -k 'delta'"),
    ("alpha and", "-k 'alpha and': Wrong expression passed to '-k': alpha and: at column"),
])
def test_a_k_that_selects_nothing_or_does_not_parse_is_bad_input(data_env, tmp_path, mini,
                                                                 expr, words):
    r = _test_run(data_env, tmp_path, "-k", expr)
    assert r.returncode == 2, r.stderr
    assert one_error_line(r.stderr).startswith(f"orch: error: {words}")
    # orch check: bad input stops git bisect (128), with the same words.
    r = orch(data_env, mini, "check", "--config", "base", "-k", expr,
             "--run-dir", str(tmp_path / "check"))
    assert r.returncode == 128, r.stderr
    assert one_error_line(r.stderr).startswith(f"orch: error: {words}")


def test_the_guest_command_runs_what_the_host_collected(data, tmp_path):
    """The guest's own command line (run here, as tests/core/test_paths.py
    does): -k reaches its pytest, which runs exactly the collected ids."""
    expected = selection.collect(None, "alpha or gamma")
    assert expected == [IDS[0], IDS[2]]
    results = tmp_path / "results"
    results.mkdir()
    marks = tmp_path / "marks"
    cmd = vm.guest_command(results, None, vm.timeout_args(60), "alpha or gamma")
    assert " -k 'alpha or gamma' " in cmd
    subprocess.run(["sh", "-c", cmd.replace("ORCH_MARKS=/dev/kmsg", f"ORCH_MARKS={marks}")],
                   timeout=120, check=True)
    g = vm.outcome(results, marks, expected)
    assert [(t.name, t.status.value) for t in g.tests] == [(i, "PASS") for i in expected]
    ran = [c.get("name") for c in ET.parse(results / "junit.xml").getroot().iter("testcase")]
    assert ran == ["test_alpha", "test_gamma"]


def test_k_is_part_of_the_results_key():
    """Explicit: the same --guest-test with another -k is another key; no
    -k keeps the key results were kept under before -k existed."""
    args = ("0" * 64, ["guest_tests/test_a.py"], 300.0, "tcg", 1, 0, True)
    keys = {result_cache.key(*args), result_cache.key(*args, keyword="alpha"),
            result_cache.key(*args, keyword="beta")}
    assert len(keys) == 3
    assert result_cache.key(*args, keyword=None) == result_cache.key(*args)


# The stand-in guest's harness (standin_guest._harness) builds the guest
# command without -k: it is handed each boot's keyword here.
ORCH_K = """\
import sys
sys.path[:0] = [{tests!r}, {repo!r}]
import standin_guest
from orchestrator.guest import vm
standin_guest.install_globally(harness=True)
standin, command = vm.run_tests, vm.guest_command


def run_tests(*args, keyword=None, **kw):
    vm.guest_command = lambda results, tests, pytest_args, k=None, **kw: command(
        results, tests, pytest_args, keyword, **kw)
    try:
        return standin(*args, **kw)
    finally:
        vm.guest_command = command


vm.run_tests = run_tests
from orchestrator import cli
sys.exit(cli.main(sys.argv[1:]))
"""

PICK = """\
def test_alpha():
    pass


def test_beta():
    pass


def test_gamma():
    pass
"""


def _orch_k(tmp_path, env, *args):
    script = tmp_path / "orch_k.py"
    script.write_text(ORCH_K.format(tests=str(TESTS_DIR), repo=str(REPO)))
    return subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def _ran(results: Path) -> list[str]:
    """What the guest's pytest ran, by its own JUnit file."""
    return [c.get("name") for c in ET.parse(results / "junit.xml").getroot().iter("testcase")]


@pytest.fixture
def pick(tmp_path) -> str:
    """A test file of the user's own, outside the data root."""
    f = tmp_path / "mine" / "test_pick.py"
    f.parent.mkdir()
    f.write_text(PICK)
    return str(f)


def test_orch_test_k_boots_only_the_selected_tests_and_keeps_them_apart(tmp_path, env, mini,
                                                                       pick):
    mbox = series(mini, tmp_path, "fix", [("mini: a fix", {"new.c": FIXED})])

    def run(expr: str, name: str) -> dict:
        rd = tmp_path / name
        r = _orch_k(tmp_path, env, "test", "--offline-mode", "--mbox", str(mbox), "--tree",
                    str(mini), "--config", "base", "--guest-test", pick, "-k", expr,
                    "--run-dir", str(rd))
        assert r.returncode == 0, r.stderr[-3000:]
        return run_json(rd)

    alpha = run("alpha", "run-alpha")
    (want,) = alpha["expected_tests"]
    assert want.endswith("/test_pick.py::test_alpha"), want
    assert alpha["command"][-4:-2] == ["-k", "alpha"]
    (cfg,) = alpha["configs"]
    for side in ("baseline", "patched"):
        assert [t["name"] for t in cfg[side]["tests"]] == [want]
        assert _ran(tmp_path / "run-alpha" / "results" / "base" / side) == ["test_alpha"]
    # Another -k on the same kernels: booted again, never alpha's kept results.
    beta = run("alpha or beta", "run-both")
    (cfg,) = beta["configs"]
    assert not cfg["patched"]["boot"].get("cached"), cfg["patched"]["boot"]
    assert [t["name"].rpartition("::")[2] for t in cfg["patched"]["tests"]] == \
        ["test_alpha", "test_beta"]
    assert _ran(tmp_path / "run-both" / "results" / "base" / "patched") == \
        ["test_alpha", "test_beta"]
    # The same -k again: its own kept results answer.
    again = run("alpha", "run-again")
    assert again["configs"][0]["patched"]["boot"]["cached"] is True


def test_orch_check_k_runs_only_the_selected_tests(tmp_path, env, mini, pick):
    rd = tmp_path / "check"
    r = _orch_k(tmp_path, env, "check", "--tree", str(mini),
                "--config", "base", "--guest-test", pick, "-k", "not beta",
                "--run-dir", str(rd))
    assert r.returncode == 0, r.stderr[-3000:]
    rec = run_json(rd)
    assert [t.rpartition("::")[2] for t in rec["expected_tests"]] == ["test_alpha", "test_gamma"]
    (results,) = [p.parent for p in rd.rglob("junit.xml")]
    assert _ran(results) == ["test_alpha", "test_gamma"]


def test_boot_settings_carry_k_into_the_key(tmp_path):
    """boots.results_key, what every boot is kept under: -k is in it."""
    kernel = SimpleNamespace(image=tmp_path / "bzImage")
    kernel.image.write_bytes(b"a kernel")
    plain = boots.BootSettings(["guest_tests/test_a.py"], [IDS[0]])
    alpha = boots.BootSettings(["guest_tests/test_a.py"], [IDS[0]], keyword="alpha")
    assert boots.results_key(kernel, plain) != boots.results_key(kernel, alpha)
