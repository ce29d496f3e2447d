"""The kinds of entries orch's cache holds, each a directory of it, and
what an entry of each is: its key (the entry's name), a lock file inside it
that a run holds (a workspace's), and the private directories of a build or
import in progress (named for their orch's pid, left behind by a killed
one).

    trees/       Debian source packages imported into git (source/debsrc)
    work/        a worktree and build directories per tree (source/tree)
    kernels/     finished kernels (kernel/kcache)
    kselftests/  kselftest installs per kernel (kernel/kselftest_build)
    results/     kept guest results (guest/result_cache)
    checks/      `orch check` records (bisect/check)
    ccache/      ccache's own directory: trimmed by ccache, never by orch
    other        the locks, the nightly's pins, the trash, the build layers
                 (kernel/buildtree sweeps them), kvm-probe.json, anything else
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# In the order `orch cache du` lists them.
ORDER = ("trees", "work", "kernels", "kselftests", "results", "checks", "ccache", "other")
# The kinds whose entries gc removes one by one (core.cache_use.KINDS).
ENTRIES = ("trees", "work", "kernels", "kselftests", "results", "checks")
CCACHE = "ccache"
OTHER = "other"

WHAT = {
    "trees": "Debian source trees imported into git",
    "work": "worktrees and build directories",
    "kernels": "finished kernels",
    "kselftests": "kselftest installs",
    "results": "kept guest results",
    "checks": "orch check records",
    "ccache": "ccache",
    "other": "locks, pins, build layers, the rest",
}

# A lock file inside an entry that a run holds while it works there.
INNER = {"work": "lock"}

# Private directories of work in progress: kcache.new_entry and
# result_cache.store (`.KEY.PID`), kselftest_build._private
# (`.build-KEY-PID-HEX`, `.entry-KEY-PID-HEX`), debsrc.import_tree
# (`.import-PID-...`). The pid is group 1.
_PRIVATE = {
    "kernels": re.compile(r"\.[0-9a-f]+\.(\d+)"),
    "results": re.compile(r"\.[0-9a-f]+\.(\d+)"),
    "kselftests": re.compile(r"\.(?:build|entry)-[0-9a-f]+-(\d+)-[0-9a-f]+"),
    "trees": re.compile(r"\.import-(\d+)-.*"),
}


@dataclass(frozen=True)
class Private:
    pid: int


def private(kind: str, name: str) -> Private | None:
    """The work in progress `name` is, when it is one."""
    rx = _PRIVATE.get(kind)
    m = rx.fullmatch(name) if rx else None
    return Private(int(m.group(1))) if m else None
