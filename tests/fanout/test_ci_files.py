"""The engine files `orch plan` writes: validated with check-jsonschema's
bundled GitHub Actions and GitLab CI schemas (offline), broken copies
shown to fail, and their shape read back: baseline jobs first, series jobs
after them, a merge that runs whatever happened, every shard uploaded,
and the shared ccache written by baseline jobs only."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from test_ci_examples import EX, broken_copy, check_jsonschema, load_yaml

from orchestrator import cli
from orchestrator.fanout import ci_files, jobfiles
from orchestrator.nightly.night import Plan, SeriesRev, TreeState

PARENT = EX / "gitlab" / "orch-fanout.gitlab-ci.yml"


def _plan(series: int = 5) -> Plan:
    revs = [SeriesRev(f"change-id:s{i}", f"mm: series {i}", f"m{i}@x", 1 + i % 3, f"s{i}",
                      "tracked", f"series/s{i}.mbx") for i in range(series)]
    trees = [TreeState("debian:linux-source-7.2", "debian", "/c/trees/linux", "a" * 40,
                       "7.2.13-1", package="linux-source-7.2", suites=["trixie"]),
             TreeState("mm@mm-unstable", "git", "/src/mm", "b" * 40, "mm-unstable")]
    return Plan("2026-11-28", "https://lore.kernel.org/all", ["base", "lockdep"], revs, trees,
                guest_tests=["guest_tests/test_x.py"])


@pytest.fixture(params=["engine", "redis"])
def files(request, tmp_path):
    jobs = jobfiles.cut(_plan(), group_size=2)
    gh = tmp_path / "workflow.yml"
    gh.write_text(ci_files.github(jobs, "nights/plan", shared_ccache=request.param))
    gl = tmp_path / "pipeline.yml"
    gl.write_text(ci_files.gitlab(jobs, "nights/plan", shared_ccache=request.param))
    return {"jobs": jobs, "github": gh, "gitlab": gl, "mode": request.param}


def test_the_cut():
    jobs = jobfiles.cut(_plan(), group_size=2)
    kinds = [j.kind for j in jobs.jobs]
    # Baselines first: 2 trees x 2 configs; then 3 groups (2+2+1) per tree x config.
    assert kinds == ["baseline"] * 4 + ["series"] * 12
    assert [j.id for j in jobs.jobs[:4]] == [
        "b-debian-linux-source-7-2-base", "b-debian-linux-source-7-2-lockdep",
        "b-mm-mm-unstable-base", "b-mm-mm-unstable-lockdep"]
    by_id = {j.id: j for j in jobs.jobs}
    for j in jobs.jobs[4:]:
        base = by_id[j.needs]
        assert (base.kind, base.tree, base.config) == ("baseline", j.tree, j.config)
    # Every series in exactly one job per tree x config.
    for t in ("debian:linux-source-7.2", "mm@mm-unstable"):
        for c in ("base", "lockdep"):
            keys = [k for j in jobs.jobs if (j.tree, j.config) == (t, c) for k in j.series]
            assert keys == [f"change-id:s{i}" for i in range(5)]
    assert jobfiles.cut(_plan(0)).jobs == []
    with pytest.raises(jobfiles.BadInput):
        jobfiles.cut(_plan(), group_size=0)


def test_files_validate(files):
    for schema, path in (("vendor.github-workflows", files["github"]),
                         ("vendor.gitlab-ci", files["gitlab"])):
        r = check_jsonschema(schema, path)
        assert r.returncode == 0, path.name + r.stdout + r.stderr


def test_parent_pipeline_example_validates():
    r = check_jsonschema("vendor.gitlab-ci", PARENT)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = load_yaml(PARENT)
    trigger = doc["orch-night"]["trigger"]
    assert trigger["include"] == [{"artifact": "plan/pipeline.yml", "job": "orch-plan"}]
    assert doc["orch-night"]["variables"]["PARENT_PIPELINE_ID"] == "$CI_PIPELINE_ID"
    assert "plan/" in doc["orch-plan"]["artifacts"]["paths"]


@pytest.mark.parametrize("which, old, new", [
    ("github", '    name: "merge the night"', '    nme: "merge the night"'),
    ("github", '    needs: "baseline"', '    needs: 7'),
    ("gitlab", '    reports:', '    report:'),
    ("gitlab", '  when: "always"\n  needs:', '  when: "sometimes"\n  needs:'),
])
def test_broken_copies_fail(tmp_path, which, old, new):
    jobs = jobfiles.cut(_plan(), group_size=2)
    good = tmp_path / f"{which}.yml"
    good.write_text(ci_files.github(jobs, "p") if which == "github" else ci_files.gitlab(jobs, "p"))
    schema = {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}[which]
    (tmp_path / "b").mkdir()
    r = check_jsonschema(schema, broken_copy(good, tmp_path / "b", old, new))
    assert r.returncode != 0, f"{old} -> {new} passed validation"


def _orch_args(line: str, env: dict[str, str]) -> list[str]:
    """The orch command of a script line, its variables filled in."""
    for k, v in env.items():
        line = line.replace(f'"${k}"', v).replace(f"${k}", v)
    argv = shlex.split(line)
    assert argv[0] == ".venv/bin/orch", line
    return argv[1:]


def test_github_shape(files):
    wf = load_yaml(files["github"])
    jobs = files["jobs"]
    b, s, m = wf["jobs"]["baseline"], wf["jobs"]["series"], wf["jobs"]["merge"]
    assert [x["job"] for x in b["strategy"]["matrix"]["include"]] == \
        [j.id for j in jobs.jobs if j.kind == "baseline"]
    assert [(x["job"], x["needs"]) for x in s["strategy"]["matrix"]["include"]] == \
        [(j.id, j.needs) for j in jobs.jobs if j.kind == "series"]
    assert s["needs"] == "baseline" and m["needs"] == ["baseline", "series"]
    assert m["if"] == "${{ always() }}" and b["strategy"]["fail-fast"] is False
    for job, kind in ((b, "baseline"), (s, "series")):
        steps = job["steps"]
        (upload,) = [x for x in steps if x.get("uses", "").startswith("actions/upload-artifact@")]
        assert upload["if"] == "always()" and upload["with"]["name"] == "orch-shard-${{ matrix.job }}"
        (run,) = [x for x in steps if x.get("name") == "Run the job"]
        args = _orch_args(run["run"].strip(), {"PLAN": "nights/plan", "JOB": "s-x",
                                                "NEEDS": "b-x"})
        # The script takes orch's values through the environment, never pasted in.
        assert "${{" not in run["run"]
        cli.parser().parse_args(args)        # flags orch really has
        assert args[:2] == ["job", "nights/plan"]
        saves = [x for x in steps if x.get("uses", "").startswith("actions/cache/save@")]
        env = run.get("env", {})
        if kind == "series":
            # Untrusted builds never write a shared cache: no save, no writer secret.
            assert saves == [] and "ORCH_CCACHE_REMOTE_WRITE" not in env
            assert "--import" in args
        elif files["mode"] == "engine":
            assert len(saves) == 1 and saves[0]["if"] == "always()"
        else:
            assert env["ORCH_CCACHE_REMOTE_WRITE"] == "${{ secrets.ORCH_CCACHE_WRITE }}"
    merge_run = "\n".join(x.get("run", "") for x in m["steps"])
    assert '.venv/bin/orch merge shards/* --plan "$PLAN" --out "$OUT"' in merge_run
    # Nothing from a mail is in the file (titles are plan.json's, not YAML's).
    assert "mm: series" not in files["github"].read_text()


def test_gitlab_shape(files):
    doc = load_yaml(files["gitlab"])
    jobs = files["jobs"]
    assert doc["stages"] == ["baseline", "series", "merge"]
    b, s, m = doc["orch-baseline"], doc["orch-series"], doc["orch-merge"]
    assert [x["ORCH_JOB"] for x in b["parallel"]["matrix"]] == \
        [j.id for j in jobs.jobs if j.kind == "baseline"]
    assert [(x["ORCH_JOB"], x["ORCH_NEEDS"]) for x in s["parallel"]["matrix"]] == \
        [(j.id, j.needs) for j in jobs.jobs if j.kind == "series"]
    assert {"job": "orch-baseline", "optional": True} in s["needs"]
    assert m["when"] == "always" and {"job": "orch-series", "optional": True} in m["needs"]
    for job in (b, s):
        assert job["artifacts"]["when"] == "always"
        assert job["artifacts"]["paths"] == ["shards/$ORCH_JOB/"]
        args = _orch_args(job["script"][-1], {"PLAN": "nights/plan", "ORCH_JOB": "b-x",
                                              "ORCH_NEEDS": "b-x"})
        cli.parser().parse_args(args)
    if files["mode"] == "engine":
        assert b["cache"]["policy"] == "pull-push" and s["cache"]["policy"] == "pull"
        assert s["cache"]["key"] == "orch-ccache-$ORCH_NEEDS"
    else:
        assert b["variables"]["ORCH_CCACHE_REMOTE_WRITE"] == "$ORCH_CCACHE_WRITE"
        assert s["variables"]["ORCH_CCACHE_REMOTE_WRITE"] == ""
    assert m["artifacts"]["reports"]["junit"] == "orch-nightly/nights/*/junit.xml"


def test_an_empty_night_still_merges():
    jobs = jobfiles.cut(_plan(0))
    wf = load_yaml_text(ci_files.github(jobs, "p"))
    assert list(wf["jobs"]) == ["merge"] and "needs" not in wf["jobs"]["merge"]
    doc = load_yaml_text(ci_files.gitlab(jobs, "p"))
    assert "orch-series" not in doc and doc["orch-merge"]["when"] == "always"


def load_yaml_text(text: str) -> dict:
    from ruamel.yaml import YAML
    return YAML(typ="safe").load(text)


# -- the generated text, byte for byte ---------------------------------------------------

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "ci_golden"
VARIANTS = {   # file name: how it is made (the schemas above check shape, these the text)
    "github-engine.yml": lambda j: ci_files.github(j, "nights/plan"),
    "github-redis-selfhosted.yml": lambda j: ci_files.github(j, "nights/plan",
                                                             ["self-hosted", "kvm"], "redis"),
    "gitlab-engine.yml": lambda j: ci_files.gitlab(j, "nights/plan"),
    "gitlab-redis-tags.yml": lambda j: ci_files.gitlab(j, "nights/plan", ["a", "b"], "redis"),
}


def _generated() -> dict[str, str]:
    jobs = jobfiles.cut(_plan(), group_size=2)
    return {name: make(jobs) for name, make in VARIANTS.items()}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_generated_files_are_what_they_were(name):
    """A refactor of ci_files must not change a byte a runner reads (keys,
    order, quoting). After a deliberate change: ORCH_UPDATE_GOLDEN=1."""
    text = _generated()[name]
    if os.environ.get("ORCH_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        (GOLDEN / name).write_text(text)
    assert text == (GOLDEN / name).read_text()


def test_a_reordered_key_is_caught():
    """The mutant: the same YAML with two top-level keys swapped."""
    text = _generated()["github-engine.yml"]
    lines = text.splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if line.startswith("on:"))
    j = next(n for n, line in enumerate(lines) if line.startswith("jobs:"))
    mutant = "".join(lines[:i] + lines[j:] + lines[i:j])
    assert YAML(typ="safe").load(mutant) == YAML(typ="safe").load(text)   # the same document...
    assert mutant != (GOLDEN / "github-engine.yml").read_text()   # ...and yet caught
