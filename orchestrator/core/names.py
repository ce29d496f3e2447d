"""Names made from text orch does not choose (Message-IDs, subjects, tree
labels): directory, file and CI job names that are safe anywhere."""

from __future__ import annotations

import re

SAFE = "A-Za-z0-9._-"


def slug(text: str, limit: int, *, empty: str = "x", keep: str = SAFE, sep: str = "_",
         strip: bool = True) -> str:
    """`text` with every run of characters outside `keep` replaced by
    `sep`, its ends stripped of ".", "_" and "-" (unless `strip` is False,
    for names that were never stripped), cut to `limit` characters, and
    `empty` when nothing is left.

    The names these make are on disk and in CI files already (run and cell
    directories, job ids, mbox and page names): each caller's arguments
    keep its names as they were."""
    name = re.sub(f"[^{keep}]+", sep, text)
    if strip:
        name = name.strip("._-")
    return name[:limit] or empty
