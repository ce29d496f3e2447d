"""`pip install` (not editable) into a fresh virtual environment gives an
orch that works from any directory: its kconfigs/ and guest_tests/ come in
the wheel and orchestrator.core.paths.data_root() finds them there.

Slow: pip installs orch's dependencies (from PyPI, or pip's cache). The one
orch run here must build nothing: its kernels are those of
tests/test_kernel_e2e.py, which pytest collects (and runs) before this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PORT, REPO, one_error_line, run_json

from orchestrator import __version__
from orchestrator.guest import result_cache, selection

pytestmark = pytest.mark.slow

PIP_TIMEOUT = 900
# A cached --build-only run takes seconds; on a cache miss orch stops its
# build here rather than this test building kernels for ten minutes.
RUN_TIMEOUT = 300


def checkout_copy(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked, and new ones not
    ignored). pip builds in the source directory: run on the checkout it
    would leave build/ there, and setuptools puts into the wheel whatever
    an earlier build left in build/ (a guest test deleted since, say)."""
    r = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                        "--exclude-standard"], capture_output=True, check=True)
    for rel in filter(None, r.stdout.decode().split("\0")):
        src = REPO / rel
        if src.is_file():   # a file deleted but not yet staged is still listed
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def env(**extra: str) -> dict[str, str]:
    # PYTHONPATH (the suite may run with the checkout on it) would import
    # orch from the checkout; ORCH_CACHE stays the suite's, kernels included.
    e = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "ORCH_DATA")}
    return {**e, **extra}


class Installed:
    def __init__(self, venv: Path, elsewhere: Path):
        self.venv, self.elsewhere = venv, elsewhere

    def run(self, exe: str, *args: str, timeout: float = 120,
            **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.venv / "bin" / exe), *args], cwd=self.elsewhere,
                              capture_output=True, text=True, timeout=timeout, env=env(**extra))

    def python(self, code: str) -> str:
        r = self.run("python", "-c", code)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    tmp = tmp_path_factory.mktemp("install")
    src = checkout_copy(tmp / "src")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        str(src)], capture_output=True, text=True, timeout=PIP_TIMEOUT, env=env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    elsewhere = tmp / "elsewhere"   # not the checkout, not the source copy
    elsewhere.mkdir()
    return Installed(venv, elsewhere)


def test_installed_orch_has_its_data(installed):
    out = installed.python("import orchestrator, orchestrator.core.paths as p\n"
                           "print(orchestrator.__file__); print(p.data_root())")
    module, root = map(Path, out.splitlines())
    for p in (module, root):
        assert p.is_relative_to(installed.venv) and not p.is_relative_to(REPO), out
    # Every module of the checkout's package (packages are listed by name in
    # pyproject.toml: a new subpackage left out is an orch that cannot start).
    code = REPO / "orchestrator"
    modules = {str(f.relative_to(code)) for f in code.rglob("*.py")
               if "__pycache__" not in f.parts}
    have = {str(f.relative_to(module.parent)) for f in module.parent.rglob("*.py")
            if not f.is_relative_to(root)}
    assert modules <= have, sorted(modules - have)
    # Every kconfig (the matrix too), every guest test module and the README.
    for sub, ships in (("kconfigs", lambda p: True),
                       ("guest_tests", lambda p: p.suffix == ".py" or p.name in ("README.md", "about.toml"))):
        shipped = {p.name for p in (REPO / sub).iterdir() if p.is_file() and ships(p)}
        got = {p.name for p in (root / sub).iterdir() if p.is_file()}
        assert got == shipped and shipped, sub
    assert (root / "kconfigs" / "matrix").is_file()
    r = installed.run("orch", "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"orch {__version__}", r


def test_installed_orch_collects_the_same_suite(installed):
    """Same node ids, same suite digest (so kept baseline results are
    shared) as the checkout this suite runs from."""
    out = installed.python("import json\nfrom orchestrator.guest import result_cache, selection\n"
                           "print(json.dumps([selection.collect(None), "
                           "result_cache.suite_digest(())]))")
    ids, digest = json.loads(out)
    assert ids == selection.collect(None)
    assert all(i.startswith("guest_tests/test_") for i in ids)
    assert digest == result_cache.suite_digest(())


def test_installed_orch_runs_from_anywhere(installed, tmp_path):
    rd = tmp_path / "run"
    r = installed.run("orch", "test", "--offline-mode", "--mbox", str(PORT), "--config", "base",
                      "--build-only", "--timeout", str(RUN_TIMEOUT), "--run-dir", str(rd),
                      timeout=RUN_TIMEOUT + 120)
    assert r.returncode == 0, r.stderr[-3000:]
    (cfg,) = run_json(rd)["configs"]
    builds = {side: cfg[side]["build"]["status"] for side in ("baseline", "patched")}
    assert builds == {"baseline": "cached", "patched": "cached"}, (
        "the installed orch built a kernel the checkout had built: another build key?")


def test_orch_data_without_data_is_one_error_line(installed, tmp_path):
    (tmp_path / "empty").mkdir()
    r = installed.run("orch", "test", "--offline-mode", "--mbox", str(PORT), "--config", "base",
                      "--build-only", "--run-dir", str(tmp_path / "run"),
                      ORCH_DATA=str(tmp_path / "empty"))
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert line.startswith("orch: error: ORCH_DATA=") and "guest_tests/" in line, r.stderr
    assert "Traceback" not in r.stdout
