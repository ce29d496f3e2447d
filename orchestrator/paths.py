"""Where orch keeps its caches and runs."""

from __future__ import annotations

import os
from pathlib import Path

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
