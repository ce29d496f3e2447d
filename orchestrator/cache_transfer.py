"""Kernels and kept baseline results, carried between CI runners by key.

A baseline job exports its finished kernel (the kernel cache entry:
bzImage, config, System.map, warning record, banner, sha256) and the kept
results of its boot (result_cache's entry) into a directory the engine
uploads as an artifact; a series job imports it into its own cache and so
boots no baseline.

Every file is listed in manifest.json with its sha256. On import each entry
is copied aside, checked file by file, and only then renamed into the cache;
a kernel entry must also pass the kernel cache's own check (its bzImage
against its sha256 file). An entry that fails is not imported and says why:
the series job then builds that kernel itself, never boots the broken one.
A kernel the local cache already holds intact is left as it is; kept results
are replaced (the export is tonight's boot).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from . import build
from .paths import cache_dir

MANIFEST = "manifest.json"
KINDS = ("kernels", "results")
_KEY = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
MAX_FILE = 512 << 20


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(entries: list[tuple[str, str]], dest: Path) -> list[str]:
    """Copy (kind, key) entries of this cache into dest; the manifest last,
    so a half-written export has none and imports nothing."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict[str, dict[str, str]]] = {k: {} for k in KINDS}
    done = []
    for kind, key in entries:
        src = cache_dir() / kind / key
        if not src.is_dir():
            continue
        out = dest / kind / key
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        files = {}
        for f in sorted(src.iterdir()):
            if f.is_file() and not f.is_symlink():
                shutil.copy2(f, out / f.name)
                files[f.name] = _sha(out / f.name)
        manifest[kind][key] = files
        done.append(f"{kind}/{key}")
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return done


def find_exports(roots: list[Path]) -> list[Path]:
    """Every export under these directories (an engine may nest artifacts)."""
    found = []
    for root in roots:
        if (root / MANIFEST).is_file():
            found.append(root)
        elif root.is_dir():
            found += sorted(p.parent for p in root.rglob(MANIFEST))
    return found


def import_dir(src: Path) -> list[str]:
    """Take src's entries into this cache; one line per entry."""
    try:
        manifest = json.loads((src / MANIFEST).read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as e:
        return [f"{src}: no readable {MANIFEST} ({e}); nothing imported"]
    lines = []
    for kind in KINDS:
        entries = manifest.get(kind) or {}
        if not isinstance(entries, dict):
            lines.append(f"{src}: {kind} is not a table; skipped")
            continue
        for key, files in sorted(entries.items()):
            lines.append(f"{kind}/{key}: " + _import_entry(src, kind, key, files))
    return lines


def _import_entry(src: Path, kind: str, key: str, files) -> str:
    if not _KEY.fullmatch(str(key)) or not isinstance(files, dict) or not files:
        return "not imported: not an entry orch writes"
    dest = cache_dir() / kind / key
    if kind == "kernels" and dest.exists() and build.cache_entry_state(key)[0] == "ok":
        return "already here"
    # Kept results are replaced: the export holds tonight's boot, and an
    # older boot of the same kernel on this runner must not answer for it.
    tmp = cache_dir() / kind / f".import-{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, want in files.items():
            f = src / kind / key / name
            if not _NAME.fullmatch(name) or f.is_symlink() or not f.is_file():
                return f"not imported: {name} is missing or not a plain file"
            if f.stat().st_size > MAX_FILE:
                return f"not imported: {name} is too big"
            shutil.copy2(f, tmp / name)
            if _sha(tmp / name) != want:
                return f"not imported: {name} failed its checksum"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if kind == "kernels":
        # The manifest could have been written over a broken entry: the
        # kernel cache's own check (bzImage vs its sha256, the banner) too.
        state, why = build.cache_entry_state(key)
        if state != "ok":
            shutil.rmtree(dest, ignore_errors=True)
            return f"not imported: the kernel cache refused it ({state}: {why})"
    return "imported"
