"""What the cache holds (`orch cache du`): per kind, the room it takes, its
entries, and when they were last used.

Room is what the disk gives the files (st_blocks * 512, as `du -s
--block-size=1` counts), hard links once, links never followed, no other
file system entered (`du -x`). An entry's last use is its lock file's mtime
(core.cache_use.use() stamps it), else, for an entry no orch has used since
locks came in, the entry's own mtime.

Everything in the cache is untrusted: names are printed cleaned, nothing is
opened but directories, no link is followed (a kind's directory that is a
link is counted as a link, under other, and not walked).
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import cache_use
from orchestrator.core.sanitize import clean
from orchestrator.store import kinds


@dataclass
class Entry:
    kind: str
    key: str                 # its name in the kind's directory (untrusted)
    path: Path
    bytes: int
    last_used: float         # seconds since the epoch
    stamped: bool            # last_used is a use's stamp, not the entry's own mtime
    private: kinds.Private | None = None   # work in progress of a pid

    @property
    def name(self) -> str:
        return f"{self.kind}/{clean(self.key, 100)}"


@dataclass
class KindUsage:
    kind: str
    bytes: int = 0           # its directory and everything in it
    entries: list[Entry] = field(default_factory=list)
    files: int = 0           # files under it (what `du` of ccache counts)
    newest: float | None = None   # ccache, other: the newest mtime in it
    notes: list[str] = field(default_factory=list)

    @property
    def oldest_use(self) -> float | None:
        return min((e.last_used for e in self.entries), default=None)

    @property
    def newest_use(self) -> float | None:
        if self.entries:
            return max(e.last_used for e in self.entries)
        return self.newest


@dataclass
class Usage:
    cache: Path
    kinds: dict[str, KindUsage]
    total: int               # the whole cache directory, as `du -sx --block-size=1`
    seconds: float           # how long the scan took
    exists: bool = True

    def entries(self) -> list[Entry]:
        return [e for k in kinds.ENTRIES for e in self.kinds[k].entries]


class _Walk:
    """Sizes under one device, each inode once."""

    def __init__(self, dev: int):
        self.dev = dev
        self.seen: set[tuple[int, int]] = set()
        self.errors = 0

    def blocks(self, st: os.stat_result) -> int:
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            ino = (st.st_dev, st.st_ino)
            if ino in self.seen:
                return 0
            self.seen.add(ino)
        return st.st_blocks * 512

    def tree(self, path: str, st: os.stat_result) -> tuple[int, int, float]:
        """(bytes, files, newest mtime) of `path` (lstat `st`) and all under it."""
        total, files, newest = self.blocks(st), 0, st.st_mtime
        if not stat.S_ISDIR(st.st_mode):
            return total, 1, newest
        todo = [path]
        while todo:
            d = todo.pop()
            try:
                it = os.scandir(d)
            except OSError:
                self.errors += 1
                continue
            with it:
                for e in it:
                    try:
                        est = e.stat(follow_symlinks=False)
                    except OSError:
                        self.errors += 1
                        continue
                    total += self.blocks(est)
                    newest = max(newest, est.st_mtime)
                    if stat.S_ISDIR(est.st_mode):
                        if est.st_dev == self.dev:
                            todo.append(e.path)
                    else:
                        files += 1
        return total, files, newest


def last_use(cache: Path, kind: str, key: str, st: os.stat_result) -> tuple[float, bool]:
    """(when entry `key` of `kind` was last used, whether a use stamped it)."""
    try:
        lst = os.lstat(cache_use.lock_path(kind, key, cache))
        if stat.S_ISREG(lst.st_mode):
            return lst.st_mtime, True
    except (OSError, ValueError):
        pass
    return st.st_mtime, False


def scan(cache: Path) -> Usage:
    """The cache as it is now. A cache that does not exist is empty."""
    t0 = time.monotonic()
    out = {k: KindUsage(k) for k in kinds.ORDER}
    try:
        top = os.lstat(cache)
    except FileNotFoundError:
        return Usage(cache, out, 0, time.monotonic() - t0, exists=False)
    if not stat.S_ISDIR(top.st_mode):
        raise NotADirectoryError(f"{cache} is not a directory")
    walk = _Walk(top.st_dev)
    total = walk.blocks(top)
    with os.scandir(cache) as it:
        names = sorted((e.name, e.path) for e in it)
    # Kinds first, in their order, so a hard link across them counts where
    # du would meet it first... in name order, as du walks; close enough.
    for name, path in names:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if name in kinds.ENTRIES and stat.S_ISDIR(st.st_mode) and st.st_dev == walk.dev:
            total += _kind(cache, name, path, st, walk, out[name])
        elif name == kinds.CCACHE and stat.S_ISDIR(st.st_mode) and st.st_dev == walk.dev:
            k = out[kinds.CCACHE]
            k.bytes, k.files, k.newest = walk.tree(path, st)
            total += k.bytes
        else:
            k = out[kinds.OTHER]
            if name in kinds.ORDER:
                k.notes.append(f"{name} is not a directory of this file system: "
                               "counted here, not walked")
            size, files, newest = walk.tree(path, st) if st.st_dev == walk.dev else (0, 0, 0.0)
            k.bytes += size
            k.files += files
            k.newest = max(k.newest or 0.0, newest)
            total += size
    if walk.errors:
        out[kinds.OTHER].notes.append(f"{walk.errors} files or directories could not be read")
    return Usage(cache, out, total, time.monotonic() - t0)


def _kind(cache: Path, kind: str, path: str, st: os.stat_result, walk: _Walk,
          ku: KindUsage) -> int:
    ku.bytes = walk.blocks(st)
    try:
        it = os.scandir(path)
    except OSError:
        walk.errors += 1
        return ku.bytes
    with it:
        children = sorted((e.name, e.path) for e in it)
    for name, p in children:
        try:
            est = os.lstat(p)
        except OSError:
            continue
        size, files, _newest = walk.tree(p, est) if est.st_dev == walk.dev else (0, 0, 0.0)
        used, stamped = last_use(cache, kind, name, est)
        ku.entries.append(Entry(kind, name, Path(p), size, used, stamped,
                                kinds.private(kind, name)))
        ku.bytes += size
        ku.files += files
    return ku.bytes


def size_of(path: Path) -> tuple[int, int]:
    """(bytes, files) of one directory of the cache, as scan() counts them."""
    st = os.lstat(path)
    size, files, _ = _Walk(st.st_dev).tree(str(path), st)
    return size, files


# -- what `orch cache du` prints ---------------------------------------------------------


def text(u: Usage, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if not u.exists:
        return f"cache {u.cache}: none yet (nothing cached)"
    rows = [("kind", "size", "entries", "oldest use", "newest use")]
    for k in kinds.ORDER:
        ku = u.kinds[k]
        count = str(len(ku.entries)) if k in kinds.ENTRIES else f"{ku.files} files"
        rows.append((k, cache_use.human(ku.bytes), count, _ago(ku.oldest_use, now),
                     _ago(ku.newest_use, now)))
    rows.append(("total", cache_use.human(u.total), str(len(u.entries())), "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"cache {u.cache}"]
    for r in rows:
        lines.append(f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  "
                     f"{r[3]:>{widths[3]}}  {r[4]:>{widths[4]}}".rstrip())
    for k in kinds.ORDER:
        for note in u.kinds[k].notes:
            lines.append(f"  note: {note}")
    return "\n".join(lines)


def _ago(t: float | None, now: float) -> str:
    return "-" if t is None else cache_use.human_age(now - t) + " ago"


def as_json(u: Usage) -> dict:
    def stamp(t: float | None) -> str | None:
        return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    out = {"cache": str(u.cache), "total": {"bytes": u.total, "entries": len(u.entries())},
           "kinds": {}, "seconds": round(u.seconds, 3)}
    for k in kinds.ORDER:
        ku = u.kinds[k]
        out["kinds"][k] = {"bytes": ku.bytes, "entries": len(ku.entries), "files": ku.files,
                           "oldest_use": stamp(ku.oldest_use),
                           "newest_use": stamp(ku.newest_use), "notes": ku.notes}
    return out
