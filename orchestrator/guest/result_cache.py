"""Guest results of any kernel, kept per (kernel, guest suite and selection,
VM settings).

A kernel is its image (image_digest: the bzImage's bytes, which a source
tree and .config build once into the kernel cache), so booting it again
with the same tests tests nothing new: the baseline of a tree serves every
series on it, a rerun of a series boots nothing, and a bisect that meets a
commit again knows its answer. A crash is kept too (it is the kernel's
answer), with its console; never a timeout (under TCG a slow host looks like
a hung kernel) and never an error that is orch's or the machine's.
--rerun boots anyway.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from orchestrator import __version__
from orchestrator.core import cache_use, untrusted
from orchestrator.core.models import GuestRun, Kernel
from orchestrator.core.paths import cache_dir, data_root
from orchestrator.guest import about, harvest, kselftest_run, selection, vm

MAX_FILE = 16 << 20
FILES = ("junit.xml", "harness-rc", "proc-version", "harness.log")


def kept(name: str) -> bool:
    """A results-directory file kept with the results: FILES, and each
    kselftest target's KTAP output and exit status, the disk's log and the
    harness's end (kselftest_run.result_file). The guest's JSON is kept
    apart (load, store)."""
    return name in FILES or kselftest_run.result_file(name) or harvest.session_file(name)
PLUGIN = Path(__file__).with_name("pytest_plugin.py")


def suite_digest(tests: tuple[str, ...] = (), suites: Sequence = ()) -> str:
    """The guest suite's files, and those of any test selected outside it;
    and each --suite's (selection.Suite or its path), under its name."""
    return _suite_digest(tests, data_root(), tuple(selection.as_suites(suites)))


@functools.lru_cache(maxsize=None)
def _suite_digest(tests: tuple[str, ...], root: Path,
                  suites: tuple[selection.Suite, ...] = ()) -> str:
    # Each file is hashed under its name in a source checkout (the data root
    # holds guest_tests/; the plugin is orchestrator/guest/pytest_plugin.py), so a
    # checkout and an installed orch with the same suite keep the same results.
    # The plugin decides what the guest reports: part of the suite.
    tops = {PurePosixPath(selection.GUEST_TESTS): root / selection.GUEST_TESTS,
            PurePosixPath("orchestrator", "guest", PLUGIN.name): PLUGIN}
    for t in tests:
        path = (root / t.split("::")[0]).resolve()
        if path.is_relative_to(root) and path.exists():
            tops[PurePosixPath(path.relative_to(root))] = path
    h = hashlib.sha256()
    for name in sorted(tops):
        top = tops[name]
        files = [top] if top.is_file() else sorted(top.rglob("*"))
        for f in files:
            # about.toml says which series a test is about (the verdict's
            # targets): the guest never reads it, so it keys no result.
            if f.is_file() and "__pycache__" not in f.parts and f.name != about.FILE:
                h.update(str(name / f.relative_to(top)).encode() + b"\0" + f.read_bytes())
    # A suite's files as the guest sees them, under its name (its ids
    # start with it), not its path: the same suite elsewhere keeps its
    # results. After the builtin's, so a run without one keeps its digest.
    for s in sorted(suites, key=lambda s: s.name):
        for f in selection.suite_files(s.path):
            if f.name == about.FILE or not f.is_file():
                continue
            try:
                data = f.read_bytes()
            except OSError as e:
                data = f"unreadable: {e.strerror}".encode()
            h.update(str(PurePosixPath(s.name, *f.relative_to(s.path).parts)).encode()
                     + b"\0" + data)
    return h.hexdigest()


def image_digest(image: Path) -> str:
    """What a boot's results depend on: the image booted, byte for byte.
    Two commits that differ only where the build does not look (a
    Documentation change) leave Kbuild nothing to relink, so their images
    are the same file and one boot answers both; two builds of the same
    source differ (build number, time), so no answer is ever shared
    between kernels that could behave differently."""
    h = hashlib.sha256()
    with open(image, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def key(image: str, tests: list[str] | None, test_timeout: float, accel: str,
        repeat: int = 1, sample: int = 0, confined: bool = True,
        keyword: str | None = None, cpus: int = vm.CPUS, memory: str = vm.MEMORY,
        kselftests: Sequence[str] = (), suites: Sequence = ()) -> str:
    """`sample` numbers independent boots of one kernel with one selection
    (a bisect's retry of a kernel that did not come up, its confirmation
    reruns): each is kept on its own, so running the same bisect again
    boots nothing, while a rerun never reads the boot it is rerunning.

    `confined`: the guest saw only vm.guest_view(). Kept results are copied
    into run directories, which are published, so results of a guest that
    saw the whole host (--no-sandbox, or any orch before the view) are
    never handed to a confined run: they are keyed apart.

    `cpus`, `memory`: the guest's (--cpus, --memory), in the places the
    fixed vm.CPUS and vm.MEMORY always held, so the defaults keep every
    earlier key.

    `keyword`: -k EXPR. The same --guest-test with another expression runs
    other tests, and a kept boot of them answers for none of this one's.

    `kselftests`: kselftest_run.key_parts() of what the boot runs (each
    target's build key, which holds the kernel's, and the tests named);
    none keeps every earlier key.

    `suites`: the --suite suites (selection.Suite or their paths), each
    hashed under its name into the suite digest; their names, in the order
    their sessions run, appended (none keeps every earlier key too)."""
    given = selection.as_suites(suites)
    parts = [__version__, image, sorted(tests or []),
             suite_digest(tuple(sorted(tests or [])), given), test_timeout, accel, repeat,
             cpus, memory, vm.APPEND, vm.SCRATCH_MB]
    if sample:  # sample 0 keeps the key every earlier orch kept results under
        parts.append(f"sample {sample}")
    if keyword is not None:  # so does a run without -k
        parts.append(f"keyword {keyword}")
    if given:  # and one without --suite
        parts.append(["suites", [s.name for s in given]])
    if kselftests:  # kselftest_run.key_parts: each target's build and tests
        parts.append(["kselftests", *kselftests])
    if confined:
        # 2: no udev in the guest; 3: QEMU unprivileged, its results
        # directory cleaned of links and devices before orch reads it
        parts.append("guest view 3")
    h = hashlib.sha256(json.dumps(parts).encode())
    return h.hexdigest()[:32]


def load(k: str, results: Path, console: Path, kernel: Kernel, expected: list[str],
         repeat: int = 1, kselftests: Sequence[kselftest_run.Selected] = (),
         suites: Sequence = ()) -> GuestRun | None:
    cache_use.use("results", k)      # before looking: gc leaves it from now on
    d = cache_dir() / "results" / k
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    for f in d.iterdir():
        if kept(f.name) or f.suffix == ".json" and f.name != "meta.json":
            shutil.copy2(f, results / f.name)
    shutil.copy2(d / "console.log", console)
    g = vm.outcome(results, console, expected, repeat, vng_rc=meta.get("vng_rc", 0),
                   kselftests=kselftests, suites=suites)
    g.accel, g.seconds, g.cached = meta["accel"], meta["seconds"], True
    g = vm.check_booted(g, kernel, results)
    return None if g.infra else g


def keepable(g: GuestRun) -> bool:
    """The kernel's own answer: a complete run or a crash, not a timeout
    and not orch's or the machine's error."""
    return not g.infra and not g.timed_out


def store(k: str, g: GuestRun) -> None:
    if not keepable(g) or g.results is None:
        return
    cache_use.use("results", k)
    root = cache_dir() / "results"
    tmp = root / f".{k}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in g.results.iterdir():
        if kept(f.name) or f.suffix == ".json":
            try:  # untrusted: no links, nothing huge
                (tmp / f.name).write_bytes(untrusted.read_capped(f, MAX_FILE))
            except untrusted.UntrustedError:
                pass
    shutil.copy2(g.console, tmp / "console.log")
    (tmp / "meta.json").write_text(json.dumps({"accel": g.accel, "seconds": g.seconds,
                                                    "vng_rc": g.vng_rc}))
    dest = root / k
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
