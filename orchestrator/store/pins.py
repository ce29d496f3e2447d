"""What the nightly's last nights keep in the cache: pins.

At the end of each night `orch nightly` writes cache/pins/<id>.json, <id>
from its --out directory:

    {"out": "/abs/out", "written": "...",
     "nights": {"2026-11-27": {"kernels": [KEY...], "kselftests": [...],
                               "results": [...]}, ...}}

for its last N nights (`keep_nights`): the kernels and kselftest installs
its cells' run.json name (each side's build.key and build.kselftests[].key),
and every kernel, kselftest install and kept result the night's own process
used (core.cache_use.used_since; kept results are named nowhere else). A
night that pin does not know yet (one killed and finished by another run)
is read from its cells alone.

gc keeps what the last N nights of each pin name whose --out still holds
them (out/nights/<night>/), and drops pins whose --out holds none of their
nights any more. A pin is untrusted: it can only keep entries, never make
gc remove or follow anything. Only keys of orch's own form are taken (32
hex digits), nights of the form YYYY-MM-DD, an absolute `out`; a pin that is
not a regular JSON file of a few MiB is dropped.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import jsonio, untrusted
from orchestrator.core.paths import cache_dir

PINS = "pins"
KINDS = ("kernels", "kselftests", "results")
NIGHT = re.compile(r"\d{4}-\d{2}-\d{2}")
KEY = re.compile(r"[0-9a-f]{32}")
MAX_PIN = 4 << 20
MAX_RECORD = 64 << 20        # a night.json or a cell's run.json
MAX_CELLS = 10000


def pin_path(out: Path, cache: Path | None = None) -> Path:
    digest = hashlib.sha256(str(out).encode()).hexdigest()[:32]
    return (cache or cache_dir()) / PINS / f"{digest}.json"


def nights_of(out: Path) -> list[str]:
    """The nights under `out`/nights/, oldest first."""
    try:
        names = os.listdir(out / "nights")
    except OSError:
        return []
    return sorted(n for n in names if NIGHT.fullmatch(n) and (out / "nights" / n).is_dir())


def keys_of_night(ndir: Path) -> dict[str, set[str]]:
    """The kernels and kselftest installs a night's cells' records name."""
    keys: dict[str, set[str]] = {k: set() for k in KINDS}
    try:
        night = jsonio.read(ndir / "night.json", MAX_RECORD)
    except (OSError, ValueError):
        return keys
    cells = night.get("cells") if isinstance(night, dict) else None
    for cell in (cells if isinstance(cells, list) else [])[:MAX_CELLS]:
        rd = cell.get("run_dir") if isinstance(cell, dict) else None
        if not isinstance(rd, str) or not rd or rd.startswith("/") or ".." in rd.split("/"):
            continue
        try:
            rec = jsonio.read(ndir / rd / "run.json", MAX_RECORD)
        except (OSError, ValueError):
            continue
        _record_keys(rec, keys)
    return keys


def _record_keys(rec: object, keys: dict[str, set[str]]) -> None:
    configs = rec.get("configs") if isinstance(rec, dict) else None
    for cfg in (configs if isinstance(configs, list) else []):
        for side in ("baseline", "patched"):
            build = _get(cfg, side, "build")
            if not isinstance(build, dict):
                continue
            _add(keys["kernels"], build.get("key"))
            ks = build.get("kselftests")
            for k in (ks if isinstance(ks, list) else []):
                _add(keys["kselftests"], k.get("key") if isinstance(k, dict) else None)


def _get(d: object, *path: str) -> object:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _add(into: set[str], key: object) -> None:
    if isinstance(key, str) and KEY.fullmatch(key):
        into.add(key)


def write(out: Path, night: str, keep_nights: int, used: list[tuple[str, str]],
          cache: Path | None = None) -> Path:
    """The pin of nightly directory `out` after `night`: its last
    `keep_nights` nights, `used` (what this night's process used) added to
    `night`'s."""
    out = Path(out).resolve()
    cache = cache or cache_dir()
    path = pin_path(out, cache)
    old = _read(path)
    old_nights = old.nights if old is not None and old.out == str(out) else {}
    nights: dict[str, dict[str, list[str]]] = {}
    for n in nights_of(out)[-max(keep_nights, 0):] if keep_nights > 0 else []:
        keys = keys_of_night(out / "nights" / n)
        for kind in KINDS:
            keys[kind] |= old_nights.get(n, {}).get(kind, set())
        if n == night:
            for kind, key in used:
                if kind in KINDS:
                    _add(keys[kind], key)
        nights[n] = {kind: sorted(keys[kind]) for kind in KINDS}
    jsonio.write(path, {"out": str(out), "written": dt.datetime.now(dt.UTC)
                        .strftime("%Y-%m-%dT%H:%M:%SZ"), "nights": nights})
    return path


@dataclass
class Pin:
    file: Path
    out: str
    nights: dict[str, dict[str, set[str]]] = field(default_factory=dict)


def _read(path: Path) -> Pin | None:
    """A pin file, checked; None when it is not one."""
    try:
        data = untrusted.load_json(untrusted.read_capped(path, MAX_PIN).decode())
    except (untrusted.UntrustedError, ValueError, UnicodeDecodeError):
        return None
    out = data.get("out") if isinstance(data, dict) else None
    nights = data.get("nights") if isinstance(data, dict) else None
    if not isinstance(out, str) or not out.startswith("/") or "\0" in out \
            or not isinstance(nights, dict):
        return None
    pin = Pin(path, out)
    for n, kinds in nights.items():
        if not (isinstance(n, str) and NIGHT.fullmatch(n) and isinstance(kinds, dict)):
            continue
        pin.nights[n] = {}
        for kind in KINDS:
            got = kinds.get(kind)
            keys: set[str] = set()
            for k in (got if isinstance(got, list) else []):
                _add(keys, k)
            pin.nights[n][kind] = keys
    return pin


@dataclass
class Kept:
    """What the pins keep: (kind, key) -> (the --out, the newest night)."""
    keys: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    pins: list[Pin] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)     # one line each


def load(keep_nights: int, cache: Path | None = None, dry_run: bool = False) -> Kept:
    """Every pin of `cache`, the last `keep_nights` of each one's nights that
    its --out still holds; stale and broken pins dropped (said, not
    removed, on a dry run)."""
    cache = cache or cache_dir()
    kept = Kept()
    pdir = cache / PINS
    try:
        st = os.lstat(pdir)
    except OSError:
        return kept
    if not stat.S_ISDIR(st.st_mode):
        kept.dropped.append(f"{pdir} is not a directory: no pin read")
        return kept
    for name in sorted(os.listdir(pdir)):
        path = pdir / name
        pin = _read(path) if name.endswith(".json") else None
        if pin is None:
            why = "not a pin orch wrote"
        else:
            there = [n for n in sorted(pin.nights)
                     if (Path(pin.out) / "nights" / n).is_dir()]
            if there:
                kept.pins.append(pin)
                for n in there[-keep_nights:] if keep_nights > 0 else []:
                    for kind, keys in pin.nights[n].items():
                        for k in keys:
                            prev = kept.keys.get((kind, k))
                            if prev is None or prev[1] < n:
                                kept.keys[(kind, k)] = (pin.out, n)
                continue
            why = f"{pin.out} no longer holds its nights"
        kept.dropped.append(f"pin {name}: {why}")
        if not dry_run:
            _unlink(pdir, name)
    return kept


def _unlink(pdir: Path, name: str) -> None:
    """Remove a pin (a link is removed itself; a directory is left)."""
    try:
        os.unlink(pdir / name)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EISDIR, errno.EPERM):
            raise
