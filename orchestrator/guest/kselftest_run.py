"""Run kselftests in the guest and read their KTAP output into test results.

Each kernel runs its own build of each selected target (Kernel.kselftests)
with the kernel's own runner, run_kselftest.sh, from a writable ext4 disk:
the tests create files in their working directory, which neither the
read-only 9p root nor tmpfs serve as they need (cachestat's fsync sub-test
skips on tmpfs; mincore's O_TMPFILE test fails there). One KTAP file per
target, parsed by guest/ktap.py; ids are kselftest/<collection>/<test>.

On the host, before the boot (make_image): a sparse image file, made an
ext4 filesystem by `mkfs.ext4 -d STAGE`, STAGE holding each selected
target's install under its slug. vm.vng_argv attaches it as a second
virtio-blk disk with serial DISK_SERIAL. In the guest, after pytest
(harness_lines): the disk is found by its serial in /sys/block/vd*/serial,
mounted at MOUNT, and each target's own runner runs with `-c COLLECTION`
(a bare --kselftest TARGET: the kernel's own list of it) or `-t T:X` for
each named test that kernel's list has (the runner runs nothing at all
when one `-t` is unknown to it, so a test the kernel lacks is never passed:
it is MISS, "not in this kernel's kselftest list"), `-o SECS` (the
target's `settings` timeout or the runner's 45 s, at least --test-timeout),
its output into $RES/kselftest-<slug>.ktap, its exit status into .rc;
then `harness-done`, the harness's last word.

Reading (report(), called by vm.outcome): each target's file through
ktap.parse_file with that target's expected ids, so a test the output
never reached is MISS and the one running when it stopped is ERROR. Only
the runner's top-level results are tests (kselftest/<collection>/<test>,
what --kselftest names and the verdict compares): a program's own subtests
are named by their messages, which can change with the outcome
("ok 7 # SKIP tmpfilecachestat is on tmpfs"), so they are no ids. They are
told in the test's message (ktap.py names the failing ones there) and its
"subtests" property (how many, by status). No `harness-done` with
kselftests selected: the guest stopped (died_in says during which test).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import proc, untrusted
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.models import Kernel, KselftestBuild, Status, TestResult
from orchestrator.core.sanitize import clean
from orchestrator.guest import ktap
from orchestrator.kernel import kselftest_build

PREFIX = "kselftest/"
# The second virtio-blk disk, and where the guest mounts it (the guest's
# /tmp is its own tmpfs; "/" is the host's, read-only over 9p).
DISK_SERIAL = "orch-kselftest"
MOUNT = "/tmp/orch-kselftest"
DONE = "harness-done"            # the harness's last line writes it
DISK_LOG = "kselftest-disk.log"  # what finding and mounting the disk said
# Which harness lines (a results key part: another harness, another answer).
HARNESS_VERSION = 1
DEFAULT_TIMEOUT = 45             # the runner's, for a target without `settings`
MAX_TIMEOUT = 4 * 3600           # a `settings` timeout from the tree under test, capped
# The image: the installs and room for what the tests write in their cwd.
IMAGE_MIN = 128 << 20
IMAGE_ROOM = 64 << 20
MKFS_TIMEOUT = 300
_RESULT_FILE = re.compile(r"kselftest-[A-Za-z0-9_.-]{1,200}\.(?:ktap|rc)")
_TIMEOUT = re.compile(r"timeout=(\d{1,9})")
HEAD = 4096                      # of a file without KTAP, for its first line


@dataclass(frozen=True)
class Selected:
    """One target to run on one kernel: its build, and the tests named
    (TARGET:TEST), or () for the target's whole list."""
    build: KselftestBuild
    tests: tuple[str, ...] = ()


def test_id(collection: str, test: str) -> str:
    return f"{PREFIX}{collection}/{test}"


def is_kselftest(test: str) -> bool:
    return test.startswith(PREFIX)


def collection_of(test: str) -> str:
    """kselftest/<collection>/<test> -> collection (which may hold "/":
    drivers/net; a test name never does)."""
    return test[len(PREFIX):].rpartition("/")[0]


def slug(target: str) -> str:
    """A target as one file name: drivers/net -> drivers__net (no target
    directory of tools/testing/selftests has a "__"; the names stay within
    what every copier of results takes: letters, digits, ".", "_", "-")."""
    return target.replace("/", "__")


def result_file(name: str) -> bool:
    """A results-directory file the kselftest harness writes (kept with
    the results, result_cache)."""
    return name in (DONE, DISK_LOG) or _RESULT_FILE.fullmatch(name) is not None


def result_names(selected: Sequence[Selected], expected: Sequence[str]) -> list[str]:
    """The files the harness writes for `selected` (and for `expected`'s
    kselftest ids): counted first against the results directory's quota."""
    names = dict.fromkeys(name for name, _sel, _ids in _groups(selected, expected))
    return [DONE, DISK_LOG, *(f"kselftest-{n}.{ext}" for n in names for ext in ("ktap", "rc"))]


def plan(kernel: Kernel, specs: Sequence[str]) -> list[Selected]:
    """What `kernel` runs of the --kselftest `specs` (Spec.text values): the
    build of each target among kernel.kselftests, in the order first named;
    a target named bare runs whole, else the tests named. A target the
    kernel has no build of is left out (its ids are then MISS)."""
    if not specs:
        return []
    builds = {b.target: b for b in kernel.kselftests}
    wanted: dict[str, list[str] | None] = {}
    for spec in kselftest_build.parse_specs(list(specs)):
        if spec.test is None:
            wanted[spec.target] = None
        elif wanted.setdefault(spec.target, []) is not None:
            if spec.test not in wanted[spec.target]:
                wanted[spec.target].append(spec.test)
    out = [Selected(builds[t], tuple(tests or ())) for t, tests in wanted.items()
           if t in builds]
    slugs = Counter(slug(s.build.target) for s in out)
    if any(n > 1 for n in slugs.values()):
        raise BadInput("--kselftest: two targets share a file name: "
                       + ", ".join(s for s, n in slugs.items() if n > 1))
    return out


def _lines(build: KselftestBuild) -> list[tuple[str, str]]:
    """The (collection, test) entries of a build's kselftest-list.txt."""
    out = []
    for line in build.tests:
        collection, sep, test = line.partition(":")
        if sep and collection and test:
            out.append((collection, test))
    return out


def runnable(s: Selected) -> list[tuple[str, str]]:
    """The (collection, test) entries `s` runs on its kernel: its whole
    list, or the named tests that list has."""
    lines = _lines(s.build)
    if not s.tests:
        return lines
    return [(c, t) for c, t in lines if c == s.build.target and t in s.tests]


def expected_ids(selected: Sequence[Selected]) -> list[str]:
    """The ids a boot must report for `selected`: the named tests (whether
    or not that kernel's list has them), or every test of the target's list."""
    out: list[str] = []
    for s in selected:
        ids = ([test_id(s.build.target, t) for t in s.tests] if s.tests
               else [test_id(c, t) for c, t in _lines(s.build)])
        out += [i for i in ids if i not in out]
    return out


def key_parts(selected: Sequence[Selected]) -> list[str]:
    """What the kselftests add to a boot's results key (result_cache.key's
    `kselftests`): each target's build (its key holds the kernel's, so the
    source state and config) and the tests named; nothing without any."""
    if not selected:
        return []
    return [f"kselftest harness {HARNESS_VERSION}",
            *(f"{s.build.target}:{s.build.key}:{','.join(s.tests)}" for s in selected)]


def timeout_for(s: Selected, test_timeout: float) -> int:
    """-o SECS for a target: its `settings` timeout (the runner's 45 s
    without one), at least --test-timeout, at most MAX_TIMEOUT."""
    secs = DEFAULT_TIMEOUT
    text = untrusted.read_text(s.build.install / s.build.target / "settings", HEAD)
    for line in (text or "").splitlines():
        m = _TIMEOUT.fullmatch(line.strip())
        if m:
            secs = int(m.group(1))
    return max(1, min(MAX_TIMEOUT, max(secs, int(round(test_timeout)))))


def runner_args(s: Selected, test_timeout: float) -> list[str]:
    """run_kselftest.sh's options for `s`; [] when it has nothing to run."""
    todo = runnable(s)
    if not todo:
        return []
    if s.tests:
        picks = [a for c, t in todo for a in ("-t", f"{c}:{t}")]
    else:
        picks = [a for c in dict.fromkeys(c for c, _ in todo) for a in ("-c", c)]
    return ["-o", str(timeout_for(s, test_timeout)), *picks]


def disk_line(results: Path, mount: str = MOUNT) -> str:
    """Find the kselftest disk by its serial and mount it at `mount`; what
    went wrong goes to DISK_LOG."""
    log = shlex.quote(str(results / DISK_LOG))
    m = shlex.quote(mount)
    return (f'ksft_dev=; for d in /sys/block/vd*; do [ "$(cat $d/serial 2>/dev/null)" = '
            f'{DISK_SERIAL} ] && ksft_dev=/dev/${{d##*/}}; done; '
            f'if [ -z "$ksft_dev" ]; then echo "no virtio-blk disk with serial {DISK_SERIAL}" '
            f'> {log}; else {{ mkdir -p {m} && mount -t ext4 "$ksft_dev" {m}; }} > {log} 2>&1; fi')


def target_lines(selected: Sequence[Selected], results: Path, root: str,
                 test_timeout: float) -> list[str]:
    """One line per target with something to run: its runner, from its
    install at root/<slug>, in a subshell (a failed cd runs nothing and
    is said in the output), through a pipe (the runner reopens
    /dev/stdout with >>: on a plain file its writes and the shell's would
    overwrite each other)."""
    out = []
    for s in selected:
        args = runner_args(s, test_timeout)
        if not args:
            continue
        name = slug(s.build.target)
        res = results / f"kselftest-{name}"
        out.append(f"(cd {shlex.quote(f'{root}/{name}')} && ./run_kselftest.sh "
                   f"{' '.join(shlex.quote(a) for a in args)}; "
                   f"echo $? > {shlex.quote(f'{res}.rc')}) 2>&1 | "
                   f"cat > {shlex.quote(f'{res}.ktap')}")
    return out


def done_line(results: Path) -> str:
    return f"echo done > {shlex.quote(str(results / DONE))}"


def harness_lines(selected: Sequence[Selected], results: Path,
                  test_timeout: float) -> list[str]:
    """The guest's shell lines after pytest: mount the disk, run each
    target, say done."""
    return [disk_line(results), *target_lines(selected, results, MOUNT, test_timeout),
            done_line(results)]


def version_line(results: Path) -> str:
    """The harness's first line when no pytest runs (vm.guest_command's own
    first step otherwise): the kernel that booted says which it is."""
    return f"cat /proc/version > {shlex.quote(str(results / 'proc-version'))}"


# -- the disk image (host) -----------------------------------------------------

def _tree_bytes(top: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(top):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _link_or_copy(src: str, dst: str) -> None:
    # The stage is only read (by mkfs): a hard link saves copying mm's
    # programs; another filesystem than the cache's, a copy.
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def stage(selected: Sequence[Selected], top: Path) -> int:
    """`top`/<slug> = each target's install, for mkfs -d; returns its size."""
    shutil.rmtree(top, ignore_errors=True)
    top.mkdir(parents=True)
    for s in selected:
        shutil.copytree(s.build.install, top / slug(s.build.target), symlinks=True,
                        copy_function=_link_or_copy)
    return _tree_bytes(top)


def image_size(payload: int) -> int:
    size = max(IMAGE_MIN, payload * 3 // 2 + IMAGE_ROOM)
    return (size + (1 << 20) - 1) >> 20 << 20


def mkfs() -> str:
    for exe in (shutil.which("mkfs.ext4"), "/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"):
        if exe and os.access(exe, os.X_OK):
            return exe
    raise OrchError("--kselftest needs mkfs.ext4 (e2fsprogs) on the host for the tests' disk",
                    Exit.INFRA)


def make_image(selected: Sequence[Selected], image: Path) -> None:
    """The kselftest disk: a sparse ext4 image holding each selected
    target's install under its slug. mkfs reads the installs (orch's cache,
    cleaned when kept) and runs nothing of them."""
    top = image.with_name(image.name + ".stage")
    try:
        size = image_size(stage(selected, top))
        image.unlink(missing_ok=True)
        with open(image, "wb") as f:
            f.truncate(size)
        # 4 KiB blocks, as on any real disk (mke2fs makes a filesystem this
        # small with 1 KiB ones): a test may read the block size as the page's.
        r = proc.run([mkfs(), "-q", "-F", "-b", "4096", "-L", "orch-ksft", "-d", str(top),
                      str(image)], timeout=MKFS_TIMEOUT)
        if not r.ok:
            why = r.output.strip().splitlines()[-1] if r.output.strip() else \
                f"exit {r.returncode}"
            raise OrchError(f"making the kselftests' disk failed: {clean(why, 300)}",
                            Exit.INFRA)
    finally:
        shutil.rmtree(top, ignore_errors=True)


# -- reading -------------------------------------------------------------------

@dataclass
class Reported:
    tests: list[TestResult]
    done: bool                 # the harness wrote DONE: every target's runner returned
    died_in: str | None        # the test running when the output stopped (not done)
    problems: list[str] = field(default_factory=list)


def _groups(selected: Sequence[Selected],
            expected: Sequence[str]) -> list[tuple[str, Selected | None, list[str]]]:
    """(slug, its selection, its expected ids) per KTAP file: a selected
    target's file holds its collections' ids; an id no selection claims
    (kept results read back without one) is looked for in its collection's."""
    ids = [e for e in expected if is_kselftest(e)]
    out: list[tuple[str, Selected | None, list[str]]] = []
    claimed: set[str] = set()
    for s in selected:
        mine = {s.build.target, *(c for c, _ in _lines(s.build))}
        got = [e for e in ids if collection_of(e) in mine and e not in claimed]
        claimed.update(got)
        out.append((slug(s.build.target), s, got))
    rest: dict[str, list[str]] = {}
    for e in ids:
        if e not in claimed:
            rest.setdefault(slug(collection_of(e)), []).append(e)
    out += [(name, None, got) for name, got in rest.items()]
    return out


def _first_line(path: Path) -> str:
    try:
        text = untrusted.read_head(path, HEAD).decode(errors="replace")
    except untrusted.UntrustedError:
        return ""
    return next((clean(ln.strip(), 200) for ln in text.splitlines() if ln.strip()), "")


def _rc(path: Path) -> int | None:
    text = untrusted.read_text(path, 64)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _subtests(tests: list[ktap.KtapTest], parent: str) -> str:
    counts = Counter(t.status.value for t in tests if t.parent == parent)
    if not counts:
        return ""
    return f"{sum(counts.values())}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def report(results: Path, console_text: str, selected: Sequence[Selected],
           expected: Sequence[str]) -> Reported:
    """The kselftest results of one boot: each expected kselftest id, and
    any other top-level result the runners printed. `console_text` is not
    read yet: the results files are written as the tests run."""
    done = untrusted.read_text(results / DONE, 64) is not None
    disk = _first_line(results / DISK_LOG)
    tests: list[TestResult] = []
    problems: list[str] = []
    died_in: str | None = None
    for name, sel, ids in _groups(selected, expected):
        path = results / f"kselftest-{name}.ktap"
        absent: list[str] = []
        if sel is not None:
            ran = {test_id(c, t) for c, t in runnable(sel)}
            absent = [e for e in ids if e not in ran]
            ids = [e for e in ids if e in ran]
        tests += [TestResult(e, Status.MISS, "not in this kernel's kselftest list "
                             "(kselftest-list.txt of its build)",
                             properties={"source": "ktap"}) for e in absent]
        if not ids and sel is not None and not path.exists():
            continue
        rep = ktap.parse_file(path, expected=ids)
        why = ""
        if not rep.found:
            if not path.exists() and not done:
                why = "not reached: the guest stopped before this target's kselftests ran"
            else:
                rc = _rc(results / f"kselftest-{name}.rc")
                said = _first_line(path)
                why = "; ".join(p for p in (
                    ktap.NO_KTAP,
                    f"run_kselftest.sh exit {rc}" if rc is not None else "",
                    said,
                    f"the kselftest disk: {disk}" if disk else "") if p)
        for t in rep.tests:
            if t.parent is not None:
                continue
            r = t.result()
            if why and t.status is Status.MISS:
                r.message = why
            if sub := _subtests(rep.tests, t.id):
                r.properties["subtests"] = sub
            if rep.problems:
                r.properties["ktap_problems"] = clean("; ".join(rep.problems[:3]), 600)
            tests.append(r)
        problems += [f"kselftest-{name}.ktap: {p}" for p in rep.problems]
        if rep.died_in and not done and died_in is None:
            died_in = rep.died_in
    return Reported(tests, done, died_in, problems)


def read(results: Path, console_text: str, selected: Sequence[Selected],
         expected: Sequence[str]) -> list[TestResult]:
    """The kselftest results of one boot (report()'s tests)."""
    return report(results, console_text, selected, expected).tests
