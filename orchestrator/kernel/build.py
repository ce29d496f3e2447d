"""Out-of-tree kernel builds: sandboxed, ccache on, finished kernels cached.

A finished kernel is cached (kcache) by (source tree id, final .config,
toolchain): running the same series again, or a second series on the same
base, boots the cached baseline instead of building it. The build directory itself is
long-lived per (tree, config) so the patched build is incremental on top
of the baseline's objects.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from orchestrator.core import paths, proc, sandbox
from orchestrator.core.errors import Exit, OrchError
from orchestrator.core.jobserver import JobServer
from orchestrator.core.models import Kernel
from orchestrator.core.paths import cache_dir
from orchestrator.kernel import (
    buildtree,
    ccache_guard,
    ccache_stats,
    compiler_warnings,
    kcache,
    kconfig,
    kimage,
    remote_ccache,
)
from orchestrator.kernel.kconfig import KConfig

BUILD_TIMEOUT = 3 * 3600
IMAGE = "arch/x86/boot/bzImage"
# What orch reads back from a build directory, each with its cap.
MAX_IMAGE = 512 << 20
MAX_VMLINUX = kimage.MAX_VMLINUX     # searched as it is read, never held
MAX_LOG = 64 << 20
# Written by the build itself (ccache, orch's compiler wrapper), so read
# back as untrusted; removed in the view before each build.
STATSLOG = ".orch-ccache-stats.log"
# ccache reads $CCACHE_DIR/ccache.conf unless CCACHE_CONFIGPATH names
# another file: a series could otherwise set prefix_command there for every
# later build. This one is orch's, read-only in every view.
CCACHE_CONF = paths.DATA / "ccache.conf"


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
    return {"CCACHE_DIR": str(ccache), "CCACHE_CONFIGPATH": str(CCACHE_CONF),
            "CCACHE_DEPEND": "1", "CCACHE_INODECACHE": "1",
            "CCACHE_BASEDIR": str(cache_dir()), "CCACHE_NOHASHDIR": "1",
            "KBUILD_BUILD_USER": "orch", "KBUILD_BUILD_HOST": "orch", "LC_ALL": "C"}


@dataclass
class BuildOptions:
    sandbox: bool = True
    jobserver: JobServer | None = None
    status: Callable[[str | None], None] = lambda text: None
    timeout: float = BUILD_TIMEOUT


def recover_interrupted(bd: buildtree.BuildDir) -> int:
    """Remove what a killed build left in the trusted directory: every file
    written after it started.

    make deletes a target whose recipe fails, but not one whose writer was
    SIGKILLed; such a truncated object is newer than its source, so make
    would link it. Removing all files newer than the marker (in orch's
    notes) is exact and cheap (ccache gives them back). Links are removed
    themselves, never followed. (A layer with a killed build is thrown
    away whole: buildtree.current.)
    """
    marker = bd.meta / "building"
    if not marker.exists():
        return 0
    since = marker.stat().st_mtime
    removed = 0
    for dirpath, dirnames, filenames in os.walk(bd.path):
        for name in filenames:
            f = Path(dirpath) / name
            try:
                if f.lstat().st_mtime >= since:
                    f.unlink()
                    removed += 1
            except OSError:
                pass
    marker.unlink(missing_ok=True)
    return removed


def _maker(bd: buildtree.BuildDir, opts: BuildOptions, env: dict[str, str], on_line=None,
           remote: remote_ccache.Remote | None = None,
           extra_writable: tuple[Path, ...] = (),
           extra_overlays: tuple[sandbox.Overlay, ...] = (),
           ) -> Callable[[list[str], Path, Path], proc.Result]:
    """Runs make, sandboxed, as a jobserver client (or with -jN).

    `extra_writable`, `extra_overlays`: more of the view, for a step beside
    the kernel's build (kselftest_build: its scratch directory, and the
    worktree under a throwaway layer). Ignored with opts.sandbox off."""
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
        remove = tuple(bd.path / r for r in bd.take_removals())
        if opts.sandbox:
            # The worktree, orch's data directory (the compiler wrapper and
            # ccache.conf; its own bind: an orch cloned under /tmp is
            # otherwise hidden by the private /tmp), the build directory and
            # ccache: a baseline's writable, a series' as its copy-on-write
            # layer over them; nothing else of the host, and of the
            # environment only what orch sets (menv) and the locale.
            # The worktree's git metadata is not in the view (for --tree it
            # is the developer's whole repository), so setlocalversion adds
            # no "+" to the release: 7.2.13, not 7.2.13+.
            # A shared ccache: its socket (or directory) too.
            layer = bd.layer is not None
            view = sandbox.View(readable=(src, ccache_guard.GUARD.parent, *shared_r),
                                writable=(*(() if layer else (bd.path, ccache)), *shared_w,
                                          *extra_writable),
                                env=menv, remove=remove,
                                overlays=(*(bd.layer.overlays(bd.path, ccache) if layer else ()),
                                          *extra_overlays))
            return _sandboxed(argv, view, src, extra_overlays, log=log, timeout=timeout,
                              append=True, pass_fds=fds, on_line=on_line)
        for f in remove:
            f.unlink(missing_ok=True)
        return proc.run(argv, cwd=src, log=log, timeout=timeout, env=menv, append=True,
                        pass_fds=fds, on_line=on_line)
    return make


def _sandboxed(argv: list[str], view: sandbox.View, cwd: Path,
               not_adopted: tuple[sandbox.Overlay, ...], **kw) -> proc.Result:
    """sandbox.run, except that the lower directories of the `not_adopted`
    overlays are not given to the sandbox's id: sandbox.run does so for
    every overlay's lower (right for a build directory or ccache, which are
    the sandbox's anyway), but a worktree shown under a layer stays orch's,
    file for file; the step writes only where its layer's upper side lets
    it (kselftest_build._source_layer)."""
    if not not_adopted:
        return sandbox.run(argv, view, cwd, **kw)
    for p in [*view.writable, *(o.lower for o in view.overlays if o not in not_adopted)]:
        sandbox.adopt(p)
    return proc.run(sandbox.wrap(argv, view, cwd), cwd=cwd, env=sandbox.clean_env(view),
                    inherit_env=False, **kw)


def _prepare(bd: buildtree.BuildDir, log: Path) -> None:
    """The trusted directory: rebuilt once when it has no (complete) warning
    record, and cleaned of an interrupted build."""
    snap = compiler_warnings.load(bd.meta / "warnings.json")
    if bd.trusted and bd.exists("vmlinux") and not (snap and snap.get("complete")):
        # Built by an orch that kept no (complete) warning record: without
        # one the warning diff cannot be complete; rebuild once (from ccache).
        buildtree.remove_tree(bd.path)
        bd.set_state(tree=None)
        with open(log, "a") as f:
            f.write("# orch: build directory had no warning record; rebuilt once\n")
    bd.path.mkdir(parents=True, exist_ok=True)
    sandbox.own(bd.path)   # what it holds: sandbox.run adopts before each step
    if bd.trusted:
        removed = recover_interrupted(bd)
        if removed:
            with open(log, "a") as f:
                f.write(f"# orch: the last build here was interrupted; removed the {removed} "
                        "files it wrote\n")
    bd.mkdir(".tmp")


def build(src: Path, builddir: Path | buildtree.BuildDir, kc: KConfig, tree_id: str, log: Path,
          side: str, opts: BuildOptions | None = None) -> Kernel:
    """Build (or find cached) the kernel of `src` at tree `tree_id`.

    `builddir`: a baseline builds in the trusted directory, a series in a
    layer over it (buildtree; builds.build_all chooses). Raises OrchError
    with INFRA for the baseline, PATCHED_BUILD for the patched side: a
    broken baseline is not the series' fault.
    """
    opts = opts or BuildOptions()
    bd = buildtree.BuildDir.of(builddir)
    bd.meta.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    t0 = time.monotonic()
    _prepare(bd, log)
    env, remote = _environment(bd, side, opts, log)
    dotconfig = _configure(src, bd, kc, log, side, _maker(bd, opts, env, remote=remote))
    key = kcache.cache_key(tree_id, dotconfig)
    cached = _from_cache(key, bd, kc, log, side, t0)
    if cached is not None:
        return cached

    full = not bd.exists("vmlinux")
    must_rebuild = _changed_objects(src, bd, tree_id)
    bd.discard([STATSLOG, ccache_guard.LOG, *must_rebuild])
    _ccache_logs_and_guard(src, bd, tree_id, env, log)
    made = _make(src, bd, kc, side, opts, env, remote, log)
    stats = _ccache_stats(bd, log)
    _check_made(made.result, bd, kc, side, opts.timeout, log)
    _check_rebuilt(bd, must_rebuild, made.started, kc.name, side)
    tmp, banner = _checked_image(key, bd, dotconfig, kc, side, log)
    with open(log, "a") as f:
        f.write(f"# orch: the bzImage holds the kernel just built: {banner.text}\n")
    snapshot = _warnings(src, bd, log, full)
    stored = kcache.store(key, tmp, snapshot, banner,
                          kcache.Origin.BASELINE if side == "baseline" else kcache.Origin.SERIES)
    _mark_built(bd, tree_id)
    return Kernel(kc.name, stored.image, stored.config, False,
                  time.monotonic() - t0, log, key=key, warnings=snapshot, ccache=stats,
                  compiled=made.compiled.count, banner=banner.text,
                  uncached=_uncached(src, bd, log))


def _environment(bd: buildtree.BuildDir, side: str, opts: BuildOptions, log: Path,
                 ) -> tuple[dict[str, str], remote_ccache.Remote | None]:
    """build_env() with the build's temporary files in its build directory,
    and the shared ccache this build gets, if any."""
    env = build_env()
    env["TMPDIR"] = str(bd.path / ".tmp")
    remote = _shared_ccache(side, opts, log)
    if remote is not None:
        env["CCACHE_REMOTE_STORAGE"] = remote.storage()
    return env, remote


def _configure(src: Path, bd: buildtree.BuildDir, kc: KConfig, log: Path, side: str,
               make: Callable[..., proc.Result]) -> Path:
    """The final .config; a failure is the series' for the patched side."""
    try:
        return kconfig.configure(src, bd, kc, log, make=make)
    except OrchError as e:
        code = e.exit
        if code == Exit.INFRA and side == "patched":
            code = Exit.PATCHED_BUILD  # the series broke Kconfig
        raise OrchError(f"{side} build of config {kc.name} failed: {e}", code)


def _from_cache(key: str, bd: buildtree.BuildDir, kc: KConfig, log: Path, side: str,
                t0: float) -> Kernel | None:
    """The cached kernel of `key` when the kernel cache has a good one. An
    entry it has but will not give is said in the log, and rebuilt."""
    state, why = kcache.lookup(key, baseline=side == "baseline")
    if state == kcache.State.OK:
        hit = kcache.entry(key)
        with open(log, "a") as f:
            f.write(f"# cached kernel {hit.path}\n")
        return Kernel(kc.name, hit.image, hit.config, True,
                      time.monotonic() - t0, log, key=key,
                      warnings=hit.warnings(), banner=hit.banner())
    if state != kcache.State.ABSENT:
        with open(log, "a") as f:
            f.write(f"# orch: cached kernel {key} {why}; rebuilding\n")
    if state == kcache.State.STALE:
        # The stale object may still sit in this directory: relinking from
        # vmlinux regenerates everything downstream of it (piggy.S included).
        bd.discard(["vmlinux", IMAGE])
    return None


def _ccache_logs_and_guard(src: Path, bd: buildtree.BuildDir, tree_id: str,
                           env: dict[str, str], log: Path) -> None:
    """Where ccache and orch's compiler wrapper log what they did; ccache
    off where the tree's headers pull files in that it cannot see."""
    env["CCACHE_STATSLOG"] = str(bd.path / STATSLOG)
    env["ORCH_UNCACHED_LOG"] = str(bd.path / ccache_guard.LOG)
    risky = ccache_guard.headers_with_directives(src, tree_id)
    if risky:
        env["CCACHE_DISABLE"] = "1"
        with open(log, "a") as f:
            f.write("# orch: ccache off for this build: these headers pull files in with "
                    f"assembler directives ccache cannot see: {', '.join(risky[:10])}\n")


@dataclass
class _Compiled:
    """Counts the objects make compiles and says so on the status line."""
    status: Callable[[str | None], None]
    label: str
    count: int = 0

    def __call__(self, line: str) -> None:
        if line.startswith(("  CC ", "  AS ")):
            self.count += 1
            self.status(f"{self.label}: {self.count} compiled, {line.split()[-1][-40:]}")


@dataclass
class _Made:
    result: proc.Result
    compiled: _Compiled
    started: float       # wall clock: _check_rebuilt compares file dates with it


def _make(src: Path, bd: buildtree.BuildDir, kc: KConfig, side: str, opts: BuildOptions,
          env: dict[str, str], remote: remote_ccache.Remote | None, log: Path) -> _Made:
    """make bzImage, marked as building while it runs (recover_interrupted)."""
    compiled = _Compiled(opts.status, f"{side} {kc.name}")
    (bd.meta / "building").write_text(f"{os.getpid()}\n")
    bd.set_state(tree=None)      # until it is built: the directory is in between
    make = _maker(bd, opts, env, compiled, remote)
    started = time.time()
    try:
        r = make([*kconfig.make_base(bd.path), f"CC={ccache_guard.cc()}", "bzImage"], log, src,
                 timeout=opts.timeout)
    finally:
        opts.status(None)
    if not r.timed_out:
        # make removed the target of any failed recipe itself.
        (bd.meta / "building").unlink(missing_ok=True)
    return _Made(r, compiled, started)


def _ccache_stats(bd: buildtree.BuildDir, log: Path) -> dict:
    copied = log.with_suffix(".ccache-stats")
    copied.unlink(missing_ok=True)
    _untrusted_copy(bd, STATSLOG, copied, log)
    return ccache_stats.read(copied)


def _check_made(r: proc.Result, bd: buildtree.BuildDir, kc: KConfig, side: str, timeout: float,
                log: Path) -> None:
    """make failed or left no image: said by its first error line."""
    if not r.ok or not bd.exists(IMAGE):
        what = f"timed out after {timeout:.0f}s" if r.timed_out else "failed"
        raise OrchError(f"{side} build of config {kc.name} {what}: "
                        f"{first_error(log)} (see {log})",
                        Exit.INFRA if side == "baseline" else Exit.PATCHED_BUILD)


def _checked_image(key: str, bd: buildtree.BuildDir, dotconfig: Path, kc: KConfig, side: str,
                   log: Path) -> tuple[Path, kimage.Banner]:
    """The kernel cache's new entry, staged, and its banner: its bzImage is
    checked to hold the kernel this build linked (vmlinux's banner)."""
    tmp = None
    try:
        tmp = _stage(key, bd, dotconfig, log)
        vmlinux = bd.chunks("vmlinux", MAX_VMLINUX)
        if vmlinux is None:
            raise kimage.ImageError("the build left no vmlinux")
        return tmp, kimage.verify(tmp / "bzImage", vmlinux)
    except (kimage.ImageError, buildtree.UnsafeFile, OSError) as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        bd.discard(["vmlinux", IMAGE])    # the next build relinks
        raise OrchError(f"{side} build of config {kc.name} is not the kernel it built: {e}; "
                        "not cached, not booted (run again: it relinks)", Exit.INFRA)


def _stage(key: str, bd: buildtree.BuildDir, dotconfig: Path, log: Path) -> Path:
    """Copy what the kernel cache keeps out of the build directory, as
    untrusted files (no links, capped), into a private directory. The image
    must be there; System.map is kept when it is a plain file."""
    tmp = kcache.new_entry(key)
    try:
        if not bd.copy_out(IMAGE, tmp / "bzImage", MAX_IMAGE):
            raise kimage.ImageError(f"the build left no {IMAGE}")
        shutil.copyfile(dotconfig, tmp / "config")
        _untrusted_copy(bd, "System.map", tmp / "System.map", log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _warnings(src: Path, bd: buildtree.BuildDir, log: Path, full: bool) -> dict:
    """The build directory's warning record, updated with this build's log."""
    built = compiler_warnings.parse_log(log.read_text(errors="replace"), src, bd.path)
    return compiler_warnings.update(bd.meta / "warnings.json", built, full)


def _mark_built(bd: buildtree.BuildDir, tree_id: str) -> None:
    if bd.trusted:
        # A new generation: layers made over the old one are made anew
        # (buildtree.current).
        bd.set_state(tree=tree_id, generation=int(bd.state().get("generation", 0)) + 1)
    else:
        bd.set_state(tree=tree_id)


def _uncached(src: Path, bd: buildtree.BuildDir, log: Path) -> list[str]:
    """What orch's compiler wrapper compiled without ccache."""
    uncached = _untrusted_copy(bd, ccache_guard.LOG, log.with_suffix(".uncached"), log)
    return ccache_guard.read_log(uncached, bd.path, src) if uncached else []


def _untrusted_copy(bd: buildtree.BuildDir, rel: str, dest: Path, log: Path) -> Path | None:
    """Copy a file the build wrote (ccache's stats log, the wrapper's log)
    next to the build log, as untrusted: a link or a FIFO there is said in
    the log and left alone."""
    try:
        return dest if bd.copy_out(rel, dest, MAX_LOG) else None
    except buildtree.UnsafeFile as e:
        with open(log, "a") as f:
            f.write(f"# orch: not read: {e}\n")
        return None


SOURCES = (".c", ".S")


def _changed_objects(src: Path, bd: buildtree.BuildDir, tree_id: str) -> list[str]:
    """The objects of the C and assembler sources that changed since this
    build directory was last built, where it has one: a series' build must
    compile each of them again. Removed before the build (so no trick can
    keep or re-date the old object) and checked after it (_check_rebuilt).
    A baseline's directory is trusted: nothing to check."""
    if bd.trusted:
        return []
    before = bd.state().get("tree")
    if not before or before == tree_id:
        return []
    r = proc.run(["git", "-C", str(src), "diff", "--name-only", "--no-renames", "--diff-filter=MT", before,
                  tree_id], timeout=300)
    if not r.ok:
        return []
    out = []
    for name in r.output.splitlines():
        name = name.strip()
        if name.endswith(SOURCES) and ".." not in name.split("/"):
            obj = name.rsplit(".", 1)[0] + ".o"
            try:
                if bd.exists(obj):
                    out.append(obj)
            except buildtree.UnsafeFile:
                out.append(obj)
    return out


def _check_rebuilt(bd: buildtree.BuildDir, objects: list[str], started: float, config: str,
                   side: str) -> None:
    """Each object in `objects` was written by this build: a regular,
    non-empty file in the layer, made and dated within the build. Its
    source changed, so a kernel without it compiled anew would be tested
    without the change (a PASS for code that never ran)."""
    now = time.time()
    for obj in objects:
        try:
            st = bd.in_upper(obj)
        except buildtree.UnsafeFile as e:
            st, why = None, str(e)
        else:
            why = "it is missing"
        if st is not None:
            if st.st_size == 0:
                why = "it is empty"
            elif not (started - 2 <= st.st_mtime <= now + 2):
                why = "it is dated outside the build (re-dated)"
            elif st.st_ctime < started - 2:
                why = "it is older than the build"
            else:
                continue
        raise OrchError(f"{side} build of config {config} did not compile its changed source "
                        f"into {obj}: {why}; the kernel would not hold the change, so it is "
                        "not booted", Exit.PATCHED_BUILD)


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
