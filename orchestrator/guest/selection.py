"""What the guest is expected to run, known on the host before any build.

pytest's own collection over the same targets, with the same plugin and
options as in the guest, so a side that reports less than this is missing
tests (MISS), and a selection that matches nothing stops before a build.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.sanitize import clean

GUEST_TESTS = "guest_tests"   # the suite, relative to the data root
PLUGIN = "orchestrator.guest.pytest_plugin"
COLLECT_TIMEOUT = 120
# What pytest says of a -k expression it cannot parse.
BAD_KEYWORD = "Wrong expression passed to '-k'"


def targets(tests: list[str] | None) -> list[str]:
    return list(tests) if tests else [GUEST_TESTS]


def rootdir(root: Path, tests: list[str] | None) -> Path:
    """pytest's rootdir, which node ids are relative to: the data root, or
    above it when a selected test lies outside it (orch's own tests select
    files in temporary directories; outside its rootdir pytest would drop
    a file's path from its ids)."""
    selected = [os.path.abspath(root / t.split("::")[0]) for t in targets(tests)]
    return Path(os.path.commonpath([str(root), *selected]))


def pytest_base_args(root: Path, tests: list[str] | None,
                     keyword: str | None = None) -> list[str]:
    """The arguments the host's collection and the guest's run share; both
    run with the data root as their cwd. `keyword`: -k EXPR, so the guest
    runs what the host collected, by pytest's own matching on both sides.

    pytest reads no configuration file (`-c /dev/null`), and its rootdir and
    conftest.py files come from here: an installed orch has no
    pyproject.toml, and a stray pytest.ini, pyproject.toml or conftest.py
    around the suite (site-packages, a CI workspace, a checkout's data root
    beside orch's own tests/) must not change the node ids or the JUnit
    file. What the suite needs is given here."""
    return ["-c", os.devnull, "--rootdir", str(rootdir(root, tests)),
            "--confcutdir", str(root / GUEST_TESTS),
            # xunit1 (as before): record_property() values, and each
            # testcase's file and line, in the guest's JUnit file.
            "-o", "junit_family=xunit1",
            "-p", "no:cacheprovider", "-p", PLUGIN,
            *(["-k", keyword] if keyword is not None else [])]


def collect(tests: list[str] | None, keyword: str | None = None) -> list[str]:
    """The ids the guest will run: --guest-test's targets (the whole suite
    when none), narrowed by -k EXPR. A selection that matches nothing, or
    a bad one, is BadInput."""
    return list(_collect(tuple(tests or ()), keyword, paths.data_root()))


def check_targets(tests: list[str] | None, root: Path) -> None:
    """Each --guest-test names a file or directory that exists, before
    pytest runs: given a path that does not exist, pytest loads the
    conftest.py of its cwd (the data root) and of every test*/ directory
    there instead, in a checkout orch's own tests/conftest.py, which needs
    orch's [test] extra. And none is orch's own tests (the data root
    itself, or a test*/ directory of it but the suite) for the same reason.
    Other files are yours to select: guest_selftest/ beside the suite (the
    harness's own checks) or a test file outside the data root
    (docs/security.md: what the guest is shown of it)."""
    suite = (root / GUEST_TESTS).resolve()
    for t in tests or ():
        if t.startswith("-"):
            raise BadInput(f"--guest-test {t!r} is an option, not a test")
        path = t.split("::")[0]
        f = (root / path).resolve()
        if not f.exists():
            raise BadInput(f"no guest test matches the selection: {t} ({path}: no such file "
                           f"or directory; the guest tests are under {suite})")
        if _orchs_own_tests(f, root.resolve(), suite):
            raise BadInput(f"no guest test matches the selection: {t} ({path} is not under "
                           f"the guest suite {suite}: orch's own files are not guest tests)")


def _orchs_own_tests(f: Path, root: Path, suite: Path) -> bool:
    if f == root:
        return True
    if not f.is_relative_to(root) or f.is_relative_to(suite):
        return False
    return f.relative_to(root).parts[0].startswith("test")


@functools.lru_cache(maxsize=None)
def _collect(tests: tuple[str, ...], keyword: str | None, root: Path) -> tuple[str, ...]:
    check_targets(list(tests), root)
    if keyword is not None and not keyword.strip():
        raise BadInput("-k wants an expression (pytest's, such as 'irq and not task')")
    what = (" ".join(tests) if tests else f"{GUEST_TESTS}/") + \
        (f" -k {keyword!r}" if keyword is not None else "")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ids.json"
        argv = [sys.executable, "-m", "pytest", *pytest_base_args(root, list(tests), keyword),
                "--collect-only", "-q", *targets(list(tests))]
        try:
            r = subprocess.run(argv, cwd=root, capture_output=True, text=True,
                               timeout=COLLECT_TIMEOUT,
                               env={**_env(), "ORCH_COLLECT": str(out)})
        except subprocess.TimeoutExpired:
            raise OrchError(f"collecting the guest tests took over {COLLECT_TIMEOUT}s", Exit.INFRA)
        if r.returncode == 5 or (r.returncode == 0 and not out.exists()):
            raise BadInput(f"no guest test matches the selection: {what}")
        if r.returncode == 4:
            if keyword is not None and BAD_KEYWORD in r.stdout + r.stderr:
                raise BadInput(f"-k {keyword!r}: {_why(r).removeprefix('ERROR: ')}")
            raise BadInput(f"no guest test matches the selection: {what} ({_why(r)})")
        if r.returncode != 0:
            # The suite itself is broken (an import error): orch's fault, not the user's.
            raise OrchError(f"the guest tests could not be collected ({what}): {_why(r)}",
                            Exit.INFRA)
        ids = json.loads(out.read_text())
    if not ids:
        raise BadInput(f"no guest test matches the selection: {what}")
    return tuple(ids)


def _env() -> dict:
    # The guest gets none of the host's environment: PYTEST_ADDOPTS and
    # the like here would collect other tests than the guest runs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("ORCH_MARKS", None)
    return env


def _why(r: subprocess.CompletedProcess) -> str:
    """pytest's own words: its ERROR line, else the last line it printed."""
    lines = [l for l in (r.stdout + "\n" + r.stderr).splitlines() if l.strip()]
    errors = [l.removeprefix("E").strip() for l in lines if l.startswith("E  ")]
    errors += [l for l in lines if l.startswith("ERROR")]
    return clean((errors or lines or [f"pytest exit {r.returncode}"])[0].strip(), 300)


_REPEAT = re.compile(r"^(.*?)(?:\[(\d+)-(\d+)\]|-(\d+)-(\d+)\])$")


def base_id(nodeid: str, repeat: int) -> str:
    """A repeated test's id without pytest-repeat's `[k-N]` (or `[param-k-N]`)."""
    if repeat <= 1:
        return nodeid
    m = _REPEAT.match(nodeid)
    if not m:
        return nodeid
    if m.group(2) is not None and int(m.group(3)) == repeat:
        return m.group(1)
    if m.group(4) is not None and int(m.group(5)) == repeat:
        return m.group(1) + "]"
    return nodeid


def junit_key(nodeid: str) -> str:
    """The name pytest's JUnit file gives a node id: classname "dir.file[.Class]",
    name "test[params]", joined here as classname::name."""
    path, _, rest = nodeid.partition("::")
    parts = rest.split("::")
    mod = path.removesuffix(".py").replace("/", ".")
    return "::".join([".".join([mod, *parts[:-1]]), parts[-1]])
