"""The architecture as import rules (pyproject's [tool.importlinter]):
each subsystem package imports only the layers below it, and reports run
nothing. Checked with import-linter itself, on this tree and on a mutant."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from helpers import REPO

LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("core", "kernel", "source", "guest", "run", "store", "bisect", "nightly", "reports",
            "fanout",
            "commands")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_tree_keeps_its_import_rules():
    r = _lint(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_every_package_is_installed_and_named_in_a_contract():
    """A package missing from pyproject's list installs an orch that cannot
    start; one missing from the layers is under no rule."""
    text = (REPO / "pyproject.toml").read_text()
    on_disk = {p.parent.name for p in (REPO / "orchestrator").glob("*/__init__.py")
               if p.parent.name != "share"}
    assert on_disk == set(PACKAGES), on_disk
    for name in on_disk:
        assert f'"orchestrator.{name}"' in text, name


def _copy(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break."""
    root = tmp_path / "tree"
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root)
    shutil.copytree(REPO / "orchestrator", root / "orchestrator",
                    ignore=shutil.ignore_patterns("__pycache__", "share"))
    return root


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The mutant: core importing a kernel module (an upward import), and a
    report starting a process. Both are reported, by module and line."""
    root = _copy(tmp_path)
    errors = root / "orchestrator" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom orchestrator.kernel import kimage  # noqa\n")
    page = root / "orchestrator" / "reports" / "svg_plot.py"
    page.write_text(page.read_text() + "\nfrom orchestrator.core import proc  # noqa\n")
    r = _lint(root)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "orchestrator.core.errors -> orchestrator.kernel.kimage" in r.stdout
    assert "orchestrator.reports.svg_plot -> orchestrator.core.proc" in r.stdout


def test_a_command_importing_another_breaks_the_contract(tmp_path):
    """Commands are thin: each parses its flags and calls its engine. One
    that takes another command's code is caught."""
    root = _copy(tmp_path)
    bisect = root / "orchestrator" / "commands" / "bisect.py"
    bisect.write_text(bisect.read_text() + "\nfrom orchestrator.commands import test  # noqa\n")
    r = _lint(root)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "none imports another BROKEN" in r.stdout
    assert "orchestrator.commands.bisect -> orchestrator.commands.test" in r.stdout
