"""A night fanned out over CI jobs runs NIGHTLY.toml's kselftests, suites,
kconfig_add, cpus and memory as `orch nightly` would (issue 28): `orch job`
has only the plan, so the plan carries them; a baseline job builds and boots
with them; a series job's cell of a series with kselftests of its own boots
its own baseline instead of taking the baseline job's.

On the stand-in tree against the loopback lore (test_nightly's world). The
cells' `orch test` is replaced by a recorder of its options where what is
checked is only what they are asked to run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import IRQ_TEST
from lore_mails import day
from test_nightly import COUNTER_CID, FEATURE_CID, world  # noqa: F401 (the fixture)

from orchestrator.fanout import job_run as job_cmd
from orchestrator.fanout import jobfiles
from orchestrator.fanout import planning as plan_cmd
from orchestrator.kernel import kconfig
from orchestrator.nightly import config_file
from orchestrator.run import boots, series_run

NIGHT = "2026-11-27"
ADD = "CONFIG_ORCH_NIGHTLY_TEST=y"


@pytest.fixture
def planned_more(world, tmp_path):
    """Tonight's plan with the night's kselftests (the stand-in tree's `mini`
    target), a suite of one's own (one passing test), a guest machine and a
    kconfig_add, and kselftests of its own for the tracked series, cut into
    one job per series."""
    world["srv"].archive.now = day(NIGHT)
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "test_smoke.py").write_text("def test_ok():\n    pass\n")
    toml = world["toml"]
    toml.write_text(f'kselftests = ["mini"]\nsuites = ["smoke"]\ncpus = 3\n'
                    f'memory = "1536M"\nkconfig_add = ["{ADD}"]\n'
                    + toml.read_text().replace("[[query]]", 'kselftests = ["mini:test_mini"]\n'
                                                            "[[query]]"))
    pdir = tmp_path / "plan"
    plan_cmd.write(config_file.load(toml), pdir, NIGHT, "github", group_size=1)
    plan, jobs = jobfiles.read_plan_dir(pdir)
    config = kconfig.custom("base", None, [ADD]).name
    assert plan.configs == [config]
    return {**world, "pdir": pdir, "plan": plan, "jobs": jobs, "config": config,
            "smoke": (tmp_path / "smoke").resolve()}


def test_a_series_jobs_cells_run_what_the_plan_says(planned_more, tmp_path, monkeypatch):
    w = planned_more
    asked = {}

    def recorded(opts, progress=None):
        asked[opts.run_dir.name] = opts
        return 0           # no run.json: each cell is an ERROR, which is not checked here
    monkeypatch.setattr(series_run, "test", recorded)
    series_jobs = [j for j in w["jobs"].jobs if j.kind == "series"]
    assert len(series_jobs) == 2
    for j in series_jobs:
        assert job_cmd.run_job(w["pdir"], j.id, tmp_path / j.id, sandbox=False) == 0
    feature, counter = (next(o for d, o in asked.items() if d.startswith(cid[:18]))
                        for cid in (FEATURE_CID, COUNTER_CID))
    for opts in (feature, counter):
        assert opts.suites == [w["smoke"]]
        assert (opts.cpus, opts.memory) == (3, "1536M")
        assert (opts.configs, opts.kconfig, opts.kconfig_add) == (["base"], None, [ADD])
        assert kconfig.chosen(opts.configs, None, opts.kconfig_add)[0].name == w["config"]
        for flag in ("--kselftest", "--suite", "--cpus", "--memory", "--kconfig-add"):
            assert flag in opts.argv, flag
    assert counter.kselftests == ["mini"]
    assert feature.kselftests == ["mini", "mini:test_mini"]
    # The baseline job booted the night's selection: the counter's cell takes
    # it; the feature's cell runs another selection and boots its own.
    assert (counter.rerun_baseline, feature.rerun_baseline) == (False, True)


def test_a_baseline_job_builds_and_boots_what_the_plan_says(planned_more, tmp_path,
                                                           monkeypatch):
    w = planned_more
    opts = job_cmd.baseline_options(w["plan"], w["config"], False)
    assert (opts.kselftests, opts.cpus, opts.memory) == (["mini"], 3, "1536M")
    assert opts.suites == [w["smoke"]]
    assert (opts.configs, opts.kconfig_add) == (["base"], [ADD])
    booted = []
    real = boots.boot

    def recording(job, settings, timeout, *args, **kw):
        b = real(job, settings, timeout, *args, **kw)
        booted.append((job.kernel, settings, b))
        return b
    monkeypatch.setattr(boots, "boot", recording)
    (job,) = [j for j in w["jobs"].jobs if j.kind == "baseline"]
    assert job_cmd.run_job(w["pdir"], job.id, tmp_path / "shard", sandbox=False) == 0
    # The config kconfig_add makes, with the night's kselftest built beside it.
    ((k, settings, b),) = booted
    assert k.config == w["config"]
    assert [x.target for x in k.kselftests] == ["mini"]
    assert (settings.kselftests, settings.suites, settings.cpus, settings.memory) == (
        ("mini",), (w["smoke"],), 3, "1536M")
    # The guest ran the night's guest test, its suite and its kselftest.
    ran = {r.name for r in b.guest.tests}
    assert {IRQ_TEST, "kselftest/mini/test_mini", "kselftest/mini/mini_script.sh"} <= ran
    assert "smoke/test_smoke.py::test_ok" in ran
    assert {n.split("/")[0] for n in ran} == {"guest_tests", "smoke", "kselftest"}
    rec = jobfiles.read_job(tmp_path / "shard")
    assert sorted(e.split("/")[0] for e in rec.exported) == ["kernels", "results"]
    kernel = next(e for e in rec.exported if e.startswith("kernels/"))
    assert ADD in (tmp_path / "shard" / "export" / kernel / "config").read_text()
    # Exported under the key a cell with the night's selection looks for.
    assert f"results/{boots.results_key(k, settings)}" in rec.exported


def test_orch_plan_says_what_every_cell_runs_besides_its_guest_tests(planned_more):
    r = subprocess.run([sys.executable, "-m", "orchestrator", "plan",
                        str(planned_more["toml"]), "--out", str(planned_more["pdir"]),
                        "--night", NIGHT, "--format", "github", "--group-size", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stderr.splitlines() if x.startswith("each cell also: "))
    assert line.startswith("each cell also: kselftests mini; 1 series with kselftests "
                           "of their own; suites ")
    assert line.endswith(f"; kconfig_add {ADD}; guest 3 vCPUs, 1536M memory")


def test_the_cells_take_the_baseline_jobs_boot_unless_they_run_another_selection(
        planned_more, tmp_path, monkeypatch):
    """The counter's cell runs the night's selection: the baseline job's
    boot answers it (imported on a runner of its own). The feature's cell
    runs the night's kselftests and its own: it boots its baseline itself."""
    w, shards = planned_more, tmp_path / "shards"
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "runner1"))
    (base,) = [j for j in w["jobs"].jobs if j.kind == "baseline"]
    assert job_cmd.run_job(w["pdir"], base.id, shards / base.id, sandbox=False) == 0
    baseline_boot = list(w["boots"])
    assert len(baseline_boot) == 1
    cells = {}
    for i, j in enumerate(j for j in w["jobs"].jobs if j.kind == "series"):
        monkeypatch.setenv("ORCH_CACHE", str(tmp_path / f"runner{i + 2}"))
        assert job_cmd.run_job(w["pdir"], j.id, shards / j.id, [shards / base.id],
                               sandbox=False) == 0
        (c,) = json.loads((shards / j.id / "night.json").read_text())["cells"]
        cells[c["series"]] = c
    feature, counter = (cells[f"change-id:{cid}"] for cid in (FEATURE_CID, COUNTER_CID))
    assert not counter["booted"]["baseline"] and feature["booted"]["baseline"]
    # Booted: the baseline job's, the feature's baseline, both patched kernels.
    assert len(w["boots"]) == 4
    ids = {t["name"] for t in counter["tests"]}
    assert {IRQ_TEST, "kselftest/mini/test_mini"} <= ids
    assert "kselftest/mini/test_mini" in {t["name"] for t in feature["tests"]}
