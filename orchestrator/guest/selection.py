"""What the guest is expected to run, known on the host before any build.

pytest's own collection over the same targets, with the same plugin and
options as in the guest, so a side that reports less than this is missing
tests (MISS), and a selection that matches nothing stops before a build.

The tests come in suites, each run as its own pytest session (Session):
the builtin one, guest_tests/ under the data root, and each --suite DIR of
the user's, written like it (same plugin, same results). A suite's ids
start with its directory's name (`mysuite/test_x.py::test_y`: pytest's
rootdir is the suite's parent), so the builtin's stay `guest_tests/...`
exactly as they always were, and kept results and history stay valid.

Which sessions run (sessions()): a --guest-test whose first part is a
suite's name (or whose path lies in a suite) selects in that suite; the
rest select in the builtin session as they always did (a file of
guest_tests/, guest_selftest/, or of one's own outside the data root). A
suite given with --suite runs whole unless --guest-test names tests in it;
the whole builtin suite runs when nothing is named with --guest-test and
`builtin` says so (the default: no --suite; the run level also leaves it
out for --kselftest alone).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestrator.core import paths
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.sanitize import clean

GUEST_TESTS = "guest_tests"   # the suite, relative to the data root
KSELFTEST = "kselftest"       # the first part of a kselftest's id (guest/kselftest_run)
RESERVED = (GUEST_TESTS, KSELFTEST)
PLUGIN = "orchestrator.guest.pytest_plugin"
COLLECT_TIMEOUT = 120
# What pytest says of a -k expression it cannot parse.
BAD_KEYWORD = "Wrong expression passed to '-k'"
# A suite's name is the first part of its ids, and of its result files'
# names in the guest's results directory (junit-NAME.xml, harness-rc-NAME).
SUITE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")
# A --suite DIR is shown to the guest whole and hashed into every results
# key: a directory this big is not a test suite (a home directory, a tree).
MAX_SUITE_FILES = 20000
MAX_SUITE_BYTES = 256 << 20
# Never part of a suite's files: pytest's and Python's leftovers, a checkout's history.
SUITE_SKIPPED = frozenset({"__pycache__", ".pytest_cache", ".git"})


@dataclass(frozen=True)
class Suite:
    """A pytest suite of the user's own (--suite DIR): its ids start with `name`."""
    name: str
    path: Path     # absolute, resolved


def result_files(name: str) -> tuple[str, str]:
    """A session's JUnit file and exit status file in the guest's results
    directory: the builtin's as they always were, a suite's of its name."""
    if name == GUEST_TESTS:
        return "junit.xml", "harness-rc"
    return f"junit-{name}.xml", f"harness-rc-{name}"


@dataclass(frozen=True)
class Session:
    """One pytest session of the guest (and of the host's collection)."""
    name: str                  # GUEST_TESTS for the builtin suite, else the suite's name
    suite: Suite | None        # None: the builtin suite, as before suites existed
    targets: tuple[str, ...]   # pytest's arguments: paths or node ids
    cwd: Path
    rootdir: Path              # node ids are relative to it
    confcutdir: Path           # no conftest.py above it is loaded
    junit: str                 # its files in the guest's results directory
    rc: str
    whole: bool                # no --guest-test named anything in it

    @property
    def what(self) -> str:
        """The selection in words, as a user gave it."""
        if self.whole:
            return f"{self.name}/"
        if self.suite is None:
            return " ".join(self.targets)
        return " ".join(_named(self.suite, t) for t in self.targets)


def _named(suite: Suite, target: str) -> str:
    path, sep, rest = target.partition("::")
    rel = Path(path).relative_to(suite.path)
    return str(PurePosixPath(suite.name, *rel.parts)) + sep + rest


def as_suites(given: Iterable[Suite | Path | str] = ()) -> list[Suite]:
    """Suites as they were given (Suite, or a --suite path already checked
    by suites()), unchecked: for the places that only carry them."""
    out = []
    for s in given:
        if isinstance(s, Suite):
            out.append(s)
        else:
            path = Path(s).resolve()
            out.append(Suite(path.name, path))
    return out


def suites(given: Iterable[Suite | Path | str]) -> list[Suite]:
    """--suite DIRs, checked: each a directory, none of orch's own files,
    named apart from each other and from the builtin suite and the
    kselftests (a suite's name starts its ids), none inside another, none
    too big to be a suite. BadInput, one line, otherwise."""
    root = paths.data_root().resolve()
    builtin = root / GUEST_TESTS
    out: list[Suite] = []
    for g in given:
        shown = str(g.path if isinstance(g, Suite) else g)
        path = g.path if isinstance(g, Suite) else Path(g).resolve()
        if not path.is_dir():
            raise BadInput(f"--suite {shown}: " + ("not a directory" if path.exists()
                                                   else "no such directory"))
        name = path.name
        if name in RESERVED:
            raise BadInput(f"--suite {shown}: the name {name!r} is orch's own (" + (
                "the builtin suite: it runs by default, or select it with --guest-test "
                f"{GUEST_TESTS}" if name == GUEST_TESTS else
                "kselftest ids start with it") + "); rename the directory")
        if not SUITE_NAME.match(name):
            raise BadInput(f"--suite {shown}: its name {name!r} starts its test ids and "
                           "names its result files: letters, digits and _ . + - only, "
                           "at most 64; rename the directory")
        if (path == root or root.is_relative_to(path)
                or _orchs_own_tests(path, root, builtin)):
            raise BadInput(f"--suite {shown}: orch's own files are not a guest suite")
        if path.is_relative_to(builtin):
            raise BadInput(f"--suite {shown}: lies inside the builtin suite {builtin}: "
                           f"select its tests with --guest-test instead")
        for s in out:
            if s.path == path:
                raise BadInput(f"--suite {shown}: given twice")
            if s.name == name:
                raise BadInput(f"--suite {shown}: another suite is named {name} ({s.path}); "
                               "test ids start with a suite's directory name, so each "
                               "suite needs its own")
            if path.is_relative_to(s.path) or s.path.is_relative_to(path):
                inner, outer = (path, s.path) if path.is_relative_to(s.path) else (s.path, path)
                raise BadInput(f"--suite {shown}: {inner} lies inside the suite {outer}")
        _not_too_big(path, shown)
        out.append(Suite(name, path))
    return out


def _not_too_big(path: Path, shown: str) -> None:
    files = size = 0
    for top, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if d not in SUITE_SKIPPED]
        files += len(names)
        for n in names:
            try:
                size += os.lstat(os.path.join(top, n)).st_size
            except OSError:
                pass
        if files > MAX_SUITE_FILES or size > MAX_SUITE_BYTES:
            raise BadInput(f"--suite {shown}: over {MAX_SUITE_FILES} files or "
                           f"{MAX_SUITE_BYTES >> 20} MiB, too big to be a test suite (the "
                           "guest is shown it whole): name the tests' own directory")


def suite_files(top: Path) -> list[Path]:
    """A suite's files, as the guest sees them and its results are keyed by."""
    out = []
    for d, dirs, names in os.walk(top):
        dirs[:] = sorted(x for x in dirs if x not in SUITE_SKIPPED)
        out += [Path(d) / n for n in sorted(names)]
    return out


def targets(tests: list[str] | None) -> list[str]:
    return list(tests) if tests else [GUEST_TESTS]


def rootdir(root: Path, tests: list[str] | None,
            suites: Sequence[Suite | Path] = ()) -> Path:
    """pytest's rootdir of the builtin session, which its node ids are
    relative to: the data root, or above it when a selected test lies
    outside it (orch's own tests select files in temporary directories;
    outside its rootdir pytest would drop a file's path from its ids).
    A test that selects in a suite (`suites`) is that suite's, not this."""
    own = (_route(tests or [], as_suites(suites), root, check=False)[0] if suites
           else list(tests or []))
    selected = [os.path.abspath(root / t.split("::")[0]) for t in targets(own)]
    return Path(os.path.commonpath([str(root), *selected]))


def pytest_base_args(root: Path, tests: list[str] | None,
                     keyword: str | None = None) -> list[str]:
    """The arguments the host's collection and the guest's run share for
    the builtin suite; both run with the data root as their cwd. `keyword`:
    -k EXPR, so the guest runs what the host collected, by pytest's own
    matching on both sides.

    pytest reads no configuration file (`-c /dev/null`), and its rootdir and
    conftest.py files come from here: an installed orch has no
    pyproject.toml, and a stray pytest.ini, pyproject.toml or conftest.py
    around the suite (site-packages, a CI workspace, a checkout's data root
    beside orch's own tests/) must not change the node ids or the JUnit
    file. What the suite needs is given here."""
    return _args(rootdir(root, tests), root / GUEST_TESTS, keyword)


def _args(root_dir: Path, confcutdir: Path, keyword: str | None) -> list[str]:
    return ["-c", os.devnull, "--rootdir", str(root_dir),
            "--confcutdir", str(confcutdir),
            # xunit1 (as before): record_property() values, and each
            # testcase's file and line, in the guest's JUnit file.
            "-o", "junit_family=xunit1",
            "-p", "no:cacheprovider", "-p", PLUGIN,
            *(["-k", keyword] if keyword is not None else [])]


def session_args(session: Session, keyword: str | None = None) -> list[str]:
    """pytest's options for one session, on the host and in the guest."""
    return _args(session.rootdir, session.confcutdir, keyword)


def whole_builtin(tests: list[str] | None, suites: Sequence = (),
                  builtin: bool | None = None) -> bool:
    """Whether the whole builtin suite runs: when no --guest-test names
    anything and `builtin` (default: no --suite given)."""
    return not tests and (builtin if builtin is not None else not suites)


def expects_builtin(expected: Iterable[str], suites: Sequence[Suite | Path] = ()) -> bool:
    """Whether ids the host collected are the builtin session's: what a
    boot passes as `builtin`, so the guest runs the sessions collected."""
    names = {s.name for s in as_suites(suites)}
    return any(session_name(e, names) == GUEST_TESTS for e in expected)


def sessions(tests: list[str] | None, suites: Sequence[Suite | Path] = (),
             builtin: bool | None = None, root: Path | None = None,
             check: bool = True) -> list[Session]:
    """The pytest sessions a selection runs, the builtin's first, then each
    suite in the order given. `check`: BadInput for a --guest-test that
    names nothing, or orch's own files (the guest's command takes what the
    host collected, checked). None at all is possible (the run level's
    --kselftest alone)."""
    root = root if root is not None else paths.data_root()
    given = as_suites(suites)
    own, named = _route(list(tests or []), given, root, check)
    out = []
    if own or whole_builtin(tests, given, builtin):
        if check:
            check_targets(own, root)
        out.append(Session(GUEST_TESTS, None, tuple(targets(own)), root,
                           rootdir(root, own), root / GUEST_TESTS,
                           *result_files(GUEST_TESTS), not own))
    for s in given:
        # cwd: the suite itself, first on sys.path as pytest would put it
        # anyway; never its parent, whose other files would shadow modules.
        mine = named.get(s.name)
        out.append(Session(s.name, s, tuple(mine or [str(s.path)]), s.path, s.path.parent,
                           s.path, *result_files(s.name), not mine))
    return out


def _route(tests: list[str], suites: list[Suite], root: Path,
           check: bool = True) -> tuple[list[str], dict[str, list[str]]]:
    """Each --guest-test to its session: the builtin's as given, a suite's
    as an absolute path (node id) inside it."""
    own: list[str] = []
    named: dict[str, list[str]] = {}
    by_name = {s.name: s for s in suites}
    for t in tests:
        path, sep, rest = t.partition("::")
        first = PurePosixPath(path).parts[:1]
        suite = by_name.get(first[0]) if first and not os.path.isabs(path) else None
        f = ((suite.path.parent if suite else root) / path).resolve()
        if suite is None:
            suite = next((s for s in suites if f.is_relative_to(s.path)), None)
        if suite is None:
            own.append(t)
            continue
        if not check:
            pass
        elif t.startswith("-"):
            raise BadInput(f"--guest-test {t!r} is an option, not a test")
        elif not f.is_relative_to(suite.path):
            raise BadInput(f"no guest test matches the selection: {t} ({path} is not in "
                           f"the suite {suite.path})")
        elif not f.exists():
            raise BadInput(f"no guest test matches the selection: {t} ({path}: no such file "
                           f"or directory in the suite {suite.path})")
        named.setdefault(suite.name, []).append(str(f) + sep + rest)
    return own, named


def in_suite(test: str, suites: Sequence[Suite | Path], root: Path) -> bool:
    """Whether a --guest-test selects in one of `suites` (by its name, or a
    path inside it), not in the builtin session."""
    return bool(suites) and not _route([test], as_suites(suites), root, check=False)[0]


def collect(tests: list[str] | None, keyword: str | None = None,
            suites: Sequence[Suite | Path] = (), builtin: bool | None = None) -> list[str]:
    """The ids the guest will run: --guest-test's targets (the whole suite
    when none), narrowed by -k EXPR, in the builtin suite and each of
    `suites`. A selection that matches nothing, or a bad one, is BadInput;
    no session at all (builtin False, nothing named, no suite) is no id."""
    return list(_collect(tuple(tests or ()), keyword, paths.data_root(),
                         tuple(as_suites(suites)), builtin))


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


def session_name(nodeid: str, suite_names: Iterable[str]) -> str:
    """Which session an id is of: a suite's name, KSELFTEST for a
    kselftest's, else GUEST_TESTS (the builtin session, whatever its
    rootdir made of the id)."""
    first = nodeid.split("/", 1)[0] if "/" in nodeid else ""
    if first and first in suite_names:
        return first
    return KSELFTEST if first == KSELFTEST else GUEST_TESTS


@functools.lru_cache(maxsize=None)
def _collect(tests: tuple[str, ...], keyword: str | None, root: Path,
             suites: tuple[Suite, ...] = (), builtin: bool | None = None) -> tuple[str, ...]:
    if keyword is not None and not keyword.strip():
        raise BadInput("-k wants an expression (pytest's, such as 'irq and not task')")
    runs = sessions(list(tests), suites, builtin, root)
    if not runs:
        return ()
    k = f" -k {keyword!r}" if keyword is not None else ""
    names = {s.name for s in suites}
    ids: list[str] = []
    for s in runs:
        got = _collect_session(s, keyword, k)
        if s.suite is None:
            clash = next((i for i in got if session_name(i, names) != GUEST_TESTS), None)
            if clash is not None:
                raise BadInput(f"the guest test {clash} starts with the name of a suite or "
                               "of the kselftests: its ids would be taken for theirs; "
                               "rename the suite")
        elif not got and s.whole and keyword is None:
            raise BadInput(f"--suite {s.suite.path}: pytest collects no test in it "
                           "(test_*.py files with test_* functions, as in guest_tests/)")
        ids += got
    if not ids:
        raise BadInput(f"no guest test matches the selection: "
                       f"{' '.join(s.what for s in runs)}{k}")
    return tuple(ids)


def _collect_session(s: Session, keyword: str | None, k: str) -> tuple[str, ...]:
    """One session's ids; none when it selects nothing (the selection as a
    whole is judged by the caller)."""
    what = s.what + k
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ids.json"
        argv = [sys.executable, "-m", "pytest", *session_args(s, keyword),
                "--collect-only", "-q", *s.targets]
        try:
            r = subprocess.run(argv, cwd=s.cwd, capture_output=True, text=True,
                               timeout=COLLECT_TIMEOUT,
                               env={**_env(), "ORCH_COLLECT": str(out)})
        except subprocess.TimeoutExpired:
            raise OrchError(f"collecting the guest tests took over {COLLECT_TIMEOUT}s"
                            + (f" ({what})" if s.suite else ""), Exit.INFRA)
        if r.returncode == 5 or (r.returncode == 0 and not out.exists()):
            return ()
        if r.returncode == 4:
            if keyword is not None and BAD_KEYWORD in r.stdout + r.stderr:
                raise BadInput(f"-k {keyword!r}: {_why(r).removeprefix('ERROR: ')}")
            raise BadInput(f"no guest test matches the selection: {what} ({_why(r)})")
        if r.returncode != 0:
            if s.suite is not None:
                # The user's suite is theirs to mend, as a mistyped test is.
                raise BadInput(f"--suite {s.suite.path}: pytest could not collect it "
                               f"({what}): {_why(r)}")
            # The suite itself is broken (an import error): orch's fault, not the user's.
            raise OrchError(f"the guest tests could not be collected ({what}): {_why(r)}",
                            Exit.INFRA)
        return tuple(json.loads(out.read_text()))


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
