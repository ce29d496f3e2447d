"""The GitLab pipeline `orch plan --format gitlab` writes, run by a real CI
engine: gitlab-ci-local (npm; scripts/setup.sh installs the version its
lock file pins into .tools/) with the shell executor and shell isolation,
so each job runs in its own copy of the project and gets only what the
engine passes it: its `needs:` jobs' artifacts and its `cache:`.

On the stand-in tree against the loopback lore (test_nightly's world): the
parent pipeline's orch-plan job (examples/gitlab/orch-fanout.gitlab-ci.yml)
plans the night, then the child pipeline it wrote runs: one baseline job,
two series jobs importing the baseline job's shard, the merge. The merged
night must be the one `orch nightly` runs on one machine from the same plan.

What gitlab-ci-local cannot do, and what stands in for it (docs/fanout.md,
"Running the pipeline locally"): it ignores `needs: pipeline:` (the plan
from the parent pipeline's artifacts), so the test commits the parent job's
exported plan/ into the project; its downstream pipelines (`trigger:`) do
not pass the parent's artifacts either and do not fail the trigger job when
the child fails, so the child file runs with `--file`; an `after_script`
runs in a fresh copy of the project, losing what the job wrote (so the
generated merge job has none). `tags:` and `timeout:` are accepted and not
acted on. The runner's `orch` and `scripts/setup.sh` are small scripts the
test writes: this checkout's orch with the stand-in guest, and no installing.
Four pipelines: 35 to 60 s on two cores.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ORCH_STANDIN, REPO, TESTS_DIR, git
from lore_mails import day
from test_nightly import COUNTER_CID, FEATURE_CID, world  # noqa: F401 (the fixture)

from orchestrator.fanout import nightly_run as nightly
from orchestrator.nightly import config_file, history

NIGHT = "2026-11-27"
PARENT = REPO / "examples" / "gitlab" / "orch-fanout.gitlab-ci.yml"
PINNED = REPO / "scripts" / "gitlab-ci-local" / "package.json"
TOOLS = REPO / ".tools"
GCL = TOOLS / "node_modules" / ".bin" / "gitlab-ci-local"
# What a night's cell is, whichever machine ran it (test_fanout.py's SAME).
SAME = ("series", "version", "msgid", "tree", "commit", "config", "status", "detail", "run_dir",
        "reproduce", "tests", "splats", "figures")
# The engine's names of the child pipeline's jobs (a matrix job is named by
# its variables).
JOBS = {"base": "orch-baseline: [b-mini-base]",
        "s1": "orch-series: [s-mini-base-1,b-mini-base]",
        "s2": "orch-series: [s-mini-base-2,b-mini-base]",
        "merge": "orch-merge"}


def _engine_env() -> dict[str, str]:
    """This environment, with the Node.js setup.sh installed where the
    machine's is too old first on PATH (when it did)."""
    node = TOOLS / "node" / "node_modules" / ".bin"
    path = os.environ["PATH"]
    return {**os.environ, "PATH": f"{node}:{path}" if node.is_dir() else path}


def _engine() -> Path:
    """gitlab-ci-local as scripts/setup.sh installs it: missing, or another
    version than the one pinned, is a failure naming setup.sh (CI runs it
    first), never a skip."""
    pinned = json.loads(PINNED.read_text())["dependencies"]["gitlab-ci-local"]
    if not os.access(GCL, os.X_OK):
        pytest.fail(f"gitlab-ci-local is not installed ({GCL} is missing): run scripts/setup.sh")
    r = subprocess.run([str(GCL), "--version"], capture_output=True, text=True, timeout=60,
                       env=_engine_env(), check=False)
    if r.stdout.strip() != pinned:
        pytest.fail(f"gitlab-ci-local {r.stdout.strip() or r.stderr.strip()[-300:]!r} is not "
                    f"the pinned {pinned}: run scripts/setup.sh")
    return GCL


# The runner's `orch`: this checkout's, with the stand-in guest (the
# stand-in kernel cannot boot). ORCH_BREAK=JOB (a CI variable) breaks that
# job's orch the way a runner without the tree would: --tree to a missing path.
ORCH = """\
#!/bin/sh
if [ -n "${{ORCH_BREAK:-}}" ] && [ "${{ORCH_JOB:-}}" = "$ORCH_BREAK" ]; then
    set -- "$@" --tree mini={missing}
fi
exec {python} {script} "$@"
"""
# The runner's setup: orch is installed already (setup.sh on a runner image;
# docs/fanout.md), so it only says which.
SETUP = """\
#!/bin/sh
exec .venv/bin/orch --version
"""


@pytest.fixture
def project(world, tmp_path):
    """A git project as a GitLab project would hold it: the parent pipeline
    (the example, planning the test's night with one series per job), the
    night's NIGHTLY.toml where the example looks for it, the runner's orch."""
    world["srv"].archive.now = day(NIGHT)
    proj = tmp_path / "project"
    (proj / "examples").mkdir(parents=True)
    (proj / "examples" / "nightly.toml").write_text(world["toml"].read_text())
    text = PARENT.read_text()
    line = '.venv/bin/orch plan "$NIGHTLY" --out plan --format gitlab'
    assert text.count(line) == 1, PARENT
    (proj / ".gitlab-ci.yml").write_text(
        text.replace(line, f"{line} --night {NIGHT} --group-size 1"))
    standin = tmp_path / "orch_standin.py"
    standin.write_text(ORCH_STANDIN.format(tests=str(TESTS_DIR), repo=str(REPO), harness=False))
    orch = ORCH.format(python=shlex.quote(sys.executable), script=shlex.quote(str(standin)),
                       missing=shlex.quote(str(tmp_path / "no-tree")))
    for path, body in ((".venv/bin/orch", orch),
                       ("scripts/setup.sh", SETUP)):
        (proj / path).parent.mkdir(parents=True, exist_ok=True)
        (proj / path).write_text(body)
        (proj / path).chmod(0o755)
    (proj / ".gitignore").write_text(".gitlab-ci-local/\n")
    git(proj, "init", "-q", "-b", "main")
    # What gitlab-ci-local reads for CI_PROJECT_PATH and the commit's author.
    git(proj, "remote", "add", "origin", "https://gitlab.example.org/kernel/orch-night.git")
    git(proj, "config", "user.name", "T")
    git(proj, "config", "user.email", "t@example.org")
    git(proj, "add", "-A")
    git(proj, "commit", "-q", "-m", "the project")
    return {**world, "proj": proj, "home": tmp_path / "gcl-home"}


def engine(p: dict, *args: str) -> tuple[int, str, dict[str, str]]:
    """gitlab-ci-local ARGS in the project: its exit status, its output and
    each job's result as its closing lines say (PASS, FAIL, WARN)."""
    t0 = time.monotonic()
    r = subprocess.run([str(_engine()), "--shell-isolation", "--no-artifacts-to-source",
                        "--no-color", "--home", str(p["home"]), *args],
                       cwd=p["proj"], env=_engine_env(), capture_output=True, text=True,
                       timeout=600, check=False)
    out = r.stdout + r.stderr
    print(f"gitlab-ci-local {' '.join(args)}: exit {r.returncode} in "
          f"{time.monotonic() - t0:.1f}s\n{out}")
    results = {m[2].strip(): m[1] for m in re.finditer(r"^ (PASS|FAIL|WARN) +(.+)$", out, re.MULTILINE)}
    return r.returncode, out, results


def said(out: str, job: str, pattern: str) -> bool:
    """Whether the engine's log has a line of JOB matching PATTERN."""
    return re.search(rf"^{re.escape(job)} +{pattern} *$", out, re.MULTILINE) is not None


def plan_job(p: dict) -> tuple[int, str, dict[str, str]]:
    """The parent pipeline's orch-plan job, in a scheduled pipeline."""
    return engine(p, "--variable", "CI_PIPELINE_SOURCE=schedule",
                  "--ignore-predefined-vars", "CI_PIPELINE_SOURCE", "orch-plan")


def plan_with_the_engine(p: dict) -> Path:
    """The parent pipeline's orch-plan job (a scheduled pipeline), run by
    the engine; its plan/ artifact committed, standing in for the child's
    `needs: pipeline: $PARENT_PIPELINE_ID`."""
    code, out, results = plan_job(p)
    assert (code, results) == (0, {"orch-plan": "PASS"}), out
    art = p["proj"] / ".gitlab-ci-local" / "artifacts" / "orch-plan" / "plan"
    jobs = json.loads((art / "jobs.json").read_text())["jobs"]
    assert [j["id"] for j in jobs] == ["b-mini-base", "s-mini-base-1", "s-mini-base-2"], out
    shutil.copytree(art, p["proj"] / "plan", dirs_exist_ok=True)
    git(p["proj"], "add", "plan")
    git(p["proj"], "commit", "-q", "-m", "the parent pipeline's plan")
    return p["proj"] / "plan"


def run_child(p: dict, *variables: str) -> tuple[int, str, dict[str, str]]:
    args = ["--file", "plan/pipeline.yml", "--variable", "PARENT_PIPELINE_ID=1"]
    for v in variables:
        args += ["--variable", v]
    return engine(p, *args)


def artifact(p: dict, path: str) -> Path:
    """Where the engine keeps the artifact PATH of whichever job uploaded it."""
    arts = p["proj"] / ".gitlab-ci-local" / "artifacts"
    found = list(arts.glob(f"*/{path}"))
    assert len(found) == 1, f"{path} in the artifacts of {len(found)} jobs: " + \
        ", ".join(sorted(str(f.relative_to(arts)) for f in arts.glob("*/*")))
    return found[0]


def _cells(night: dict) -> list[dict]:
    return [{k: c.get(k) for k in SAME} for c in night["cells"]]


def _changes(night: dict) -> list[tuple]:
    return [(c["kind"], c["text"], c["regression"]) for c in night["changes"]]


def _rows(db_file: Path) -> list:
    db = sqlite3.connect(db_file)
    try:
        return [db.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall()
                for t in ("cells", "tests", "revisions", "tree_nights")]
    finally:
        db.close()


def _junit_cases(path: Path) -> list[tuple]:
    from junitparser import JUnitXml
    xml = JUnitXml.fromfile(str(path))
    return sorted((s.name, c.name, tuple(type(r).__name__ for r in c.result))
                  for s in xml for c in s)


def test_the_engine_runs_the_night_one_machine_runs(project, tmp_path, monkeypatch):
    t0 = time.monotonic()
    plan = plan_with_the_engine(project)
    code, out, results = run_child(project)
    # Every job ran, in its stage; the merge's exit status is the night's:
    # 1, v3 of "mini: feature" newly fails.
    assert results == {JOBS["base"]: "PASS", JOBS["s1"]: "PASS", JOBS["s2"]: "PASS",
                       JOBS["merge"]: "FAIL"}, out
    assert code != 0 and said(out, JOBS["merge"], "finished in .* FAIL 1"), out

    # The engine passed the baseline job's shard to each series job (its own
    # copy of the project holds nothing else), which imported its export.
    for job in ("s-mini-base-1", "s-mini-base-2"):
        rec = json.loads((artifact(project, f"shards/{job}") / "job.json").read_text())
        assert rec["state"] == "done"
        assert sorted(line.rsplit(":", 1)[-1].strip() for line in rec["imported"]) == \
            ["imported", "imported"], rec["imported"]
    # cache: the baseline job pushed its ccache under its key, the series jobs
    # pulled it and pushed nothing; the merge pushed the history.
    created = re.findall(r"^(.+?) +cache created in '\.gitlab-ci-local/cache/([^']+)'", out,
                         re.MULTILINE)
    assert sorted(created) == [(JOBS["base"], "orch-ccache-b-mini-base"),
                               (JOBS["merge"], "orch-nightly")], out
    for s in ("s1", "s2"):
        assert said(out, JOBS[s], "imported cache 'orch-ccache-b-mini-base' in .*"), out

    # -- one machine, the same plan ---------------------------------------------------
    engine_s = time.monotonic() - t0
    single = tmp_path / "single"
    shutil.copytree(plan, single / "nights" / NIGHT)
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "one-machine"))
    assert nightly.run_night(config_file.load(project["toml"]), single, NIGHT) == 1
    merged = artifact(project, f"orch-nightly/nights/{NIGHT}")
    n = json.loads((merged / "night.json").read_text())
    one = json.loads((single / "nights" / NIGHT / "night.json").read_text())
    assert [c["status"] for c in n["cells"]] == ["FAIL", "PASS"]
    assert _cells(n) == _cells(one)
    assert _changes(n) == _changes(one)
    # The series jobs pulled the baseline job's ccache: its replayed
    # warnings carry the baseline runner's paths, and are still the
    # baseline's own warnings, as on one machine.
    for c in n["cells"]:
        ran = json.loads((merged / c["run_dir"] / "run.json").read_text())
        alone = json.loads((single / "nights" / NIGHT / c["run_dir"] / "run.json").read_text())
        assert [k["warnings"] for k in ran["configs"]] == \
            [k["warnings"] for k in alone["configs"]]
    cached = (project["proj"] / ".gitlab-ci-local" / "cache" / "orch-nightly" / "orch-nightly"
              / history.FILE)
    assert _rows(cached) == _rows(single / history.FILE)
    assert _junit_cases(merged / "junit.xml") == _junit_cases(single / "nights" / NIGHT /
                                                              "junit.xml")
    summary = (merged / "summary.txt").read_text()
    assert summary == (single / "nights" / NIGHT / "summary.txt").read_text()
    # The merge job's log says what the night says.
    assert summary.splitlines()[0] in out
    # The parent's next orch-plan job pulls the history the merge pushed
    # (cache key orch-nightly): series tested tonight are not new then.
    code, out, results = plan_job(project)
    assert (code, results) == (0, {"orch-plan": "PASS"}), out
    assert said(out, "orch-plan", "imported cache 'orch-nightly' in .*"), out
    print(f"engine: {engine_s:.1f}s, with the single machine's night "
          f"{time.monotonic() - t0:.1f}s")


def _commit_pipeline(p: dict, old: str, new: str) -> None:
    """The plan's pipeline.yml with OLD (once in it) made NEW, committed."""
    f = p["proj"] / "plan" / "pipeline.yml"
    text = f.read_text()
    assert text.count(old) == 1, old
    f.write_text(text.replace(old, new))
    git(p["proj"], "commit", "-q", "-am", "a mutant pipeline")


def _merged(p: dict) -> dict:
    return json.loads((artifact(p, f"orch-nightly/nights/{NIGHT}") / "night.json").read_text())


def test_without_the_baselines_artifacts_the_night_is_not_the_same(project):
    """The mutant pipeline: the series jobs do not need the baseline job, so
    the engine passes them none of its artifacts. The night that comes out
    is not the one above: the engine, not the project's files, carried the
    shards."""
    plan_with_the_engine(project)
    _commit_pipeline(project, '    - job: "orch-baseline"\n      optional: true\n  when: "always"',
                     '  when: "always"')
    code, out, results = run_child(project)
    # Each series job found no shard where the plan says its baseline's is
    # and refused to run (orch job, exit 2); the merge says they did not report.
    assert results == {JOBS["base"]: "PASS", JOBS["s1"]: "FAIL", JOBS["s2"]: "FAIL",
                       JOBS["merge"]: "FAIL"}, out
    for s in ("s1", "s2"):
        assert said(out, JOBS[s], "> orch: error: --import shards/b-mini-base: no such "
                    "directory") and said(out, JOBS[s], "finished in .* FAIL 2"), out
    # No cell has a result: exit 5.
    assert code != 0 and said(out, JOBS["merge"], "finished in .* FAIL 5"), out
    n = _merged(project)
    assert [c["status"] for c in n["cells"]] == ["ERROR", "ERROR"], n["cells"]
    for job in ("s-mini-base-1", "s-mini-base-2"):
        assert any(f"job {job}" in c["text"] for c in n["changes"]), n["changes"]


BROKEN = {
    # job: (the engine's job results, the merge's exit status, cell statuses)
    "s-mini-base-1": ({"base": "PASS", "s1": "FAIL", "s2": "PASS", "merge": "FAIL"}, 7,
                      {FEATURE_CID: "ERROR", COUNTER_CID: "PASS"}),
    # A failed baseline job: the series jobs still run (`when: always`),
    # import nothing from its shard and build and boot the baseline themselves.
    "b-mini-base": ({"base": "FAIL", "s1": "PASS", "s2": "PASS", "merge": "FAIL"}, 1,
                    {FEATURE_CID: "FAIL", COUNTER_CID: "PASS"}),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_job_whose_orch_fails_fails_in_the_engine_and_still_reports(project, broken):
    """A job's orch exits non-zero (its runner lacks the tree): the engine
    fails that job and uploads its shard all the same (`artifacts: when:
    always`); the merge (`when: always`) runs and names the job."""
    plan_with_the_engine(project)
    code, out, results = run_child(project, f"ORCH_BREAK={broken}")
    want, status, cells = BROKEN[broken]
    assert results == {JOBS[k]: v for k, v in want.items()}, out
    assert code != 0 and said(out, JOBS["merge"], f"finished in .* FAIL {status}"), out
    rec = json.loads((artifact(project, f"shards/{broken}") / "job.json").read_text())
    assert rec["state"] == "failed", rec
    n = _merged(project)
    assert {c["series"]: c["status"] for c in n["cells"]} == \
        {f"change-id:{cid}": st for cid, st in cells.items()}, n["cells"]
    failed = [c["text"] for c in n["changes"] if f"job {broken}" in c["text"]]
    assert failed and all("not on this runner" in t for t in failed), n["changes"]
    if broken.startswith("b-"):
        for job in ("s-mini-base-1", "s-mini-base-2"):
            rec = json.loads((artifact(project, f"shards/{job}") / "job.json").read_text())
            assert rec["state"] == "done" and len(rec["imported"]) == 1, rec
            assert rec["imported"][0].endswith("nothing imported"), rec["imported"]
