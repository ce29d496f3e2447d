"""One job of a planned night (`orch job`), on a CI runner.

A baseline job builds its tree at the pinned commit, boots it with the
night's guest tests (always tonight: kept results of an earlier boot do not
answer) and exports the kernel and its results into SHARD/export/. It may
write the shared ccache.

A series job imports its baseline's export (--import DIR, that baseline job's
shard: only DIR/export/manifest.json, only the entries the shard's
job.json says it exported; cache_transfer.import_shard), then runs each of its
series' cells exactly as `orch nightly` does (nightly.cells.run_cell), into
SHARD/night.json and SHARD/cells/. None of its builds writes the shared
ccache. When the import is missing or fails its checksums, the cell builds
and boots the baseline itself: slower, never wrong.

SHARD/job.json says what the job did, and is written as it goes (the run
lifecycle finishes it on every exit), so a job killed by the engine still
leaves a shard that `orch merge` names.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.progress import Progress
from orchestrator.fanout import cache_transfer, jobfiles
from orchestrator.fanout.jobfiles import JobState
from orchestrator.guest import result_cache, selection, vm
from orchestrator.kernel import build, kconfig, kselftest_build, remote_ccache
from orchestrator.nightly import cells
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.night import Night, Plan, TreeState
from orchestrator.run import boots, builds
from orchestrator.run.lifecycle import Cause, Ending, Lifecycle
from orchestrator.run.options import Options, boot_settings
from orchestrator.run.record import RunState, now
from orchestrator.run.settings import Settings
from orchestrator.source import debsrc, tree


class JobShard:
    """A job's shard and its job.json, as the lifecycle (run.lifecycle)
    begins and ends them."""

    def __init__(self, rec: jobfiles.JobRecord, out: Path):
        self.rec, self.dir = rec, out

    def start(self) -> None:
        self.rec.state = JobState.RUNNING
        self.rec.write(self.dir)

    def end(self, ending: Ending) -> None:
        rec = self.rec
        if ending.cause is Cause.INTERRUPTED:
            rec.state, rec.error = JobState.INTERRUPTED, ending.error
        elif ending.cause is Cause.CRASH:
            rec.state, rec.error = JobState.FAILED, f"internal error: {ending.exception}"[:300]
        else:
            rec.state, rec.error = JobState.FAILED, ending.error
        rec.finished = now()
        rec.write(self.dir)

    def done(self) -> None:
        self.rec.state, self.rec.finished = JobState.DONE, now()
        self.rec.write(self.dir)


def run_job(plan_dir: Path, job_id: str, out: Path, imports: list[Path] | None = None,
            trees: dict[str, Path] | None = None, sandbox: bool = True,
            progress: Progress | None = None, machine: Settings | None = None) -> int:
    """The library entry point (tests call it): the exit status, the shard
    in `out`. `machine`: this runner's settings (its config.toml), which the
    plan's timeouts override (nightly.config_file.cell_settings)."""
    progress = progress or Progress()
    plan, jobs = jobfiles.read_plan_dir(plan_dir)
    job = jobs.get(job_id)
    t = next((x for x in plan.trees if x.label == job.tree), None)
    if t is None or job.config not in plan.configs:
        raise BadInput(f"job {job_id}: its tree or config is not in the plan")
    for name in (remote_ccache.WRITE_ENV, remote_ccache.READ_ENV):
        if os.environ.get(name):   # a bad URL is one line before any work
            remote_ccache.parse(os.environ[name], name == remote_ccache.WRITE_ENV, sandbox)
    jobfiles.copy_plan(plan_dir, out)
    shard = JobShard(jobfiles.JobRecord(job, plan.night, jobs.plan_digest, now(),
                                        host=socket.gethostname()), out)
    try:
        with Lifecycle(shard):
            _work(plan, jobs, job, t, shard.rec, out, imports or [], trees or {}, sandbox,
                  progress, machine)
            shard.done()
    finally:
        remote_ccache.allow_writes()
    return int(Exit.OK)


def _work(plan: Plan, jobs: jobfiles.Jobs, job: jobfiles.Job, t: TreeState,
          rec: jobfiles.JobRecord, out: Path, imports: list[Path], trees: dict[str, Path],
          sandbox: bool, progress: Progress, machine: Settings | None) -> None:
    path = _tree_here(t, trees.get(t.label), out / "logs")
    if job.kind == "baseline":
        remote_ccache.allow_writes()
        _baseline(plan, t, path, job.config, out, rec, sandbox, progress, machine)
        return
    remote_ccache.forbid_writes()
    rec.imported = _import(imports, job, jobs.plan_digest)
    rec.write(out)
    for line in rec.imported:
        progress.say(f"import {line}")
    _series(plan, job, t, path, out, sandbox, progress, machine)


def _import(shards: list[Path], job: jobfiles.Job, plan_digest: str) -> list[str]:
    """The planned baseline's export, from each shard given: only the one
    the series job needs (its job.json says so) is taken, only from
    SHARD/export/manifest.json, only the entries that job exported
    (cache_transfer.import_shard)."""
    planned = cache_transfer.Planned(job.needs or "", job.tree, job.config, plan_digest)
    lines: list[str] = []
    for shard in shards:
        lines += cache_transfer.import_shard(shard, planned)
    return lines


def _tree_here(t: TreeState, given: Path | None, logs: Path) -> Path:
    """The plan's tree on this runner, at its pinned commit."""
    path = given or Path(t.path)
    if not path.exists() and t.kind == "debian" and given is None:
        # A runner without the planner's import: the same version, imported
        # here (debsrc keeps each version as its own tree).
        d = debsrc.import_tree(t.package or debsrc.DEFAULT_PACKAGE,
                               tuple(t.suites or debsrc.DEFAULT_SUITES), log_dir=logs,
                               version=t.version)
        path = d.path
    if not path.exists():
        raise OrchError(f"tree {t.label}: {path} is not on this runner (clone it there, or "
                        "give --tree LABEL=PATH)", Exit.INFRA)
    try:
        tree.tree_id(path, t.commit)
    except Exception:
        raise OrchError(f"tree {t.label}: {path} lacks the planned commit {t.commit[:12]} "
                        "(fetch it first)", Exit.INFRA)
    return path


def baseline_options(plan: Plan, config: str, sandbox: bool,
                     machine: Settings | None = None) -> Options:
    """What a baseline job builds and boots with: the options of every cell
    of its tree x config (nightly.cells.night_options), their time limits,
    the night's kselftests, suites, kconfig and guest machine too, so that
    a cell's baseline, booted here, is what the cell's own command says. A
    series with kselftests of its own boots its baseline in its own cells."""
    return cells.night_options(plan, config, plan.guest_tests, sandbox, machine)


def baseline_settings(plan: Plan, config: str, sandbox: bool, expected: list[str],
                      accel: str, machine: Settings | None = None) -> boots.BootSettings:
    """The boot settings of a baseline job, so that the series jobs' cells
    find its results under their own key."""
    return boot_settings(baseline_options(plan, config, sandbox, machine), expected, accel)


def _baseline(plan: Plan, t: TreeState, path: Path, config: str, out: Path,
              rec: jobfiles.JobRecord, sandbox: bool, progress: Progress,
              machine: Settings | None) -> None:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    opts = baseline_options(plan, config, sandbox, machine)
    # The plan's config, or the one NIGHTLY.toml's kconfig / kconfig_add
    # make under that name (cells.night_options checked it is still so).
    kc = kconfig.chosen(opts.configs, opts.kconfig, opts.kconfig_add)[0]
    # What `orch test` selects with these options (run.series_run): the
    # builtin suite unless kselftests or suites are all that is named; each
    # kernel's own kselftest ids are added at its boot (boots.expected_of).
    expected = selection.collect(opts.guest_tests, opts.keyword,
                                 suites=selection.suites(opts.suites),
                                 builtin=not (opts.kselftests or opts.suites))
    ksft = kselftest_build.targets(kselftest_build.parse_specs(opts.kselftests))
    kselftest_build.check_targets(path, t.commit, ksft)
    ws = tree.workspace(tree.open_tree(path), announce=progress.say)
    try:
        src = builds.Source(t.commit, tree.tree_id(ws.src, t.commit), "baseline", "baseline")
        kernels = builds.build_all(ws, [kc], src, logs, builds.BuildSettings(
            opts.jobs, opts.sandbox, build.BUILD_TIMEOUT, kselftests=tuple(ksft)), progress)
    finally:
        ws.lock.release()
    k = kernels[kc.name]
    progress.say(f"baseline {t.label} {config}: "
                 + ("cached kernel" if k.cached else f"built in {k.seconds:.0f}s"))
    kvm, _why = vm.probe_kvm(k.image)
    settings = baseline_settings(plan, config, sandbox, expected, "kvm" if kvm else "tcg",
                                 machine)
    b = boots.boot(boots.BootJob(k, out / "results" / config / "baseline",
                                 logs / f"console-{config}-baseline.log", "baseline",
                                 reuse=False), settings, opts.guest_timeout)
    progress.say(f"baseline {t.label} {config}: {b.judged.status}"
                 + (f" ({b.judged.reason})" if b.judged.reason else ""))
    if not result_cache.keepable(b.guest):
        raise OrchError(f"baseline {t.label} {config} did not boot to a result: "
                        f"{b.judged.reason or b.judged.status}", Exit.INFRA)
    rec.exported = cache_transfer.export([("kernels", k.key),
                                          ("results", boots.results_key(k, settings))],
                                         out / jobfiles.EXPORT)
    rec.write(out)


def _series(plan: Plan, job: jobfiles.Job, t: TreeState, path: Path, out: Path, sandbox: bool,
            progress: Progress, machine: Settings | None) -> None:
    n = nightrec.read_if_any(out) or Night(plan.night, now(), plan)
    n.write(out)
    by_key = {s.key: s for s in plan.series}
    for key in job.series:
        cells.run_cell(n, out, by_key[key], t, job.config, plan.guest_tests, sandbox,
                       progress, baseline_booted=True, tree_path=path, machine=machine)
    n.state = RunState.DONE
    n.write(out)

