"""Build the kernel's own selftests (tools/testing/selftests/<target>) from
the same source state, headers and build directory as a kernel, in the
build sandbox, and keep each target's install in the cache beside it.

`--kselftest TARGET[:TEST]` names what to run; a target builds once per
kernel (its key holds the kernel's key), so a rerun builds nothing.

For each kernel, right after it is built or found cached, in the same
worktree state and build directory (the trusted one for a baseline, the
series' layer for a patched kernel):

  1. `make O=BD ARCH=x86_64 headers`: the tree's uapi headers in
     BD/usr/include, which the tests build against (cachestat needs the
     tree's <linux/mman.h>, newer than the host's); once, before the first
     target that is not cached;
  2. per target, `make -C tools/testing/selftests ARCH=x86_64 O=BD
     BUILD=S/out TARGETS=T SKIP_TARGETS= FORCE_TARGETS=1
     KSFT_INSTALL_PATH=S/install install`, S a scratch directory of its
     own. The worktree is shown under a throwaway copy-on-write layer (in
     S): mm's Makefile writes local_config.h into its source directory, and
     nothing a build writes may land in the worktree. The tree's compiler
     flags, no ccache;
  3. the install copied out of S as untrusted files (untrusted_tree.copy:
     no links, FIFOs, devices, setuid bits, nothing over the KSELFTEST
     quota; fresh files of orch's, so nothing the sandbox can reach or
     hard-link is kept), its kselftest-list.txt read into tests.json, a
     checksum over both written last, and the entry renamed into place.

The cache: cache/kselftests/KEY/{install/, tests.json, sha256}, KEY
from the kernel's key (source tree, final .config, toolchain), the target,
RECIPE and the host's libraries; tests.json holds the list and who built it
(origin). lookup() checks the checksum (a corrupt entry is removed and
built again), and a baseline takes only an entry a baseline's build made,
as the kernel cache does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from orchestrator.core import cache_use, proc, sandbox, untrusted_tree
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.models import Kernel, KselftestBuild
from orchestrator.core.paths import cache_dir
from orchestrator.core.untrusted import UntrustedError
from orchestrator.kernel import build, buildtree, kconfig

# A target is a directory under tools/testing/selftests (some are nested:
# drivers/net, filesystems/binderfs); a test, one name in its list.
_TARGET = re.compile(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")
_TEST = re.compile(r"[A-Za-z0-9_.+-]+")
MAX_SPECS = 64


@dataclass(frozen=True)
class Spec:
    """One --kselftest value: a target, and one test of it or all of them."""
    target: str
    test: str | None = None

    @property
    def text(self) -> str:
        return self.target if self.test is None else f"{self.target}:{self.test}"


def parse_specs(values: Sequence[str]) -> tuple[Spec, ...]:
    """--kselftest values (repeatable, each may hold several, comma
    separated), in order, without repeats; a bad one is BadInput."""
    out: list[Spec] = []
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            target, _, test = item.partition(":")
            target = target.strip("/")
            if (not _TARGET.fullmatch(target) or ".." in target.split("/")
                    or "." in target.split("/") or test and not _TEST.fullmatch(test)
                    or ":" in item and not test):
                raise BadInput(f"--kselftest {item!r}: expected TARGET or TARGET:TEST, "
                               "a directory of tools/testing/selftests and one test of its list")
            spec = Spec(target, test or None)
            if spec not in out:
                out.append(spec)
    if len(out) > MAX_SPECS:
        raise BadInput(f"--kselftest: {len(out)} given, at most {MAX_SPECS}")
    return tuple(out)


def targets(specs: Sequence[Spec]) -> list[str]:
    """The targets to build, once each, in the order first named."""
    return list(dict.fromkeys(s.target for s in specs))


def targets_of(values: Sequence[str]) -> tuple[str, ...]:
    """The targets to build for --kselftest `values` (as given or as
    Spec.text): what a run's and a bisect step's builds are asked for."""
    return tuple(targets(parse_specs(values)))


SELFTESTS = "tools/testing/selftests"
# orch's recipe, in the key: a change to how targets are built (the make
# line, what is kept) builds every target again.
RECIPE = ("kselftest-build 1: make O ARCH=x86_64 headers; make -C tools/testing/selftests "
          "ARCH=x86_64 O BUILD TARGETS SKIP_TARGETS= FORCE_TARGETS=1 KSFT_INSTALL_PATH "
          "install; untrusted_tree.copy KSELFTEST")
# What the tests link against besides the C library the toolchain id names
# (mm: -lnuma, -lcap, liburing when present) and rsync, which installs them.
HOST_PACKAGES = ("libc6-dev", "libnuma-dev", "libcap-dev", "liburing-dev", "rsync")
LIST = "kselftest-list.txt"
MAX_LIST = 1 << 20          # bytes of kselftest-list.txt read
MAX_TESTS = 5000            # lines of it kept (mm: 29, net: ~150)
MAX_SOURCE_DIRS = 5000      # directories of a target shown writable in its layer
MAX_SOURCE_DEPTH = 24       # and how deep (mm: 1 level, net: 3)
_LIST_LINE = re.compile(r"([A-Za-z0-9_.+/-]+):([A-Za-z0-9_.+-]+)")


class State(StrEnum):
    ABSENT = "absent"
    OK = "ok"
    CORRUPT = "corrupt"     # removed: built again
    SERIES = "series"       # a baseline lookup found an entry a series' build made


def root() -> Path:
    return cache_dir() / "kselftests"


@dataclass(frozen=True)
class Entry:
    """A cached target's install, in place."""
    path: Path

    @property
    def install(self) -> Path:
        return self.path / "install"

    def meta(self) -> dict:
        return json.loads((self.path / "tests.json").read_text())


def entry(key: str) -> Entry:
    return Entry(root() / key)


@functools.cache
def host_libs_id() -> str:
    """The installed versions of HOST_PACKAGES (absent ones said so)."""
    try:
        r = proc.run(["dpkg-query", "-W", "-f=${Package}=${Version}\n", *HOST_PACKAGES],
                     timeout=60)
    except OSError as e:      # no dpkg: not Debian
        return f"dpkg-query: {e.strerror}"
    return " | ".join(sorted(line.strip() for line in r.output.splitlines() if line.strip()))


def key(kernel_key: str, target: str) -> str:
    h = hashlib.sha256()
    for part in (kernel_key, target, RECIPE, host_libs_id()):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:32]


def check_targets(repo: Path, commit: str, names: Sequence[str]) -> None:
    """Every target exists at `commit` (its Makefile), before anything is
    built: a typo is BadInput, not a failed build."""
    names = list(dict.fromkeys(names))
    if not names:
        return
    bad = [n for n in names if not _TARGET.fullmatch(n) or {".", ".."} & set(n.split("/"))]
    if bad:
        raise BadInput(f"--kselftest {bad[0]!r}: not a directory name of {SELFTESTS}")
    paths = [f"{SELFTESTS}/{n}/Makefile" for n in names]
    r = proc.run(["git", "-C", str(repo), "ls-tree", "--name-only", commit, "--", *paths],
                 timeout=120)
    if not r.ok:
        raise OrchError(f"cannot list {SELFTESTS} at {commit[:12]} in {repo}: "
                        f"{r.output.strip()[:200]}", Exit.INFRA)
    found = set(r.output.splitlines())
    missing = [n for n, p in zip(names, paths) if p not in found]
    if missing:
        which = ", ".join(missing)
        raise BadInput(f"--kselftest: no target {which} at {commit[:12]} (no "
                       f"{SELFTESTS}/{missing[0]}/Makefile in the tree under test)")


def build_for(src: Path, bd, kernel: Kernel, names: Sequence[str],
              log_for: Callable[[str], Path], side: str, opts) -> list[KselftestBuild]:
    """Each target of `names` for `kernel` (built from `src` in build dir
    `bd`, a buildtree.BuildDir, with build.BuildOptions `opts`): found in the
    cache, else built and kept. `log_for(target)` is its log. A failure is
    OrchError: Exit.INFRA on the baseline, Exit.PATCHED_BUILD on the patched
    side."""
    opts = opts or build.BuildOptions()
    bd = buildtree.BuildDir.of(bd)
    _sweep()
    out: list[KselftestBuild] = []
    headers = False
    for target in dict.fromkeys(names):
        t0 = time.monotonic()
        k = key(kernel.key, target)
        log = log_for(target)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        hit = _from_cache(k, target, side, log, t0)
        if hit is not None:
            out.append(hit)
            continue
        if not headers:
            _headers(src, bd, kernel, target, side, opts, log)
            headers = True
        out.append(_build_one(src, bd, kernel, target, k, side, opts, log, t0))
    return out


def lookup(key: str, baseline: bool = False) -> tuple[State, str]:
    """(state, why) of the entry of `key`: absent, ok, corrupt (its files
    are not what was kept: removed), or, for a baseline, series (made by a
    series' build: a baseline builds its own). Used (cache_use) before it
    is looked at: gc leaves it alone for the rest of this process."""
    cache_use.use("kselftests", key)
    d = root() / key
    if not d.exists():
        return State.ABSENT, ""
    try:
        why = "" if _digest(d) == (d / "sha256").read_text().strip() else "failed its checksum"
        meta = entry(key).meta()
    except (OSError, ValueError, _NotPlain) as e:
        why = str(e)
    if why:
        buildtree.remove_tree(d)
        return State.CORRUPT, why
    if baseline and meta.get("origin") != "baseline":
        return State.SERIES, "was built by a series' build, not a baseline build"
    return State.OK, ""


def _from_cache(k: str, target: str, side: str, log: Path, t0: float) -> KselftestBuild | None:
    state, why = lookup(k, baseline=side == "baseline")
    if state == State.OK:
        e = entry(k)
        with open(log, "a") as f:
            f.write(f"# cached kselftest {target}: {e.path}\n")
        return KselftestBuild(target, k, e.install, list(e.meta()["tests"]),
                              time.monotonic() - t0, True, log)
    if state != State.ABSENT:
        with open(log, "a") as f:
            f.write(f"# orch: cached kselftest {target} ({k}) {why}; building it again\n")
    return None


def _fail(kernel: Kernel, target: str, side: str, what: str, log: Path) -> OrchError:
    return OrchError(f"kselftest {target} build {what} on the {side} kernel of config "
                     f"{kernel.config}: {build.first_error(log)} (see {log})",
                     Exit.INFRA if side == "baseline" else Exit.PATCHED_BUILD)


def _environment(scratch: Path) -> dict[str, str]:
    env = build.build_env()
    env["TMPDIR"] = str(scratch / "tmp")
    return env


def _headers(src: Path, bd: buildtree.BuildDir, kernel: Kernel, target: str, side: str,
             opts, log: Path) -> None:
    """make headers in the kernel's own build directory (incremental: a
    second run rewrites nothing)."""
    env = build.build_env()
    env["TMPDIR"] = str(bd.path / ".tmp")
    bd.mkdir(".tmp")
    opts.status(f"kselftest headers, config {kernel.config}")
    try:
        r = build._maker(bd, opts, env)([*kconfig.make_base(bd.path), "headers"], log, src,
                                        timeout=opts.timeout)
    finally:
        opts.status(None)
    if not r.ok:
        raise _fail(kernel, target, side, "timed out in make headers" if r.timed_out
                    else "failed in make headers", log)


def _build_one(src: Path, bd: buildtree.BuildDir, kernel: Kernel, target: str, k: str,
               side: str, opts, log: Path, t0: float) -> KselftestBuild:
    scratch = _scratch(k)
    try:
        overlays = _source_layer(src, target, scratch) if opts.sandbox else ()
        # -C by its absolute path: the step starts in the worktree as bwrap
        # showed it, before the layer was mounted over it; a relative -C
        # would stay beneath the layer, in the read-only worktree.
        argv = ["make", "-C", str(src / SELFTESTS), "ARCH=x86_64", f"O={bd.path}",
                f"BUILD={scratch / 'out'}", f"TARGETS={target}", "SKIP_TARGETS=",
                "FORCE_TARGETS=1", f"KSFT_INSTALL_PATH={scratch / 'install'}", "install"]
        make = build._maker(bd, opts, _environment(scratch), extra_writable=(scratch,),
                            extra_overlays=overlays)
        opts.status(f"kselftest {target}, config {kernel.config}")
        try:
            r = make(argv, log, src, timeout=opts.timeout)
        finally:
            opts.status(None)
        if not r.ok:
            raise _fail(kernel, target, side, "timed out" if r.timed_out else "failed", log)
        return _keep(scratch, kernel, target, k, side, log, t0)
    finally:
        buildtree.remove_tree(scratch)


def _private(kind: str, k: str) -> Path:
    """A new directory beside the entries (same filesystem: a finished
    entry is renamed into place), named for _sweep."""
    root().mkdir(parents=True, exist_ok=True)
    d = root() / f".{kind}-{k}-{os.getpid()}-{secrets.token_hex(4)}"
    d.mkdir()
    return d


def _scratch(k: str) -> Path:
    """One target's build directory (BUILD), install, layer and TMPDIR,
    the sandbox's to write (sandbox.run gives it all to the sandbox's id)."""
    d = _private("build", k)
    for sub in ("out", "upper", "work", "tmp"):
        (d / sub).mkdir()
    return d


def _source_layer(src: Path, target: str, scratch: Path) -> tuple[sandbox.Overlay, ...]:
    """The worktree under a throwaway copy-on-write layer in `scratch`.
    The target's source directories are made in the layer's upper side
    first: a merged directory takes the owner and mode of its upper one,
    so the unprivileged build may write in those (mm's local_config.h);
    elsewhere the worktree's own owner and modes hold. Whatever it writes
    lands in the layer, thrown away with `scratch`; the worktree's files
    are neither written nor given to the sandbox's id (build._maker)."""
    upper = scratch / "upper"
    # The series' tree: walked without recursion, within MAX_SOURCE_DIRS
    # and MAX_SOURCE_DEPTH; a link in it stays a link (no directory over it).
    todo = [Path(SELFTESTS, target)]
    made = 0
    while todo and made < MAX_SOURCE_DIRS:
        rel = todo.pop()
        (upper / rel).mkdir(parents=True, exist_ok=True)
        made += 1
        if len(rel.parts) >= MAX_SOURCE_DEPTH:
            continue
        try:
            todo += [rel / e.name for e in os.scandir(src / rel)
                     if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
    return (sandbox.Overlay(src, upper, scratch / "work", src),)


def _keep(scratch: Path, kernel: Kernel, target: str, k: str, side: str, log: Path,
          t0: float) -> KselftestBuild:
    """Copy the install out as untrusted files, read its list, and put the
    entry in place. Staged in a directory of orch's, not in `scratch`
    (the sandbox's id may rename what is in there)."""
    staged = _private("entry", k)
    try:
        return _stage(scratch, staged, kernel, target, k, side, log, t0)
    finally:
        if staged.exists():
            buildtree.remove_tree(staged)


def _stage(scratch: Path, staged: Path, kernel: Kernel, target: str, k: str, side: str,
           log: Path, t0: float) -> KselftestBuild:
    try:
        said = untrusted_tree.copy(scratch, ("install",), staged / "install",
                                   untrusted_tree.KSELFTEST)
    except (FileNotFoundError, UntrustedError) as e:
        with open(log, "a") as f:
            f.write(f"# orch: the build left no install directory ({e})\n")
        raise _fail(kernel, target, side, "left no install", log) from None
    tests, notes = _read_list(staged / "install", target)
    with open(log, "a") as f:
        for line in said:
            f.write(f"# orch: kselftest install: {line}\n")
        for line in notes:
            f.write(f"# orch: {LIST}: {line}\n")
        f.write(f"# orch: kselftest {target}: {len(tests)} tests in its list\n")
    meta = {"target": target, "tests": tests, "kernel": kernel.key, "config": kernel.config,
            "origin": "baseline" if side == "baseline" else "series", "recipe": RECIPE}
    (staged / "tests.json").write_text(json.dumps(meta, indent=1) + "\n")
    # The checksum goes last: an entry without it is incomplete.
    (staged / "sha256").write_text(_digest(staged) + "\n")
    dest = root() / k
    if dest.exists():
        buildtree.remove_tree(dest)
    try:
        os.rename(staged, dest)
    except OSError:
        # Another orch put the same entry in place meanwhile.
        if lookup(k)[0] != State.OK:
            raise
    return KselftestBuild(target, k, entry(k).install, tests, time.monotonic() - t0, False, log)


def _read_list(install: Path, target: str) -> tuple[list[str], list[str]]:
    """The target's "collection:test" lines of kselftest-list.txt, and what
    was said about the others."""
    notes: list[str] = []
    text = b""
    try:
        with open(install / LIST, "rb") as f:
            text = f.read(MAX_LIST + 1)
    except OSError:
        notes.append("missing: the target has no tests to run")
    if len(text) > MAX_LIST:
        notes.append(f"over {MAX_LIST} bytes: read that far")
        text = text[:MAX_LIST]
    tests: list[str] = []
    odd = 0
    for raw in text.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        m = _LIST_LINE.fullmatch(line)
        if not line:
            continue
        if not m or m.group(1) != target:
            odd += 1
            if odd <= 5:
                notes.append(f"line {line[:80]!r} is not {target}:TEST, left out")
            continue
        if line not in tests:
            tests.append(line)
    if odd > 5:
        notes.append(f"{odd - 5} more lines left out")
    if len(tests) > MAX_TESTS:
        notes.append(f"{len(tests)} tests: the first {MAX_TESTS} kept")
        tests = tests[:MAX_TESTS]
    return tests, notes


class _NotPlain(Exception):
    pass


def _digest(d: Path) -> str:
    """sha256 over the entry's install tree (each path, kind, mode and
    bytes, in name order) and its tests.json. Anything but a directory or a
    regular file in it makes it corrupt."""
    h = hashlib.sha256()
    top = d / "install"
    todo = [top]
    while todo:
        cur = todo.pop()
        for p in sorted(cur.iterdir(), reverse=True):
            st = p.lstat()
            rel = str(p.relative_to(top)).encode()
            if stat.S_ISDIR(st.st_mode):
                h.update(b"d\0" + rel + b"\0%o\0" % stat.S_IMODE(st.st_mode))
                todo.append(p)
            elif stat.S_ISREG(st.st_mode):
                h.update(b"f\0" + rel + b"\0%o\0%d\0" % (stat.S_IMODE(st.st_mode), st.st_size))
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            else:
                raise _NotPlain(f"{rel.decode(errors='replace')} is not a plain file")
    h.update(b"tests.json\0" + (d / "tests.json").read_bytes())
    return h.hexdigest()


def _sweep() -> None:
    """Remove the private directories of builds whose orch is gone."""
    try:
        names = [p for p in root().iterdir() if p.name.startswith((".build-", ".entry-"))]
    except OSError:
        return
    for d in names:
        try:
            pid = int(d.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if proc.gone(pid):
            buildtree.remove_tree(d)
