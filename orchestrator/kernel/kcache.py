"""The kernel cache: finished kernels, kept by (source tree id, final
.config, toolchain).

An entry is cache/kernels/KEY/: bzImage, config, System.map (when the build
left a plain one), warnings.json (the build directory's warning record),
banner (the image's checked banner), origin (who built it) and sha256 (of
the bzImage). An entry is made in a private directory beside the others
(new_entry) and renamed into place whole (store); only an entry that
lookup finds ok is booted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from orchestrator.core import cache_use, proc
from orchestrator.core.paths import cache_dir
from orchestrator.kernel import compiler_warnings, kimage


class State(StrEnum):
    """What lookup found (a str: callers that compare with "ok" still can)."""
    ABSENT = "absent"
    OK = "ok"
    OLD = "old"            # kept by an orch without warning records: build it once more
    CORRUPT = "corrupt"    # truncated or half-copied
    STALE = "stale"        # its payload is another build's kernel
    SERIES = "series"      # a baseline lookup found a series' build's kernel


class Origin(StrEnum):
    # Entries say who built them: a baseline lookup takes only a baseline
    # build's kernel, never one a series' build made from the same tree.
    BASELINE = "baseline"
    SERIES = "series"


@dataclass(frozen=True)
class Entry:
    """An entry in place: what a Kernel is made of."""
    path: Path

    @property
    def image(self) -> Path:
        return self.path / "bzImage"

    @property
    def config(self) -> Path:
        return self.path / "config"

    def warnings(self) -> dict | None:
        return compiler_warnings.load(self.path / "warnings.json")

    def banner(self) -> str:
        return (self.path / "banner").read_text().strip()


def root() -> Path:
    return cache_dir() / "kernels"


def entry(key: str) -> Entry:
    return Entry(root() / key)


@functools.cache
def toolchain_id() -> str:
    parts = []
    for argv in (["gcc", "--version"], ["ld", "--version"], ["make", "--version"]):
        r = proc.run(argv, timeout=30)
        parts.append(r.output.splitlines()[0] if r.output else argv[0])
    return " | ".join(parts)


def cache_key(tree_id: str, dotconfig: Path) -> str:
    h = hashlib.sha256()
    h.update(tree_id.encode())
    h.update(dotconfig.read_bytes())
    h.update(toolchain_id().encode())
    return h.hexdigest()[:32]


def _complete_record(entry: Path) -> bool:
    rec = compiler_warnings.load(entry / "warnings.json")
    return bool(rec and rec.get("complete"))


def lookup(key: str, baseline: bool = False) -> tuple[State, str]:
    """(state, why): absent, ok, old (kept by an orch without warning
    records: build it once more), corrupt (truncated or half-copied),
    stale (its payload is another build's kernel), or, for a `baseline`
    lookup, series (built by a series' build: a baseline builds its own);
    corrupt and stale entries are removed, rebuilt, never booted. The
    entry is used (cache_use) before it is looked at: gc leaves it alone
    from then on, for the rest of this process."""
    cache_use.use("kernels", key)
    d = root() / key
    if not d.exists():
        return State.ABSENT, ""
    img, sums = d / "bzImage", d / "sha256"
    if img.exists() and not _complete_record(d):
        return State.OLD, "has no warning record"
    if not (img.exists() and sums.exists()) or \
            hashlib.sha256(img.read_bytes()).hexdigest() != sums.read_text().strip():
        shutil.rmtree(d, ignore_errors=True)
        return State.CORRUPT, "failed its checksum"
    if not (d / "banner").exists():
        # Kept by an orch that did not check its images (ccache could link
        # a stale piggy.o then): check it once, header against payload.
        try:
            banner = kimage.image_banner(img)
        except kimage.ImageError as e:
            shutil.rmtree(d, ignore_errors=True)
            return State.STALE, str(e)
        (d / "banner").write_text(banner.text + "\n")
    if baseline and origin(key) != Origin.BASELINE:
        return State.SERIES, "was built by a series' build, not a baseline build"
    return State.OK, ""


def origin(key: str) -> str:
    try:
        return (root() / key / "origin").read_text().strip()
    except OSError:
        return Origin.SERIES      # kept by an orch that did not say: not a baseline's


def new_entry(key: str) -> Path:
    """A fresh private directory for an entry to be filled, then stored."""
    root().mkdir(parents=True, exist_ok=True)
    tmp = root() / f".{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def store(key: str, tmp: Path, warnings: dict | None, banner: kimage.Banner,
          origin_: Origin) -> Entry:
    """Complete the entry filled in `tmp` (its bzImage and config) and put
    it in place of any entry of that key."""
    cache_use.use("kernels", key)
    if warnings is not None:
        (tmp / "warnings.json").write_text(json.dumps(warnings))
    (tmp / "banner").write_text(banner.text + "\n")
    (tmp / "origin").write_text(origin_ + "\n")
    # The checksum goes last: an entry without it is incomplete.
    (tmp / "sha256").write_text(hashlib.sha256((tmp / "bzImage").read_bytes()).hexdigest())
    dest = root() / key
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    return entry(key)
