"""Where orch keeps its caches and runs, and where it finds its own data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from orchestrator.core.errors import BadInput, Exit, OrchError

DATA_ENV = "ORCH_DATA"
_PACKAGE = Path(__file__).resolve().parent.parent
# orch's own files that are not code: the sandbox's init, ccache's config,
# the compiler wrapper, run.json's schema, the HTML templates.
DATA = _PACKAGE / "data"
# A wheel carries kconfigs/ and guest_tests/ in share/ of the package
# (pyproject.toml maps them there), not beside the modules: the guest's
# pytest runs with its cwd, the data root, first on sys.path, and orch's
# modules there would shadow any top-level module of the same name.
INSTALLED = _PACKAGE / "share"
# A source checkout (or an editable install of one) has them at its root.
CHECKOUT = _PACKAGE.parent

# The cache this command chose with --cache or the config file's `cache`,
# set once per command by settings.apply_cache(). Module state, not a
# parameter, because cache_dir() is called deep inside build, tree, vm and
# result_cache. settings.load() has already ranked it against ORCH_CACHE
# (flag > ORCH_CACHE > file), so it is set only when it won; None leaves
# the old order: ORCH_CACHE, then the XDG default.
_chosen: Path | None = None


def use_cache(path: Path | None) -> None:
    global _chosen
    _chosen = path


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "orch"


def cache_dir() -> Path:
    if _chosen is not None:
        return _chosen
    env = os.environ.get("ORCH_CACHE")
    if env:
        return Path(env)
    return default_cache_dir()


def holds_data(root: Path) -> bool:
    return (root / "kconfigs" / "matrix").is_file() and (root / "guest_tests").is_dir()


def data_root() -> Path:
    """The directory holding kconfigs/ and guest_tests/: $ORCH_DATA when set,
    else the installed package's share/, else the source checkout's root.
    Guest test ids (`guest_tests/<file>.py::<test>`) are relative to it.

    Read on each call, not at import: a wrong ORCH_DATA is then one error
    line from the CLI, not a traceback (and `orch --version` still works)."""
    env = os.environ.get(DATA_ENV)
    if env:
        root = Path(env).expanduser().resolve()
        if not holds_data(root):
            raise BadInput(f"{DATA_ENV}={env} is not an orch data directory (it needs "
                           "kconfigs/matrix and guest_tests/); unset it to use orch's own")
        return root
    for root in (INSTALLED, CHECKOUT):
        if holds_data(root):
            return root
    raise OrchError(f"orch's kconfigs/ and guest_tests/ are neither in {INSTALLED} nor in "
                    f"{CHECKOUT}: reinstall orch, or set {DATA_ENV} to a directory "
                    "holding them", Exit.INFRA)


# Paths the user names (--run-dir, --json, --cache, ORCH_CACHE, --out, ...)
# are checked when the command reads its flags, before any work: a path that
# cannot be written is the user's input (exit 2, one line naming the flag),
# not an OSError an hour into a run, and it must fail before a run directory
# exists. Asking the file system is the only test that holds: root passes
# every os.access() check, yet cannot create anything under /proc.

def writable_dir(path: Path, what: str) -> Path:
    """`path`, `~`-expanded: a directory that exists and takes new files,
    or one that can be created (its nearest existing ancestor is a
    directory that takes new directories). Nothing is left behind."""
    p = Path(path).expanduser()
    if _exists(p, what):
        if not p.is_dir():
            raise BadInput(f"{_named(what, p)}: not a directory")
        _probe(p, what, p, "cannot write there")
        return p
    _probe(_ancestor(p, p, what, "cannot create a directory there"), what, p,
           "cannot create a directory there")
    return p


def writable_file(path: Path, what: str) -> Path:
    """`path`, `~`-expanded: a file orch may create or replace (a regular
    file or nothing there yet, in a directory that is or can be made)."""
    p = Path(path).expanduser()
    if _exists(p, what):
        if p.is_dir():
            raise BadInput(f"{_named(what, p)}: a directory, not a file")
        if not p.is_file():
            raise BadInput(f"{_named(what, p)}: not a regular file")
    parent = p.parent
    if _exists(parent, what):
        if not parent.is_dir():
            raise BadInput(f"{_named(what, p)}: cannot write a file there: {parent} is not a "
                           "directory")
        _probe(parent, what, p, "cannot write a file there")
    else:
        _probe(_ancestor(parent, p, what, "cannot write a file there"), what, p,
               "cannot write a file there")
    return p


def readable_dir(path: Path, what: str) -> Path:
    """`path`, `~`-expanded: a directory that exists and can be listed."""
    p = Path(path).expanduser()
    if not _exists(p, what):
        raise BadInput(f"{_named(what, p)}: no such directory")
    if not p.is_dir():
        raise BadInput(f"{_named(what, p)}: not a directory")
    try:
        next(os.scandir(p), None)
    except OSError as e:
        raise BadInput(f"{_named(what, p)}: cannot read it: {e.strerror or e}")
    return p


def readable_file(path: Path, what: str) -> Path:
    """`path`, `~`-expanded: a regular file that exists and can be read."""
    p = Path(path).expanduser()
    if not _exists(p, what):
        raise BadInput(f"{_named(what, p)}: no such file")
    if not p.is_file():
        raise BadInput(f"{_named(what, p)}: not a regular file")
    try:
        with open(p, "rb"):
            pass
    except OSError as e:
        raise BadInput(f"{_named(what, p)}: cannot read it: {e.strerror or e}")
    return p


def _named(what: str, p: Path) -> str:
    """`--out DIR`, or `ORCH_CACHE=DIR` for an environment variable (`what`
    ending in "=")."""
    return f"{what}{p}" if what.endswith("=") else f"{what} {p}"


def _exists(p: Path, what: str) -> bool:
    try:
        os.stat(p)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as e:   # a name too long, a loop of links, no permission to look
        raise BadInput(f"{_named(what, p)}: {e.strerror or e}")


def _ancestor(start: Path, p: Path, what: str, doing: str) -> Path:
    """The nearest existing ancestor of `start` (`p` or its parent), which
    must be a directory."""
    for a in start.parents:
        if _exists(a, what):
            if not a.is_dir():
                raise BadInput(f"{_named(what, p)}: {doing}: {a} is not a directory")
            return a
    raise BadInput(f"{_named(what, p)}: {doing}: no existing directory above it")  # not even /


def _probe(directory: Path, what: str, p: Path, doing: str) -> None:
    """Create and remove a directory in `directory`: what orch will do there."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".orch-probe-", dir=directory))
    except OSError as e:
        # mkdir under /proc or /sys says ENOENT: name the directory that
        # refused, so the reason does not read as "it does not exist".
        where = "" if directory == p else f"{directory} takes no new directory: "
        raise BadInput(f"{_named(what, p)}: {doing}: {where}{e.strerror or e}")


# -- the cache's directories that more than one package names (helper A) ---------------

def checks_dir() -> Path:
    """Where `orch check` keeps its records: checks/ in the cache (never in
    the checkout git bisect moves); `orch runs` lists them, gc trims them."""
    return cache_dir() / "checks"
