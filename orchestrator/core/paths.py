"""Where orch keeps its caches and runs, and where it finds its own data."""

from __future__ import annotations

import os
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
