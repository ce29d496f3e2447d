"""Out-of-tree kernel builds: sandboxed, ccache on, finished kernels cached.

A finished kernel is cached by (source tree id, final .config, toolchain):
running the same series again, or a second series on the same base, boots
the cached baseline instead of building it. The build directory itself is
long-lived per (tree, config) so the patched build is incremental on top
of the baseline's objects.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import (ccache_guard, ccache_stats, compiler_warnings, kconfig, kimage, proc,
               remote_ccache, sandbox)
from .errors import OrchError, Exit
from .jobserver import JobServer
from .kconfig import KConfig
from .models import Kernel
from .paths import cache_dir

BUILD_TIMEOUT = 3 * 3600
IMAGE = Path("arch/x86/boot/bzImage")
# Present while make runs in a build directory: if a build is killed, the
# next one finds it and removes what the killed build may have half-written.
MARKER = ".orch-building"
KEEP = {".config", ".orch-kconfig", MARKER, compiler_warnings.SNAPSHOT}


@functools.lru_cache(maxsize=None)
def toolchain_id() -> str:
    parts = []
    for argv in (["gcc", "--version"], ["ld", "--version"], ["make", "--version"]):
        r = proc.run(argv, timeout=30)
        parts.append(r.output.splitlines()[0] if r.output else argv[0])
    return " | ".join(parts)


def jobs() -> int:
    return (os.cpu_count() or 1) + 1


def build_env() -> dict[str, str]:
    ccache = cache_dir() / "ccache"
    ccache.mkdir(parents=True, exist_ok=True)
    # Fixed identity so a rebuild of the same source gives the same banner;
    # C locale so compiler messages compare across machines. ccache's depend
    # mode (hash from gcc's own -MMD output, no second preprocessor run) and
    # inode cache (each of a unit's ~300 headers hashed once, not per unit)
    # cut its cost on a miss from +50% to about +10% here.
    # base_dir is orch's cache: compile commands are hashed with paths
    # relative to it, so a ccache shared between machines (remote_ccache) or
    # restored by a CI engine elsewhere hits whatever path the cache has;
    # NOHASHDIR keeps the build directory's absolute path out of the hash (it
    # matters only for debug info, whose comp_dir then names the first
    # machine's path).
    return {"CCACHE_DIR": str(ccache), "CCACHE_DEPEND": "1", "CCACHE_INODECACHE": "1",
            "CCACHE_BASEDIR": str(cache_dir()), "CCACHE_NOHASHDIR": "1",
            "KBUILD_BUILD_USER": "orch", "KBUILD_BUILD_HOST": "orch", "LC_ALL": "C"}


@dataclass
class BuildOptions:
    sandbox: bool = True
    jobserver: JobServer | None = None
    status: Callable[[str | None], None] = lambda text: None
    timeout: float = BUILD_TIMEOUT


def cache_key(tree_id: str, dotconfig: Path) -> str:
    h = hashlib.sha256()
    h.update(tree_id.encode())
    h.update(dotconfig.read_bytes())
    h.update(toolchain_id().encode())
    return h.hexdigest()[:32]


def _complete_record(entry: Path) -> bool:
    rec = compiler_warnings.load(entry / "warnings.json")
    return bool(rec and rec.get("complete"))


def cache_entry_state(key: str) -> tuple[str, str]:
    """(state, why): absent, ok, old (kept by an orch without warning
    records: build it once more), corrupt (truncated or half-copied) or
    stale (its payload is another build's kernel); corrupt and stale entries
    are removed, rebuilt, never booted."""
    d = cache_dir() / "kernels" / key
    if not d.exists():
        return "absent", ""
    img, sums = d / "bzImage", d / "sha256"
    if img.exists() and not _complete_record(d):
        return "old", "has no warning record"
    if not (img.exists() and sums.exists()) or \
            hashlib.sha256(img.read_bytes()).hexdigest() != sums.read_text().strip():
        shutil.rmtree(d, ignore_errors=True)
        return "corrupt", "failed its checksum"
    if not (d / "banner").exists():
        # Kept by an orch that did not check its images (ccache could link
        # a stale piggy.o then): check it once, header against payload.
        try:
            banner = kimage.image_banner(img)
        except kimage.ImageError as e:
            shutil.rmtree(d, ignore_errors=True)
            return "stale", str(e)
        (d / "banner").write_text(banner.text + "\n")
    return "ok", ""


def _store(key: str, builddir: Path, warnings: dict | None, banner: kimage.Banner) -> Path:
    root = cache_dir() / "kernels"
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for src, name in ((IMAGE, "bzImage"), (Path(".config"), "config"),
                      (Path("System.map"), "System.map")):
        if (builddir / src).exists():
            shutil.copy2(builddir / src, tmp / name)
    if warnings is not None:
        (tmp / "warnings.json").write_text(json.dumps(warnings))
    (tmp / "banner").write_text(banner.text + "\n")
    # The checksum goes last: an entry without it is incomplete.
    (tmp / "sha256").write_text(hashlib.sha256((tmp / "bzImage").read_bytes()).hexdigest())
    dest = root / key
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    return dest


def recover_interrupted(builddir: Path) -> int:
    """Remove what a killed build left: every file written after it started.

    make deletes a target whose recipe fails, but not one whose writer was
    SIGKILLed; such a truncated object is newer than its source, so make
    would link it. Removing all files newer than the marker is exact and
    cheap (ccache gives them back).
    """
    marker = builddir / MARKER
    if not marker.exists():
        return 0
    since = marker.stat().st_mtime
    removed = 0
    for dirpath, dirnames, filenames in os.walk(builddir):
        for name in filenames:
            f = Path(dirpath) / name
            if f.parent == builddir and name in KEEP:
                continue
            try:
                if f.lstat().st_mtime >= since:
                    f.unlink()
                    removed += 1
            except OSError:
                pass
    marker.unlink(missing_ok=True)
    return removed


def _maker(builddir: Path, opts: BuildOptions, env: dict[str, str], on_line=None,
           remote: remote_ccache.Remote | None = None,
           ) -> Callable[[list[str], Path, Path], proc.Result]:
    """Runs make, sandboxed, as a jobserver client (or with -jN)."""
    ccache = Path(env["CCACHE_DIR"])
    shared_r, shared_w = remote_ccache.view_paths(remote)

    def make(argv: list[str], log: Path, src: Path, timeout: float = 600) -> proc.Result:
        menv = dict(env)
        fds: tuple[int, ...] = ()
        if opts.jobserver is not None:
            menv["MAKEFLAGS"] = opts.jobserver.makeflags()
            fds = opts.jobserver.fds
        else:
            argv = [*argv, f"-j{jobs()}"]
        if opts.sandbox:
            # The worktree, orch's compiler wrapper (its directory: an orch
            # cloned under /tmp is otherwise hidden by the private /tmp), the
            # build directory and ccache; nothing else of the host, and of
            # the environment only what orch sets (menv) and the locale.
            # The worktree's git metadata is not in the view (for --tree it
            # is the developer's whole repository), so setlocalversion adds
            # no "+" to the release: 7.2.13, not 7.2.13+.
            # A shared ccache: its socket (or directory) too.
            view = sandbox.View(readable=(src, ccache_guard.GUARD.parent, *shared_r),
                                writable=(builddir, ccache, *shared_w), env=menv)
            return sandbox.run(argv, view, src, log=log, timeout=timeout, append=True,
                               pass_fds=fds, on_line=on_line)
        return proc.run(argv, cwd=src, log=log, timeout=timeout, env=menv, append=True,
                        pass_fds=fds, on_line=on_line)
    return make


def build(src: Path, builddir: Path, kc: KConfig, tree_id: str, log: Path,
          side: str, opts: BuildOptions | None = None) -> Kernel:
    """Build (or find cached) the kernel of `src` at tree `tree_id`.

    Raises OrchError with INFRA for the baseline, PATCHED_BUILD for the
    patched side: a broken baseline is not the series' fault.
    """
    opts = opts or BuildOptions()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    t0 = time.monotonic()
    snap = compiler_warnings.load(builddir / compiler_warnings.SNAPSHOT)
    if (builddir / "vmlinux").exists() and not (snap and snap.get("complete")):
        # Built by an orch that kept no (complete) warning record: without
        # one the warning diff cannot be complete; rebuild once (from ccache).
        shutil.rmtree(builddir)
        with open(log, "a") as f:
            f.write("# orch: build directory had no warning record; rebuilt once\n")
    builddir.mkdir(parents=True, exist_ok=True)
    removed = recover_interrupted(builddir)
    if removed:
        with open(log, "a") as f:
            f.write(f"# orch: the last build here was interrupted; removed the {removed} "
                    "files it wrote\n")
    env = build_env()
    (builddir / ".tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(builddir / ".tmp")
    remote = _shared_ccache(side, opts, log)
    if remote is not None:
        env["CCACHE_REMOTE_STORAGE"] = remote.storage()
    try:
        dotconfig = kconfig.configure(src, builddir, kc, log,
                                      make=_maker(builddir, opts, env, remote=remote))
    except OrchError as e:
        code = e.exit
        if code == Exit.INFRA and side == "patched":
            code = Exit.PATCHED_BUILD  # the series broke Kconfig
        raise OrchError(f"{side} build of config {kc.name} failed: {e}", code)
    key = cache_key(tree_id, dotconfig)
    state, why = cache_entry_state(key)
    if state == "ok":
        hit = cache_dir() / "kernels" / key
        with open(log, "a") as f:
            f.write(f"# cached kernel {hit}\n")
        return Kernel(kc.name, hit / "bzImage", hit / "config", True,
                      time.monotonic() - t0, log, key=key,
                      warnings=compiler_warnings.load(hit / "warnings.json"),
                      banner=(hit / "banner").read_text().strip())
    if state != "absent":
        with open(log, "a") as f:
            f.write(f"# orch: cached kernel {key} {why}; rebuilding\n")
    if state == "stale":
        # The stale object may still sit in this directory: relinking from
        # vmlinux regenerates everything downstream of it (piggy.S included).
        _unlink_image(builddir)

    full = not (builddir / "vmlinux").exists()
    statslog = builddir / ".orch-ccache-stats.log"
    statslog.unlink(missing_ok=True)
    env["CCACHE_STATSLOG"] = str(statslog)
    (builddir / ccache_guard.LOG).unlink(missing_ok=True)
    env["ORCH_UNCACHED_LOG"] = str(builddir / ccache_guard.LOG)
    risky = ccache_guard.headers_with_directives(src, tree_id)
    if risky:
        env["CCACHE_DISABLE"] = "1"
        with open(log, "a") as f:
            f.write("# orch: ccache off for this build: these headers pull files in with "
                    f"assembler directives ccache cannot see: {', '.join(risky[:10])}\n")
    count = [0]

    def on_line(line: str) -> None:
        if line.startswith("  CC ") or line.startswith("  AS "):
            count[0] += 1
            opts.status(f"{side} {kc.name}: {count[0]} compiled, {line.split()[-1][-40:]}")
    (builddir / MARKER).write_text(f"{os.getpid()}\n")
    make = _maker(builddir, opts, env, on_line, remote)
    try:
        r = make([*kconfig.make_base(builddir), f"CC={ccache_guard.cc()}", "bzImage"], log, src,
                 timeout=opts.timeout)
    finally:
        opts.status(None)
    if not r.timed_out:
        # make removed the target of any failed recipe itself.
        (builddir / MARKER).unlink(missing_ok=True)
    stats = ccache_stats.read(statslog)
    if statslog.exists():
        shutil.copy2(statslog, log.with_suffix(".ccache-stats"))
    if not r.ok or not (builddir / IMAGE).exists():
        what = f"timed out after {opts.timeout:.0f}s" if r.timed_out else "failed"
        raise OrchError(f"{side} build of config {kc.name} {what}: "
                        f"{first_error(log)} (see {log})",
                        Exit.INFRA if side == "baseline" else Exit.PATCHED_BUILD)
    try:
        banner = kimage.verify(builddir / IMAGE, builddir / "vmlinux")
    except (kimage.ImageError, OSError) as e:
        _unlink_image(builddir)
        raise OrchError(f"{side} build of config {kc.name} is not the kernel it built: {e}; "
                        "not cached, not booted (run again: it relinks)", Exit.INFRA)
    with open(log, "a") as f:
        f.write(f"# orch: the bzImage holds the kernel just built: {banner.text}\n")
    built = compiler_warnings.parse_log(log.read_text(errors="replace"), src, builddir)
    snapshot = compiler_warnings.update(builddir, built, full)
    stored = _store(key, builddir, snapshot, banner)
    return Kernel(kc.name, stored / "bzImage", stored / "config", False,
                  time.monotonic() - t0, log, key=key, warnings=snapshot, ccache=stats,
                  compiled=count[0], banner=banner.text,
                  uncached=ccache_guard.read_log(builddir, src))


def _shared_ccache(side: str, opts: BuildOptions, log: Path) -> remote_ccache.Remote | None:
    """The shared ccache this build gets (remote_ccache), said in its log;
    one that is not there is skipped, not a failed build."""
    remote = remote_ccache.for_build(side, opts.sandbox)
    if remote is None:
        return None
    where = remote.socket or remote.directory
    with open(log, "a") as f:
        if where is not None and not where.exists():
            f.write(f"# orch: shared ccache {remote.describe()} is not there; "
                    "building without it\n")
            return None
        f.write(f"# orch: shared ccache {remote.describe()}\n")
    return remote


def _unlink_image(builddir: Path) -> None:
    """Make the next build relink: vmlinux and everything made from it."""
    for f in ("vmlinux", str(IMAGE)):
        (builddir / f).unlink(missing_ok=True)


_ERR = re.compile(r"(: error: |: fatal error: |^make(\[\d+\])?: \*\*\*|No space left on device)")


def first_error(log: Path) -> str:
    """The first line that says what broke; disk full says so plainly."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "see the log"
    if "No space left on device" in text:
        return "disk full (No space left on device)"
    for line in text.splitlines():
        if _ERR.search(line) and not line.startswith("$ "):
            return line.strip()[:200]
    return "see the log"
