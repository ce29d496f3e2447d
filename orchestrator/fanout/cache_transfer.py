"""Kernels and kept baseline results, carried between CI runners by key.

A baseline job exports its finished kernel (the kernel cache entry:
bzImage, config, System.map, warning record, banner, sha256) and the kept
results of its boot (result_cache's entry) into SHARD/export/ (the engine
uploads the shard as an artifact); a series job imports it into its own
cache and so boots no baseline.

Every file is listed in export/manifest.json with its sha256. On import each
entry is copied aside, checked file by file, and only then renamed into the
cache; a kernel entry must also pass the kernel cache's own check (its
bzImage against its sha256 file). An entry that fails is not imported and
says why: the series job then builds that kernel itself, never boots the
broken one. A kernel the local cache already holds intact is left as it is;
kept results are replaced (the export is tonight's boot).

What is imported is what was planned, from where it was planned, nothing
else (import_shard):
  - the shard is the series job's own baseline job's: its job.json names
    that job (the `needs` of the series job), the same tree, config and plan;
  - only SHARD/export/manifest.json is read, never a manifest.json found
    elsewhere (a guest writes its results directory inside a shard);
  - only entries that job.json says the job exported, of the kinds kernels
    and results, one of each: a manifest naming anything else is answered
    with a line saying it was skipped, and so is any other file or directory
    in the export.
Everything in a shard is read as untrusted: directories and files are
opened one component at a time without following a link (O_NOFOLLOW),
regular files only (never a FIFO or a device), each with a size cap, JSON
through untrusted.load_json.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import untrusted
from orchestrator.core.paths import cache_dir
from orchestrator.core.sanitize import clean
from orchestrator.fanout.jobfiles import EXPORT, JOB_FILE
from orchestrator.guest import result_cache
from orchestrator.kernel import kcache

MANIFEST = "manifest.json"
KINDS = ("kernels", "results")
_KEY = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_SHA = re.compile(r"[0-9a-f]{64}")
# The files each kind of entry holds (kcache.store, result_cache.store).
KERNEL_FILES = frozenset({"bzImage", "config", "System.map", "warnings.json", "banner", "sha256",
                          "origin"})
RESULT_FILES = frozenset({*result_cache.FILES, "console.log", "meta.json"})
# What the readers of an entry open without asking (kcache.lookup,
# result_cache.load): an entry without them is not one orch wrote.
REQUIRED = {"kernels": frozenset({"bzImage", "sha256"}),
            "results": frozenset({"meta.json", "console.log"})}
MAX_FILE = 512 << 20         # a bzImage (kimage.MAX_IMAGE)
MAX_OTHER = 64 << 20         # any other file: System.map, a console log
MAX_ENTRY_JSON = 16 << 20    # a warning record, meta.json, a guest's JSON (result_cache.MAX_FILE)
MAX_FILES = 256              # per entry
MAX_JSON = 1 << 20           # manifest.json and job.json are a few KiB
MAX_SKIPPED = 20             # lines saying what was skipped, per shard


@dataclass(frozen=True)
class Planned:
    """What a series job may import: its baseline job's export."""
    job: str                 # the baseline job's id (the series job's `needs`)
    tree: str
    config: str
    plan_digest: str


class Refused(Exception):
    """A file or directory of a shard that is not read (a link, not a
    regular file, too big, missing)."""


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


def import_shard(shard: Path, planned: Planned) -> list[str]:
    """Take the planned entries of a baseline job's shard (SHARD/export/)
    into this cache; one line per entry, and one per thing skipped."""
    try:
        keys = _exported_keys(shard, planned)
        export = _open_dir(shard, EXPORT)
    except Refused as e:
        return _shown([f"{shard}: {e}; nothing imported"])
    try:
        return _shown(_import_export(export, keys, shard / EXPORT))
    finally:
        os.close(export)


def import_dir(export: Path, keys: set[str]) -> list[str]:
    """Take the entries `keys` ("kernels/KEY", "results/KEY") of an export
    directory into this cache (import_shard, its keys given)."""
    try:
        fd = _open_dir(export.parent, export.name)
    except Refused as e:
        return _shown([f"{export.parent}: {e}; nothing imported"])
    try:
        return _shown(_import_export(fd, keys, export))
    finally:
        os.close(fd)


def _shown(lines: list[str]) -> list[str]:
    """The lines are printed and kept in job.json, and hold names a shard
    chose: no control characters, no line breaks, not too long."""
    return [re.sub(r"[\t\n\r]", "?", clean(line, 400)) for line in lines]


def _exported_keys(shard: Path, planned: Planned) -> set[str]:
    """What the shard's job.json says its job exported, when that job is
    the planned baseline job: one kernel and the kept results of its boot."""
    rec = _load_json(shard, JOB_FILE)
    job = rec.get("job") if isinstance(rec, dict) else None
    if not isinstance(job, dict):
        raise Refused(f"{JOB_FILE} is not an orch job record")
    seen = (job.get("id"), job.get("kind"), job.get("tree"), job.get("config"),
            rec.get("plan_digest"))
    if seen != (planned.job, "baseline", planned.tree, planned.config, planned.plan_digest):
        raise Refused(f"the shard of job {str(job.get('id'))[:60]!r}, not of this job's "
                      f"baseline job {planned.job} of this plan")
    exported = rec.get("exported")
    exported = [e for e in exported if isinstance(e, str)] if isinstance(exported, list) else []
    keys = set()
    for kind in KINDS:
        mine = [e for e in exported if e.partition("/")[0] == kind
                and _KEY.fullmatch(e.partition("/")[2])]
        if len(mine) == 1:
            keys.add(mine[0])
    if not keys:
        raise Refused(f"{JOB_FILE} names no kernel or results it exported")
    return keys


def _import_export(export: int, keys: set[str], where: Path) -> list[str]:
    """The planned entries of the export's manifest; a line for each thing
    the manifest or the export holds besides them."""
    try:
        manifest = untrusted.load_json(_read_small(export, MANIFEST, MAX_JSON).decode())
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except (Refused, ValueError, RecursionError) as e:
        return [f"{where}: no usable {MANIFEST} ({e}); nothing imported"]
    lines: list[str] = []
    skipped: list[str] = []
    for kind, entries in sorted(manifest.items()):
        if kind not in KINDS or not isinstance(entries, dict):
            skipped.append(f"{where}: skipped {kind[:60]!r} of its {MANIFEST}: " +
                           ("not a kind of entry orch imports" if kind not in KINDS
                            else "not a table of entries"))
            continue
        for key, files in sorted(entries.items()):
            if f"{kind}/{key}" in keys:
                lines.append(f"{kind}/{key}: " + _import_entry(export, kind, key, files))
            else:
                skipped.append(f"{kind}/{key[:60]}: skipped: not what the baseline job "
                               "exported")
    for entry in sorted(keys):
        kind, _, key = entry.partition("/")
        listed = manifest.get(kind)
        if not isinstance(listed, dict) or key not in listed:
            lines.append(f"{entry}: not imported: not in the export's {MANIFEST}")
    skipped += _unlisted(export, manifest, keys, where)
    if len(skipped) > MAX_SKIPPED:
        skipped[MAX_SKIPPED:] = [f"{where}: and {len(skipped) - MAX_SKIPPED} more skipped"]
    return lines + skipped


def _unlisted(export: int, manifest: dict, keys: set[str], where: Path) -> list[str]:
    """What the export holds that its manifest does not list (never read):
    one line each."""
    out = []
    for name, is_dir in _names(export):
        if name == MANIFEST:
            continue
        if name not in KINDS or not is_dir:
            out.append(f"{where}/{name}: skipped: not part of an export")
            continue
        listed = manifest.get(name) if isinstance(manifest.get(name), dict) else {}
        try:
            with _Dir(export, name) as kind_dir:
                out += _unlisted_in_kind(kind_dir.fd, name, listed, keys, where)
        except (Refused, OSError) as e:
            out.append(f"{where}/{name}: skipped: {e}")
    return out


def _unlisted_in_kind(kind_dir: int, kind: str, listed: dict, keys: set[str],
                      where: Path) -> list[str]:
    out = []
    for key, is_dir in _names(kind_dir):
        if key not in listed or not is_dir:
            out.append(f"{where}/{kind}/{key}: skipped: not an entry of its {MANIFEST}")
        elif f"{kind}/{key}" in keys and isinstance(listed[key], dict):
            with _Dir(kind_dir, key) as entry:
                out += [f"{where}/{kind}/{key}/{f}: skipped: not in its {MANIFEST}"
                        for f, _ in _names(entry.fd) if f not in listed[key]]
    return out


def _import_entry(export: int, kind: str, key: str, files) -> str:
    if not _KEY.fullmatch(key) or not isinstance(files, dict) or not files:
        return "not imported: not an entry orch writes"
    if len(files) > MAX_FILES:
        return f"not imported: more than {MAX_FILES} files"
    for name, want in files.items():
        if not _orch_file(kind, name) or not _SHA.fullmatch(str(want)):
            return f"not imported: {name[:100]!r} is not a file orch writes"
    if not REQUIRED[kind] <= files.keys():
        return f"not imported: it has no {', '.join(sorted(REQUIRED[kind] - files.keys()))}"
    dest = cache_dir() / kind / key
    if kind == "kernels" and dest.exists() and kcache.lookup(key)[0] == "ok":
        return "already here"
    try:
        with _Dir(export, kind) as kind_dir, _Dir(kind_dir.fd, key) as src:
            why = _take(src.fd, kind, key, files)
    except Refused as e:
        why = f"not imported: {e}"
    if why:
        return why
    if kind == "kernels":
        # The manifest could have been written over a broken entry: the
        # kernel cache's own check (bzImage vs its sha256, the banner) too.
        state, why = kcache.lookup(key)
        if state != "ok":
            shutil.rmtree(dest, ignore_errors=True)
            return f"not imported: the kernel cache refused it ({state}: {why})"
    return "imported"


def _orch_file(kind: str, name: str) -> bool:
    if kind == "kernels":
        return name in KERNEL_FILES
    return (name in RESULT_FILES or result_cache.kept(name)
            or bool(_NAME.fullmatch(name)) and name.endswith(".json"))


def _take(src: int, kind: str, key: str, files: dict) -> str:
    """Copy the entry aside, check each file, then rename it into the
    cache; "" when done, else why not."""
    # Kept results are replaced: the export holds tonight's boot, and an
    # older boot of the same kernel on this runner must not answer for it.
    tmp = cache_dir() / kind / f".import-{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, want in sorted(files.items()):
            if _copy_from(src, name, tmp / name, _cap(name)) != want:
                return f"not imported: {name} failed its checksum"
            why = _json_why(tmp / name)
            if why:
                return f"not imported: {name} {why}"
        dest = cache_dir() / kind / key
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
        return ""
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cap(name: str) -> int:
    if name == "bzImage":
        return MAX_FILE
    return MAX_ENTRY_JSON if name.endswith(".json") else MAX_OTHER


def _json_why(path: Path) -> str:
    """Why a JSON file of an entry is not what orch wrote ("" when it is):
    the cache's readers parse it with plain json.loads and index it, so it
    is checked here, strictly (untrusted.load_json), before it gets there."""
    if path.suffix != ".json":
        return ""
    try:
        data = untrusted.load_json(path.read_bytes().decode())
    except (ValueError, RecursionError) as e:
        return f"is not acceptable JSON ({str(e)[:100]})"
    if path.name == "meta.json" and not (
            isinstance(data, dict) and isinstance(data.get("accel"), str)
            and type(data.get("seconds")) in (int, float)
            and type(data.get("vng_rc", 0)) is int):
        return "is not a kept boot's record"
    return ""


# --- reading a shard: no links, regular files only, capped ----------------------

class _Dir:
    """A directory of a shard, opened relative to its parent without
    following a link: `with _Dir(parent_fd, name) as d: ... d.fd`."""

    def __init__(self, parent: int, name: str) -> None:
        self.fd = _open_at(parent, name, os.O_DIRECTORY, "a directory")

    def __enter__(self) -> "_Dir":
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def _open_dir(parent: Path, name: str) -> int:
    """`parent` (a path orch was given) / `name`, a real directory."""
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise Refused(f"cannot be opened ({e.strerror})")
    try:
        return _open_at(fd, name, os.O_DIRECTORY, "a directory")
    finally:
        os.close(fd)


def _open_at(dir_fd: int, name: str, flags: int, what: str) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | flags, dir_fd=dir_fd)
    except OSError as e:
        try:
            link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            link = False
        if link:
            raise Refused(f"{name} is a symbolic link (not followed)")
        if e.errno == errno.ENOENT:
            raise Refused(f"{name} is missing")
        if e.errno == errno.ENOTDIR:
            raise Refused(f"{name} is not {what}")
        raise Refused(f"{name} cannot be opened ({e.strerror})")


def _open_file_at(dir_fd: int, name: str, cap: int) -> int:
    """A regular file of at most `cap` bytes (O_NONBLOCK: a FIFO cannot hang
    the open; fstat then refuses it)."""
    fd = _open_at(dir_fd, name, os.O_NONBLOCK, "a file")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > cap:
        os.close(fd)
        raise Refused(f"{name} is not a regular file" if not stat.S_ISREG(st.st_mode)
                      else f"{name} is larger than {cap >> 20} MiB")
    return fd


def _names(dir_fd: int) -> list[tuple[str, bool]]:
    """Each entry of a directory, and whether it is a directory (a link to
    one is not)."""
    with os.scandir(dir_fd) as it:
        return sorted((e.name[:100], e.is_dir(follow_symlinks=False)) for e in it)


def _read_small(dir_fd: int, name: str, cap: int) -> bytes:
    fd = _open_file_at(dir_fd, name, cap)
    try:
        data = b""
        while len(data) <= cap and (chunk := os.read(fd, cap + 1 - len(data))):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > cap:      # it grew after the check
        raise Refused(f"{name} is larger than {cap >> 20} MiB")
    return data


def _load_json(directory: Path, name: str):
    """A small JSON file of a directory orch was given (job.json)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise Refused(f"cannot be opened ({e.strerror})")
    try:
        return untrusted.load_json(_read_small(fd, name, MAX_JSON).decode())
    except (ValueError, RecursionError) as e:
        raise Refused(f"{name} is not JSON ({e})")
    finally:
        os.close(fd)


def _copy_from(dir_fd: int, name: str, dest: Path, cap: int) -> str:
    """Copy one file out of a shard, at most `cap` bytes; its sha256."""
    fd = _open_file_at(dir_fd, name, cap)
    h = hashlib.sha256()
    got = 0
    try:
        with open(dest, "wb") as out:
            while chunk := os.read(fd, 1 << 20):
                got += len(chunk)
                if got > cap:    # it grew after the check
                    raise Refused(f"{name} is larger than {cap >> 20} MiB")
                h.update(chunk)
                out.write(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()
