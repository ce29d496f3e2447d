"""The guest test selection in an editable install without orch's [test]
extra (issue 27, item 9): `pip install -e` of a copy of this checkout into a
fresh virtual environment, which has no jsonschema, and orch run from it.

A mistyped --guest-test file was status 5 there ("No module named
'jsonschema'": the host's collection loaded the checkout's tests/conftest.py,
whose plugin imports it); it is bad input, status 2, in one line.
tests/guest/test_selection_flags.py reproduces the cause without an install.

Slow: pip installs orch's dependencies (from PyPI, or pip's cache; about
15 s with a warm cache). Builds and boots nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, one_error_line

pytestmark = pytest.mark.slow


def _checkout_copy(dest: Path) -> Path:
    """The checkout as git sees it (tracked files and new ones not ignored):
    an editable install of the checkout itself would rewrite its egg-info."""
    r = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                        "--exclude-standard"], capture_output=True, check=True)
    for rel in filter(None, r.stdout.decode().split("\0")):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    return dest


def test_a_mistyped_test_file_is_status_2_without_the_test_extra(tmp_path):
    src = _checkout_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "ORCH_DATA")}
    env["ORCH_CACHE"] = str(tmp_path / "cache")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        "-e", str(src)], capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # The install this is about: the checkout's tests/ cannot be imported.
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import jsonschema"],
                       capture_output=True, text=True, env=env)
    assert "No module named 'jsonschema'" in r.stderr, r
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    orch = str(venv / "bin" / "orch")
    r = subprocess.run([orch, "test", "--offline-mode", "--mbox",
                        str(src / "tests" / "data" / "lore" / "blk-dontcache-v3.mbox"),
                        "--guest-test", "guest_tests/test_nosuch.py",
                        "--run-dir", str(tmp_path / "run")],
                       cwd=elsewhere, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2, r.stderr
    assert one_error_line(r.stderr).startswith(
        "orch: error: no guest test matches the selection: guest_tests/test_nosuch.py "
        "(guest_tests/test_nosuch.py: no such file or directory"), r.stderr
    assert "jsonschema" not in r.stderr
    # The same install lists the suite it would run.
    r = subprocess.run([orch, "test", "--list-tests", "-k", "irq"], cwd=elsewhere,
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0 and r.stdout.splitlines(), r.stderr
    assert all(line.startswith("guest_tests/") and "irq" in line
               for line in r.stdout.splitlines()), r.stdout
