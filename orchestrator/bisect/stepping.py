"""One bisect step: build a commit, boot it with the selected tests, and say
good, bad or skip (judge.py). `orch bisect` runs one per commit git
names, `orch check` runs one for `git bisect run`.

A step holds orch's build worktree only while it builds, like `orch test`:
the kernel it boots lives in the kernel cache. A commit built before by any
orch command costs nothing (the kernel cache), and a kernel booted before
with the same selection boots nothing (result_cache).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.bisect import revs
from orchestrator.bisect.judge import ABORT, RETRY, Build, Mode, classify
from orchestrator.core.errors import Exit, OrchError
from orchestrator.core.models import Kernel
from orchestrator.core.progress import Progress
from orchestrator.guest import result_cache, vm
from orchestrator.kernel import build, kconfig, kselftest_build
from orchestrator.run import boots, builds, options
from orchestrator.run.verdict import Side
from orchestrator.source import tree

LOCK_WAIT = 3600


@dataclass(frozen=True)
class StepSettings:
    mode: Mode
    jobs: int
    sandbox: bool
    boot: boots.BootSettings
    guest_timeout: float
    rerun: bool = False         # boot even when results are kept


@dataclass
class StepResult:
    commit: str
    subject: str
    author: str
    outcome: str                # good, bad, skip, abort (old, new with --fixed)
    reason: str
    build: str                  # built, cached, failed, unsatisfiable
    build_seconds: float
    build_log: Path
    kernel: Kernel | None = None
    boot: str | None = None     # booted, kept; None: nothing booted
    boot_seconds: float | None = None
    console: Path | None = None
    side: Side | None = None    # the kernel judged on its own
    attempts: int = 0           # boots (kept ones too)
    results: dict[str, str] = field(default_factory=dict)   # test -> status
    sha256: str | None = None   # the image's (its kept results are keyed by it)
    boot_banner: str | None = None   # what the booted kernel printed
    reproduce: str | None = None     # the `orch test` that builds and boots it again

    def counts(self) -> str:
        n: dict[str, int] = {}
        for s in self.results.values():
            n[s] = n.get(s, 0) + 1
        return ", ".join(f"{v} {k}" for k, v in sorted(n.items())) or "-"


def short(commit: str) -> str:
    return commit[:12]


class Stepper:
    """Steps in one workspace for one config."""

    def __init__(self, ws: tree.Workspace, kc: kconfig.KConfig, settings: StepSettings,
                 run_dir: Path, progress: Progress, trusted: str | None = None,
                 tree_path: Path | None = None):
        # `trusted`: the range's older end (a series' base, or the --good
        # commit you name), built like a baseline in the trusted build
        # directory; every other commit is built in this bisect's
        # copy-on-write layer over it (buildtree), which its steps share.
        # `tree_path`: the tree as the user named it, for reproduce lines
        # (None: none are written).
        self.ws, self.kc, self.settings, self.trusted = ws, kc, settings, trusted
        self.tree_path = tree_path
        self.dir, self.logs, self.progress = run_dir, run_dir / "logs", progress
        self.accel: str | None = None

    def _build(self, commit: str) -> tuple[Build, Kernel | None, float, Path]:
        label = short(commit)
        log = builds.log_path(self.logs, self.kc.name, label)
        s = self.settings
        self.ws.lock.acquire(LOCK_WAIT, self.progress.say)
        try:
            side = "baseline" if commit == self.trusted else "patched"
            ks = builds.build_all(self.ws, [self.kc], builds.Source(
                commit, tree.tree_id(self.ws.src, commit), side, label), self.logs,
                builds.BuildSettings(s.jobs, s.sandbox, build.BUILD_TIMEOUT,
                                     kselftests=kselftest_build.targets_of(s.boot.kselftests)),
                self.progress)
        except OrchError as e:
            if e.exit == Exit.BAD_INPUT:      # Kconfig dropped an option the config asks for
                return Build.UNSATISFIABLE, None, 0.0, log
            if e.exit == Exit.PATCHED_BUILD or side == "baseline":
                # The compiler or the link failed (the trusted end's build
                # says INFRA for that: it is a baseline's build).
                return Build.FAILED, None, 0.0, log
            raise
        finally:
            self.ws.lock.release()
        k = ks[self.kc.name]
        return Build.OK, k, k.seconds, log

    def _boot(self, k: Kernel, sample: int) -> boots.Booted:
        s = self.settings
        if self.accel is None:
            # Part of the results key: probed once (and kept per host boot).
            kvm, _why = vm.probe_kvm(k.image)
            self.accel = "kvm" if kvm else "tcg"
        name = short(k.key) + (f"-{sample}" if sample else "")
        job = boots.BootJob(k, self.dir / "results" / name,
                            self.logs / f"console-{self.kc.name}-{name}.log", "patched",
                            reuse=not s.rerun, sample=sample)
        # s.boot came from options.boot_settings (confined included); only
        # the accelerator is learnt here, at the first boot.
        settings = dataclasses.replace(s.boot, accel=self.accel)
        return boots.boot(job, settings, s.guest_timeout,
                          lambda text: self.progress.status(f"boot {short(k.key)}", text))

    def reproduce_options(self, commit: str) -> options.Options | None:
        """The `orch test` that builds `commit` with this step's config and
        boots it with this step's boot settings, as the patched side of its
        parent: its patched kernel is this step's (the kernel cache keys on
        the source tree and .config) and its tests' statuses are this
        step's. None for a root commit, or without the tree's path."""
        parent = tree.has_commit(self.ws.src, f"{commit}^")
        if parent is None or self.tree_path is None:
            return None
        s = self.settings
        return options.Options(tree=self.tree_path, range=f"{parent}..{commit}",
                               **self.kc.flags(), build_only=s.mode == Mode.BUILD,
                               jobs=s.jobs, rerun=s.rerun,
                               **options.boot_flags(s.boot, s.guest_timeout))

    def reproduce(self, commit: str) -> str | None:
        o = self.reproduce_options(commit)
        return options.reproduce_line(o) if o else None

    def step(self, commit: str, good_end: Side | None = None, sample: int = 0,
             retries: int = 1) -> StepResult:
        """Build and boot `commit`; a kernel that does not reach the tests
        boots `retries` more times (each a new sample) before it is a skip."""
        subject, author = revs.describe(self.ws.src, commit)
        state, k, seconds, log = self._build(commit)
        r = StepResult(commit, subject, author, "", "", state.value if state != Build.OK
                       else ("cached" if k and k.cached else "built"), seconds, log, k,
                       sha256=result_cache.image_digest(k.image) if k else None,
                       reproduce=self.reproduce(commit))
        mode = self.settings.mode
        if k is None or mode == Mode.BUILD:
            step = classify(mode, state, None)
            r.outcome, r.reason = step.outcome, step.reason
            return r
        attempt = 0 if retries else 1
        while True:
            b = self._boot(k, sample + r.attempts)
            r.attempts += 1
            r.boot = "kept" if b.guest.cached else "booted"
            r.boot_seconds = round(b.guest.seconds, 1)
            r.console, r.side, r.boot_banner = b.guest.console, b.judged, b.guest.banner
            r.results = {n: t.status.value for n, t in b.judged.tests.items()}
            step = classify(mode, state, b.judged, good_end, attempt)
            if step.outcome != RETRY:
                break
            self.progress.say(f"{short(commit)}: {step.reason}")
            attempt += 1
        r.outcome, r.reason = step.outcome, step.reason
        if step.outcome == ABORT:
            raise OrchError(f"{short(commit)}: {step.reason}", Exit.INFRA)
        return r


def crash_of(side: Side | None) -> str | None:
    """What killed a kernel, for "differs from the bad end's"."""
    if side is None:
        return None
    for s in side.splats:
        return f"{s.kind}: {s.title}"
    if side.died_in:
        return f"died during {side.died_in}"
    return None

