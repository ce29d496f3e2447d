"""The build stage: every config of one source state, at once.

Returns kernels and writes no run record; `on_built` lets the caller record
each config as it finishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import proc
from orchestrator.core.errors import Exit, OrchError
from orchestrator.core.jobserver import JobServer
from orchestrator.core.models import Kernel
from orchestrator.core.progress import Progress
from orchestrator.kernel import build, kconfig, kselftest_build
from orchestrator.source import tree


@dataclass(frozen=True)
class BuildSettings:
    jobs: int
    sandbox: bool
    timeout: float                   # for each build
    deadline: float | None = None    # time.monotonic() when the whole run must end
    run_timeout: float | None = None  # the whole run's limit, for the message
    kselftests: tuple[str, ...] = ()  # targets built for each kernel (kselftest_build)


@dataclass(frozen=True)
class Source:
    """One source state to build: a commit of the workspace."""
    commit: str
    tree_id: str          # its tree: what the kernel cache keys on
    side: str             # baseline or patched: whose fault a failure is
    label: str            # for logs and progress: "baseline", "patch 1/3"


def log_path(logs: Path, config: str, label: str) -> Path:
    return logs / f"build-{config}-{label.replace(' ', '').replace('/', 'of')}.log"


def kselftest_log(logs: Path, config: str, label: str, target: str) -> Path:
    """A kselftest target's build log: its own, never the kernel's (the
    warning diff reads that)."""
    return logs / (f"kselftest-{config}-{label.replace(' ', '').replace('/', 'of')}-"
                   f"{target.replace('/', '-')}.log")


def build_all(ws: tree.Workspace, kcs: list[kconfig.KConfig], src: Source, logs: Path,
              settings: BuildSettings, progress: Progress,
              on_built: Callable[[str, Kernel | None, Path], None] = lambda c, k, log: None,
              ) -> dict[str, Kernel]:
    """Build every config of `src` at once, sharing one job budget; raise
    the first failure once all have finished.

    Several configs build concurrently as clients of one make jobserver:
    one build's serial stretches (Kconfig, the link) overlap the others'
    compiles, and the machine never runs more than `jobs` compilers.
    `on_built(config, kernel or None, log)` is called for each as it ends.
    """
    tree.checkout(ws.src, src.commit)
    out: dict[str, Kernel] = {}
    errors: list[OrchError] = []
    with JobServer(settings.jobs, len(kcs)) as js:
        def one(c: kconfig.KConfig) -> Kernel:
            progress.say(f"{src.label} build, config {c.name}")
            opts = build.BuildOptions(
                sandbox=settings.sandbox, jobserver=js, timeout=settings.timeout,
                status=lambda text: progress.status(f"build {c.name}", text))
            # --no-sandbox (your own code): no layer either, the trusted
            # directory as before (a layer is mounted inside the sandbox).
            trusted = src.side == "baseline" or not settings.sandbox
            bd = ws.build_tree(c.name, trusted)
            k = build.build(ws.src, bd, c, src.tree_id, log_path(logs, c.name, src.label),
                            src.side, opts)
            if settings.kselftests:
                # From the same source state, headers and build directory.
                k.kselftests = kselftest_build.build_for(
                    ws.src, bd, k, settings.kselftests,
                    lambda t: kselftest_log(logs, c.name, src.label, t), src.side, opts)
            return k
        pool = ThreadPoolExecutor(max_workers=len(kcs))
        try:
            futures = {c.name: pool.submit(one, c) for c in kcs}
            for c in kcs:
                try:
                    k = futures[c.name].result()
                except OrchError as e:
                    errors.append(e)
                    on_built(c.name, None, log_path(logs, c.name, src.label))
                    continue
                out[c.name] = k
                on_built(c.name, k, log_path(logs, c.name, src.label))
                ratio = (k.ccache or {}).get("hit_rate")
                progress.say(f"{src.label} build, config {c.name}: " + (
                    "cached" if k.cached else f"built in {k.seconds:.0f}s, {k.compiled} "
                    "compiled" + (f", ccache hit rate {ratio:.0%}" if ratio is not None else "")))
        except BaseException:
            # Ctrl-C/SIGTERM lands in this thread; the builds' make processes
            # belong to the workers, which would otherwise run on.
            proc.kill_all()
            raise
        finally:
            pool.shutdown(wait=True)
    if errors:
        if settings.deadline is not None and time.monotonic() >= settings.deadline:
            raise OrchError(f"the whole-run timeout ({settings.run_timeout:.0f}s) ran out "
                            f"during the {src.label} build", Exit.INFRA)
        raise errors[0]
    return out
