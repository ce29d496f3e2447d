"""A night split into a CI engine's jobs, and each job's record.

`orch plan` resolves a night once (night_plan.make: plan.json and the pinned
series mboxes in a plan directory) and cuts it into jobs:

  baseline jobs   one per tree x config: build the tree at its pinned commit,
                  boot it, and export the kernel and its kept results (and,
                  with a shared ccache, fill it). Trusted code only.
  series jobs     one per tree x config x group of series, after the
                  baseline jobs: import that baseline, then run each series'
                  cell as the single-machine nightly would (`orch test`
                  through its library), reading the shared ccache only.

The engine (GitHub Actions, GitLab CI) runs the jobs on its runners; orch
never schedules anything. Each job writes a shard (its run directory:
job.json, and for series jobs night.json and cells/) that `orch merge`
puts back into one night.

A job is sized so that its baseline is built at most once: one tree x config
per job. The group size trades runners for boots: every series is booted
once anyway, so smaller groups only add runner start-up.
"""

from __future__ import annotations

import enum
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import jsonio, names, untrusted, untrusted_tree
from orchestrator.core.errors import BadInput
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.night import Plan

JOBS_FILE = "jobs.json"
JOB_FILE = "job.json"
DEFAULT_GROUP = 4
EXPORT = "export"          # a baseline job's kernels and kept results, in its shard


@dataclass
class Job:
    id: str                  # b-<tree>-<config>, s-<tree>-<config>-<n>: safe in any CI name
    kind: str                # baseline or series
    tree: str                # TreeState.label
    config: str
    series: list[str] = field(default_factory=list)   # SeriesRev keys (series jobs)
    needs: str | None = None  # the baseline job whose export a series job imports
    title: str = ""          # what a CI page shows


@dataclass
class Jobs:
    night: str
    plan_digest: str         # which plan.json these jobs cut (merge refuses a mix)
    group_size: int
    jobs: list[Job]

    def get(self, job_id: str) -> Job:
        for j in self.jobs:
            if j.id == job_id:
                return j
        raise BadInput(f"no job {job_id!r} in this plan (jobs: "
                       f"{', '.join(j.id for j in self.jobs) or 'none'})")


class JobState(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass
class JobRecord:
    """A job's shard record: `orch job` writes it, `orch merge` reads it."""
    job: Job
    night: str
    plan_digest: str
    started: str
    state: JobState = JobState.RUNNING
    finished: str | None = None
    error: str | None = None
    imported: list[str] = field(default_factory=list)   # one line per entry: taken or why not
    exported: list[str] = field(default_factory=list)   # kernels/<key>, results/<key>
    host: str = ""

    def write(self, directory: Path) -> None:
        jsonio.write(directory / JOB_FILE, jsonio.dump(self))


def read_job(directory: Path) -> JobRecord:
    try:
        return jsonio.load(JobRecord, jsonio.read(directory / JOB_FILE))
    except (OSError, ValueError) as e:
        raise BadInput(f"{directory}: no readable {JOB_FILE} ({e})")
    except (TypeError, KeyError, AttributeError) as e:
        raise BadInput(f"{directory / JOB_FILE} is not an orch job record: {e}")


def slug(text: str) -> str:
    """A CI job's name part: lower case, dashes (GitLab and GitHub ids)."""
    return names.slug(text.lower(), 30, keep="a-z0-9", sep="-")


def plan_digest(plan: Plan) -> str:
    data = jsonio.dump(plan)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def check_group_size(group_size: int) -> None:
    if group_size < 1:
        raise BadInput(f"--group-size must be at least 1, not {group_size}")


def cut(plan: Plan, group_size: int = DEFAULT_GROUP) -> Jobs:
    """Baseline jobs first (tree x config), then series jobs needing them."""
    check_group_size(group_size)
    jobs: list[Job] = []
    if plan.series:
        for t in plan.trees:
            for c in plan.configs:
                jobs.append(Job(f"b-{slug(t.label)}-{slug(c)}", "baseline", t.label, c,
                                title=f"baseline {t.label} {c}"))
    ids = {j.id for j in jobs}
    if len(ids) != len(jobs):
        raise BadInput("two trees or configs give the same job name: label them apart")
    for t in plan.trees:
        for c in plan.configs:
            base = f"b-{slug(t.label)}-{slug(c)}"
            keys = [s.key for s in plan.series]
            for i in range(0, len(keys), group_size):
                group = keys[i:i + group_size]
                jobs.append(Job(f"s-{slug(t.label)}-{slug(c)}-{i // group_size + 1}", "series",
                                t.label, c, group, base,
                                title=f"{t.label} {c}: {len(group)} series"))
    return Jobs(plan.night, plan_digest(plan), group_size, jobs)


def write_jobs(directory: Path, jobs: Jobs) -> None:
    jsonio.write(directory / JOBS_FILE, jsonio.dump(jobs))


def read_plan_dir(directory: Path) -> tuple[Plan, Jobs]:
    """A plan directory (orch plan's --out, or a shard: both carry it)."""
    try:
        plan = nightrec.read_plan(directory)
        jobs = jsonio.load(Jobs, jsonio.read(directory / JOBS_FILE))
    except (OSError, ValueError) as e:
        raise BadInput(f"{directory} is not an orch plan directory: {e}")
    except (TypeError, KeyError, AttributeError) as e:
        raise BadInput(f"{directory}: plan.json or {JOBS_FILE} is not orch's: {e}")
    if jobs.plan_digest != plan_digest(plan):
        raise BadInput(f"{directory}: {JOBS_FILE} was cut from another plan.json "
                       "(edited or mixed up); run orch plan again")
    return plan, jobs


def copy_plan(src: Path, dest: Path) -> list[str]:
    """What a shard carries of its plan: plan.json, jobs.json, the mboxes.
    From a shard (an artifact) only regular files are taken, never a link's
    target; returns what was left out, one line each."""
    dest.mkdir(parents=True, exist_ok=True)
    if src.resolve() == dest.resolve():
        return []
    try:
        for name in (nightrec.PLAN_FILE, JOBS_FILE):
            data = untrusted.read_capped(src / name, jsonio.MAX_RECORD)
            (dest / name).unlink(missing_ok=True)
            (dest / name).write_bytes(data)
    except untrusted.UntrustedError as e:
        raise BadInput(f"{src} is not an orch plan directory: {e}")
    if not (src / "series").is_dir() or (src / "series").is_symlink():
        return []
    shutil.rmtree(dest / "series", ignore_errors=True)
    try:
        return untrusted_tree.copy(src, ("series",), dest / "series", untrusted_tree.RUN_DIR)
    except untrusted.UntrustedError as e:
        return [str(e)]
