"""`orch job PLAN_DIR JOB --out SHARD`: one job of a planned night, on a CI
runner (fanout).

A baseline job builds its tree at the pinned commit, boots it with the
night's guest tests (always tonight: kept results of an earlier boot do not
answer) and exports the kernel and its results into SHARD/export/. It may
write the shared ccache.

A series job imports its baseline's export (--import DIR, that baseline job's
shard: only DIR/export/manifest.json, only the entries the shard's
job.json says it exported; cache_transfer.import_shard), then runs each of its
series' cells exactly as `orch nightly` does, into SHARD/night.json and
SHARD/cells/. None of its builds writes the shared ccache. When the import
is missing or fails its checksums, the cell builds and boots the baseline
itself: slower, never wrong.

SHARD/job.json says what the job did, and is written as it goes, so a job
killed by the engine still leaves a shard that `orch merge` names.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from orchestrator.commands import common, nightly
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.progress import Progress
from orchestrator.fanout import cache_transfer, jobfiles
from orchestrator.guest import result_cache, selection, vm
from orchestrator.kernel import build, kconfig, remote_ccache
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.night import Night, Plan, TreeState
from orchestrator.run import boots, builds
from orchestrator.run.record import now
from orchestrator.source import debsrc, tree

NAME = "job"
HELP = "run one job of a planned night (orch plan) on this machine"
EPILOG = """\
exit status:
  0    the job ran (a series job: every cell has its run directory; what
       the cells found is orch merge's to judge)
  2    a bad plan directory, job name or flag
  5    the baseline did not build or boot, or the tree is not here
  130  interrupted"""


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".",
                       **common.parser_kwargs(EPILOG))
    p.add_argument("plan", type=Path, metavar="PLAN_DIR")
    p.add_argument("job", metavar="JOB", help="a job name from the plan's jobs.json")
    p.add_argument("--out", type=Path, required=True, metavar="SHARD",
                   help="this job's run directory (what the engine uploads)")
    p.add_argument("--import", dest="imports", type=Path, action="append", default=[],
                   metavar="DIR", help="this series job's baseline job's shard (its --out): "
                   "the kernel and kept results it exported (SHARD/export/) are imported, "
                   "nothing else; repeatable")
    p.add_argument("--tree", dest="trees", action="append", default=[], metavar="LABEL=PATH",
                   help="where this runner has a git tree of the plan (default: the path "
                   "the plan names)")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="where orch keeps trees, kernels and kept results (default: "
                   "$ORCH_CACHE, else ~/.cache/orch)")
    p.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                   help="build and boot without the curated view")
    p.set_defaults(run=main)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    common.use_cache(args.cache)
    where = {}
    for spec in args.trees:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise BadInput(f"--tree {spec!r}: give LABEL=PATH")
        where[label] = Path(path).expanduser().resolve()
    return run_job(args.plan, args.job, args.out.expanduser().resolve(), args.imports,
                   where, sandbox=args.sandbox)


def run_job(plan_dir: Path, job_id: str, out: Path, imports: list[Path] | None = None,
            trees: dict[str, Path] | None = None, sandbox: bool = True,
            progress: Progress | None = None) -> int:
    """The library entry point (tests call it): the exit status, the shard
    in `out`."""
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
    rec = jobfiles.JobRecord(job, plan.night, jobs.plan_digest, now(), host=socket.gethostname())
    rec.write(out)
    try:
        path = _tree_here(t, (trees or {}).get(t.label), out / "logs")
        if job.kind == "baseline":
            remote_ccache.allow_writes()
            _baseline(plan, t, path, job.config, out, rec, sandbox, progress)
        else:
            remote_ccache.forbid_writes()
            rec.imported = _import(imports or [], job, jobs.plan_digest)
            rec.write(out)
            for line in rec.imported:
                progress.say(f"import {line}")
            _series(plan, job, t, path, out, sandbox, progress)
    except OrchError as e:
        rec.state, rec.error, rec.finished = "failed", str(e), now()
        rec.write(out)
        raise
    except KeyboardInterrupt:
        rec.state, rec.error, rec.finished = "interrupted", "interrupted", now()
        rec.write(out)
        raise
    except Exception as e:
        rec.state, rec.error, rec.finished = "failed", f"internal error: {e}"[:300], now()
        rec.write(out)
        raise
    finally:
        remote_ccache.allow_writes()
    rec.state, rec.finished = "done", now()
    rec.write(out)
    return int(Exit.OK)


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


def _baseline(plan: Plan, t: TreeState, path: Path, config: str, out: Path,
              rec: jobfiles.JobRecord, sandbox: bool, progress: Progress) -> None:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    kc = kconfig.load(config)
    expected = selection.collect(plan.guest_tests)
    ws = tree.workspace(tree.open_tree(path), announce=progress.say)
    try:
        src = builds.Source(t.commit, tree.tree_id(ws.src, t.commit), "baseline", "baseline")
        kernels = builds.build_all(ws, [kc], src, logs, builds.BuildSettings(
            build.jobs(), sandbox, build.BUILD_TIMEOUT), progress)
    finally:
        ws.lock.release()
    k = kernels[config]
    progress.say(f"baseline {t.label} {config}: "
                 + ("cached kernel" if k.cached else f"built in {k.seconds:.0f}s"))
    kvm, _why = vm.probe_kvm(k.image)
    settings = boots.BootSettings(plan.guest_tests, expected, vm.TEST_TIMEOUT, 1,
                                  "kvm" if kvm else "tcg", confined=sandbox)
    # The same settings as each cell's `orch test` (nightly.run_cell), so
    # that the series jobs' cells find these results under the same key.
    b = boots.boot(boots.BootJob(k, out / "results" / config / "baseline",
                                 logs / f"console-{config}-baseline.log", "baseline",
                                 reuse=False), settings, vm.BOOT_TIMEOUT)
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
            progress: Progress) -> None:
    n = nightrec.read_if_any(out) or Night(plan.night, now(), plan)
    n.write(out)
    by_key = {s.key: s for s in plan.series}
    for key in job.series:
        nightly.run_cell(n, out, by_key[key], t, job.config, plan.guest_tests, sandbox,
                         progress, baseline_booted=True, tree_path=path)
    n.state = "done"
    n.write(out)

