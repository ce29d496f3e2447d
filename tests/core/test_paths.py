"""Where orch finds kconfigs/ and guest_tests/ (paths.data_root()), and that
the guest suite's pytest reads nothing from around that directory: node ids
and JUnit properties come out the same wherever orch is installed.
tests/test_packaging.py checks a real `pip install`."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import REPO

from orchestrator.core import paths
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.guest import selection, vm
from orchestrator.kernel import kconfig


def data_dir(root: Path, matrix: str = "base\n") -> Path:
    (root / "kconfigs").mkdir(parents=True)
    (root / "kconfigs" / "matrix").write_text(matrix)
    (root / "guest_tests").mkdir()
    return root


@pytest.fixture
def layouts(tmp_path, monkeypatch):
    """An installed share/ and a checkout root, both holding data, no ORCH_DATA."""
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    installed = data_dir(tmp_path / "site" / "orchestrator" / "share", "installed\n")
    checkout = data_dir(tmp_path / "checkout", "checkout\n")
    monkeypatch.setattr(paths, "INSTALLED", installed)
    monkeypatch.setattr(paths, "CHECKOUT", checkout)
    return installed, checkout


def test_a_checkout_finds_its_own_data(monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    assert paths.data_root() == REPO
    assert kconfig.kconfig_dir() == REPO / "kconfigs"


def test_orch_data_comes_first(tmp_path, monkeypatch, layouts):
    mine = data_dir(tmp_path / "mine", "mine\n")
    monkeypatch.setenv(paths.DATA_ENV, str(mine))
    assert paths.data_root() == mine.resolve()
    assert kconfig.default_matrix() == ["mine"]


def test_the_installed_data_before_a_checkout(monkeypatch, layouts):
    installed, checkout = layouts
    assert paths.data_root() == installed
    assert kconfig.default_matrix() == ["installed"]
    (installed / "kconfigs" / "matrix").unlink()   # a share/ without its data is not one
    assert paths.data_root() == checkout


def test_orch_data_without_data_is_bad_input(tmp_path, monkeypatch, layouts):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "empty"))
    with pytest.raises(BadInput, match="ORCH_DATA=.*empty is not an orch data directory"):
        paths.data_root()
    with pytest.raises(BadInput):     # no quiet fallback to the installed data
        kconfig.load("base")


def test_no_data_anywhere_is_infra(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.setattr(paths, "INSTALLED", tmp_path / "share")
    monkeypatch.setattr(paths, "CHECKOUT", tmp_path)
    with pytest.raises(OrchError, match="reinstall orch, or set ORCH_DATA") as e:
        paths.data_root()
    assert e.value.exit == Exit.INFRA


PROBE = '''
def test_probe(suite_fixture, record_property):
    record_property("answer", suite_fixture)
'''
# Each of these, if pytest read it, would change the ids, drop the property
# (xunit2) or stop the run.
STRAY = {
    "pytest.ini": "[pytest]\naddopts = -k no_such_test\njunit_family = xunit2\n",
    "pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-k no_such_test'\n",
    "conftest.py": "raise RuntimeError('a conftest.py above the data root was loaded')\n",
}


def test_guest_pytest_ignores_files_around_the_data_root(tmp_path, monkeypatch):
    """A data root under a directory with its own pytest configuration (as
    site-packages or a CI workspace may be): the host's collection and the
    guest's harness command (run here) give the same ids and properties."""
    outer = tmp_path / "outer"
    root = data_dir(outer / "data")
    for name, text in STRAY.items():
        (outer / name).write_text(text)
    (root / "guest_tests" / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef suite_fixture():\n    return '42'\n")
    (root / "guest_tests" / "test_probe.py").write_text(PROBE)
    monkeypatch.setenv(paths.DATA_ENV, str(root))
    monkeypatch.setenv("PYTEST_ADDOPTS", "-k no_such_test")   # not the guest's either
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    expected = selection.collect(None)
    assert expected == ["guest_tests/test_probe.py::test_probe"]

    results = tmp_path / "results"
    results.mkdir()
    console = tmp_path / "console.log"
    cmd = vm.guest_command(results, None, vm.timeout_args(60))
    cmd = cmd.replace("ORCH_MARKS=/dev/kmsg", f"ORCH_MARKS={console}")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    subprocess.run(["sh", "-c", cmd], timeout=120, env=env)
    log = (results / "harness.log").read_text()
    assert (results / "harness-rc").read_text().strip() == "0", log
    assert "rootdir: " + str(root) in log, log
    g = vm.outcome(results, console, expected)
    (t,) = g.tests
    assert t.name == expected[0] and t.status.value == "PASS", t
    assert t.properties == {"answer": "42"}
    # junit_family=xunit1, as orch asks: its testcase keeps `file` (xunit2
    # drops it), relative to the data root.
    (case,) = ET.parse(results / "junit.xml").getroot().iter("testcase")
    assert case.get("file") == "guest_tests/test_probe.py", case.attrib


def test_a_selection_outside_the_data_root_keeps_its_path(tmp_path):
    """orch's own tests select files in temporary directories: pytest's
    rootdir goes up to them, or their ids would lose the file's path."""
    (tmp_path / "test_outside.py").write_text("def test_a():\n    pass\n")
    (got,) = selection.collect([str(tmp_path / "test_outside.py")])
    assert got.endswith("/test_outside.py::test_a"), got
    assert selection.rootdir(REPO, None) == REPO


# -- paths the user names: checked before any work -----------------------------

@pytest.fixture
def places(tmp_path):
    (tmp_path / "file").write_text("x\n")
    (tmp_path / "dir").mkdir()
    return tmp_path


@pytest.mark.parametrize("rel, says", [
    ("/proc/orch-x", "--out /proc/orch-x: cannot create a directory there: /proc takes no new directory: "),
    ("/proc/orch-x/deeper", "--out /proc/orch-x/deeper: cannot create a directory there: /proc takes no new directory: "),
    ("file", "--out {t}/file: not a directory"),
    ("file/sub", "--out {t}/file/sub: cannot create a directory there: {t}/file is not a "
     "directory"),
    ("x" * 300, "--out {t}/" + "x" * 300 + ": File name too long"),
])
def test_writable_dir_refuses(places, rel, says):
    with pytest.raises(BadInput) as e:
        paths.writable_dir(places / rel, "--out")
    assert str(e.value).startswith(says.format(t=places)), str(e.value)


@pytest.mark.parametrize("rel, says", [
    ("/proc/orch-x.json", "--json /proc/orch-x.json: cannot write a file there: /proc takes no new directory: "),
    ("dir", "--json {t}/dir: a directory, not a file"),
    ("file/run.json", "--json {t}/file/run.json: cannot write a file there: {t}/file is not a "
     "directory"),
    ("file/a/run.json", "--json {t}/file/a/run.json: cannot write a file there: {t}/file is not "
     "a directory"),
    ("/dev/null", "--json /dev/null: not a regular file"),
])
def test_writable_file_refuses(places, rel, says):
    with pytest.raises(BadInput) as e:
        paths.writable_file(places / rel, "--json")
    assert str(e.value).startswith(says.format(t=places)), str(e.value)


def test_writable_places_are_taken_and_left_as_they_were(places):
    before = sorted(p.name for p in places.rglob("*"))
    assert paths.writable_dir(places / "dir", "--out") == places / "dir"
    assert paths.writable_dir(places / "new" / "deep", "--out") == places / "new" / "deep"
    assert paths.writable_file(places / "file", "--json") == places / "file"
    assert paths.writable_file(places / "dir" / "run.json", "--json")
    assert paths.writable_file(places / "new" / "run.json", "--json")
    # Asked, not made: no directory created, no probe left behind.
    assert sorted(p.name for p in places.rglob("*")) == before


def test_an_environment_variable_is_named_with_its_value(places):
    with pytest.raises(BadInput, match=r"^ORCH_CACHE=/proc/orch-c: cannot create a directory"):
        paths.writable_dir(Path("/proc/orch-c"), "ORCH_CACHE=")


def test_home_is_expanded(places, monkeypatch):
    monkeypatch.setenv("HOME", str(places))
    assert paths.writable_dir(Path("~/dir"), "--cache") == places / "dir"


@pytest.mark.parametrize("check, rel, says", [
    (paths.readable_dir, "nosuch", "--plan {t}/nosuch: no such directory"),
    (paths.readable_dir, "file", "--plan {t}/file: not a directory"),
    (paths.readable_file, "nosuch", "--plan {t}/nosuch: no such file"),
    (paths.readable_file, "dir", "--plan {t}/dir: not a regular file"),
])
def test_readable_refuses(places, check, rel, says):
    with pytest.raises(BadInput) as e:
        check(places / rel, "--plan")
    assert str(e.value) == says.format(t=places)
    assert check(places / ("dir" if check is paths.readable_dir else "file"), "--plan")
