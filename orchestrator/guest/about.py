"""What each guest test is about: `about.toml` beside the tests, naming the
kernel sources a test checks, so a run knows which tests a series is
expected to fix (run.targets) from the files it touches.

    [[entry]]
    tests = ["test_blockdev_dontcache.py", "test_many_folios.py::test_x"]
    paths = [
      "mm/filemap.c",      # why this file is what the tests are about
      "fs/ext4/",          # a directory: everything under it
    ]

`tests` are patterns over the tests of that directory, written relative to
it (`test_f.py`, `test_f.py::test_x`, `test_f.py::Class`, or an fnmatch glob
such as `test_ext4_*`); `paths` are kernel paths: a file, a directory ending
in "/", or an fnmatch glob (`*` crosses "/"). The guest never reads the file:
it is the host's knowledge about the suite, as its README is. A suite of
one's own (--suite DIR) has its own about.toml files, read the same way.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import Exit, OrchError
from orchestrator.guest import selection

FILE = "about.toml"
KEYS = ("tests", "paths")
GLOB = frozenset("*?[")


@dataclass(frozen=True)
class Entry:
    tests: tuple[str, ...]   # patterns over test ids relative to the file's directory
    paths: tuple[str, ...]   # kernel source paths, directories or globs


@dataclass(frozen=True)
class About:
    file: Path
    entries: tuple[Entry, ...]


def _prefixes(test_id: str) -> list[str]:
    """The id and its prefixes at pytest's boundaries: the file, each
    file::Class, the test without its [parameters]."""
    head = test_id.split("[", 1)[0]
    parts = head.split("::")
    out = ["::".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return out + ([test_id] if test_id != head else [])


def matches(pattern: str, test_id: str) -> bool:
    """A test id is named by itself, by a prefix at one of its boundaries
    (a file, a file::Class, a test without its [parameters]), by a
    directory ending in "/", or by an fnmatch glob over any of those."""
    if pattern.endswith("/"):
        return test_id.startswith(pattern)
    prefixes = _prefixes(test_id)
    # An id's [parameters] read as a glob's character class: the id itself first.
    return pattern in prefixes or (bool(GLOB & set(pattern)) and any(
        fnmatch.fnmatchcase(p, pattern) for p in prefixes))


def path_matches(pattern: str, path: str) -> bool:
    if pattern.endswith("/"):
        return path.startswith(pattern)
    return path == pattern or (bool(GLOB & set(pattern))
                               and fnmatch.fnmatchcase(path, pattern))


def _bad(path: Path, why: str) -> OrchError:
    # The suite's own file: a mistake in it is the suite's, as an import
    # error in a test is (status 5), not the user's input.
    return OrchError(f"{path}: {why}", Exit.INFRA)


def _patterns(path: Path, i: int, key: str, value) -> tuple[str, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v.strip() for v in value)):
        raise _bad(path, f"entry[{i}].{key}: must be a non-empty array of strings")
    return tuple(v.strip() for v in value)


def load(path: Path) -> About:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise _bad(path, f"cannot read it: {e.strerror or e}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise _bad(path, f"not valid TOML: {e}")
    if set(data) - {"entry"}:
        raise _bad(path, f"unknown key {min(set(data) - {'entry'})!r}; "
                   "known: entry ([[entry]] tables)")
    entries = data.get("entry")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict)
                                                               for e in entries):
        raise _bad(path, "needs [[entry]] tables, each with tests and paths")
    out = []
    for i, e in enumerate(entries):
        for k in e:
            if k not in KEYS:
                raise _bad(path, f"entry[{i}].{k}: unknown key; known: {', '.join(KEYS)}")
        for k in KEYS:
            if k not in e:
                raise _bad(path, f"entry[{i}]: needs {k}")
        out.append(Entry(_patterns(path, i, "tests", e["tests"]),
                         _patterns(path, i, "paths", e["paths"])))
    return About(path, tuple(out))


@dataclass
class Found:
    """What about.toml files say of a run's tests, for the files a series touches."""
    about: list[Path]        # the about.toml files read
    named: list[str]         # tests an entry names whose paths the series touches
    unnamed: list[str]       # tests no about.toml (or no entry) says anything about


def tests_about(ids: list[str], rootdir: Path, touched: list[str],
                suites: Sequence[selection.Suite] = ()) -> Found:
    """Each test id (relative to pytest's `rootdir`, the builtin session's;
    a suite's relative to the suite's parent) against the about.toml beside
    its file: named when an entry names it and the series touches one of
    that entry's paths. A kselftest's id is neither named nor unnamed: no
    about.toml speaks of the kernel's own tests."""
    found = Found([], [], [])
    loaded: dict[Path, About | None] = {}
    by_name = {s.name: s for s in selection.as_suites(suites)}
    for tid in ids:
        session = selection.session_name(tid, by_name)
        if session == selection.KSELFTEST:
            continue
        top = by_name[session].path.parent if session in by_name else rootdir
        file = top / tid.split("::")[0].split("[")[0]
        where = file.parent / FILE
        if where not in loaded:
            loaded[where] = load(where) if where.is_file() else None
            if loaded[where] is not None:
                found.about.append(where)
        about = loaded[where]
        local = file.name + tid[len(tid.split("::")[0]):]
        entries = [e for e in about.entries
                   if any(matches(p, local) for p in e.tests)] if about else []
        if not entries:
            found.unnamed.append(tid)
        elif any(path_matches(p, t) for e in entries for p in e.paths for t in touched):
            found.named.append(tid)
    return found
