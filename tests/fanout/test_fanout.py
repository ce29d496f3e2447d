"""A night fanned out over CI jobs (orch plan, orch job, orch merge) is the
night one machine would have run.

On the stand-in tree against the loopback lore, with real b4, git, builds,
kernel caches and SQLite (test_nightly's world). Each "runner" is its own
ORCH_CACHE: the baseline job and the first series job on runner 1, the
second series job on runner 2, which has only what it imports.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time

import pytest
from lore_mails import day
from test_nightly import COUNTER_CID, FEATURE_CID, world  # noqa: F401 (the fixture)

from orchestrator.fanout import cache_transfer, jobfiles
from orchestrator.fanout import job_run as job_cmd
from orchestrator.fanout import merging as merge_cmd
from orchestrator.fanout import nightly_run as nightly
from orchestrator.fanout import planning as plan_cmd
from orchestrator.nightly import config_file, history

NIGHT = "2026-11-27"
# What a night's cell is, whichever machine ran it (not how long it took,
# nor whether its baseline was booted in the cell or in a baseline job).
SAME = ("series", "version", "msgid", "tree", "commit", "config", "status", "detail", "run_dir",
        "reproduce", "tests", "splats", "figures")


def _cells(night: dict) -> list[dict]:
    return [{k: c.get(k) for k in SAME} for c in night["cells"]]


def _changes(night: dict) -> list[tuple]:
    return [(c["kind"], c["text"], c["regression"]) for c in night["changes"]]


def _rows(out) -> list:
    db = sqlite3.connect(out / history.FILE)
    try:
        return [db.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall()
                for t in ("cells", "tests", "revisions", "tree_nights")]
    finally:
        db.close()


def _night_json(out) -> dict:
    return json.loads((out / "nights" / NIGHT / "night.json").read_text())


def _junit_cases(out) -> list[tuple]:
    from junitparser import JUnitXml
    xml = JUnitXml.fromfile(str(out / "nights" / NIGHT / "junit.xml"))
    return sorted((s.name, c.name, tuple(type(r).__name__ for r in c.result))
                  for s in xml for c in s)


def _runner(monkeypatch, tmp_path, name: str):
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / name))


@pytest.fixture
def planned(world, tmp_path):
    """Tonight's plan, cut into one baseline job and two series jobs: v3 of
    "mini: feature" (it fails its test) and "mini: counter" (it passes)."""
    world["srv"].archive.now = day(NIGHT)
    cfg = config_file.load(world["toml"])
    pdir = tmp_path / "plan"
    plan_cmd.write(cfg, pdir, NIGHT, "github", group_size=1)
    plan, jobs = jobfiles.read_plan_dir(pdir)
    assert [(s.key, s.version) for s in plan.series] == [
        (f"change-id:{FEATURE_CID}", 3), (f"change-id:{COUNTER_CID}", 1)]
    assert [(j.id, j.kind, j.needs) for j in jobs.jobs] == [
        ("b-mini-base", "baseline", None), ("s-mini-base-1", "series", "b-mini-base"),
        ("s-mini-base-2", "series", "b-mini-base")]
    return {**world, "cfg": cfg, "pdir": pdir}


def test_shards_merge_into_the_night_one_machine_runs(planned, tmp_path, monkeypatch):
    w, pdir = planned, planned["pdir"]
    boots = w["boots"]
    asked = len(w["srv"].requests)

    # -- the jobs, as the engine would run them ------------------------------------
    shards = tmp_path / "shards"
    _runner(monkeypatch, tmp_path, "runner1")
    assert job_cmd.run_job(pdir, "b-mini-base", shards / "b-mini-base") == 0
    base = jobfiles.read_job(shards / "b-mini-base")
    assert base.state == "done" and sorted(e.split("/")[0] for e in base.exported) == \
        ["kernels", "results"]
    assert job_cmd.run_job(pdir, "s-mini-base-1", shards / "s-mini-base-1",
                           [shards / "b-mini-base"]) == 0
    _runner(monkeypatch, tmp_path, "runner2")      # empty: only what it imports
    assert job_cmd.run_job(pdir, "s-mini-base-2", shards / "s-mini-base-2",
                           [shards / "b-mini-base"]) == 0
    r2 = jobfiles.read_job(shards / "s-mini-base-2")
    assert sorted(line.split(":")[-1].strip() for line in r2.imported) == \
        ["imported", "imported"], r2.imported
    # The baseline was booted once, by its job; each series once.
    assert len(boots) == 3 and len(set(boots)) == 3
    # Jobs follow the plan: none of them asked lore anything.
    assert len(w["srv"].requests) == asked

    # -- the merge ------------------------------------------------------------------
    merged = tmp_path / "merged"
    code = merge_cmd.merge(sorted(shards.iterdir()), merged)
    n = _night_json(merged)
    assert code == 1, n["changes"]
    assert [c["status"] for c in n["cells"]] == ["FAIL", "PASS"]
    for c in n["cells"]:
        assert (merged / "nights" / NIGHT / c["run_dir"] / "run.json").exists()

    # -- one machine, the same plan ---------------------------------------------------
    single = tmp_path / "single"
    shutil.copytree(pdir, single / "nights" / NIGHT)
    _runner(monkeypatch, tmp_path, "one-machine")
    assert nightly.run_night(w["cfg"], single, NIGHT) == code
    one = _night_json(single)
    assert _cells(n) == _cells(one)
    assert _changes(n) == _changes(one)
    assert _rows(merged) == _rows(single)
    assert _junit_cases(merged) == _junit_cases(single)
    for f in ("index.html", "kcidb.json", "summary.txt"):
        assert (merged / "nights" / NIGHT / f).stat().st_size > 0
    assert (merged / "nights" / NIGHT / "summary.txt").read_text() == \
        (single / "nights" / NIGHT / "summary.txt").read_text()

    # -- merging the same shard again changes nothing ---------------------------------
    before = ((merged / "nights" / NIGHT / "night.json").read_text(), _rows(merged))
    assert merge_cmd.merge([shards / "s-mini-base-2", shards / "s-mini-base-2"], merged) == 1
    assert ((merged / "nights" / NIGHT / "night.json").read_text(), _rows(merged)) == before


def test_a_missing_or_failed_shard_is_named_never_dropped(planned, tmp_path, monkeypatch):
    pdir = planned["pdir"]
    shards = tmp_path / "shards"
    _runner(monkeypatch, tmp_path, "runner1")
    assert job_cmd.run_job(pdir, "b-mini-base", shards / "b-mini-base") == 0
    assert job_cmd.run_job(pdir, "s-mini-base-2", shards / "s-mini-base-2",
                           [shards / "b-mini-base"]) == 0
    # s-mini-base-1 (the failing v3) never reported: its runner died before
    # uploading. What came back passes: the night is incomplete, not a pass.
    out = tmp_path / "merged"
    code = merge_cmd.merge([shards / "b-mini-base", shards / "s-mini-base-2"], out, pdir)
    n = _night_json(out)
    assert code == 7, n["changes"]
    cells = {c["series"]: c for c in n["cells"]}
    assert cells[f"change-id:{COUNTER_CID}"]["status"] == "PASS"
    lost = cells[f"change-id:{FEATURE_CID}"]
    assert lost["status"] == "ERROR" and "s-mini-base-1 missing" in lost["detail"]
    assert any(c["kind"] == "error" and "job s-mini-base-1" in c["text"] for c in n["changes"])
    summary = (out / "nights" / NIGHT / "summary.txt").read_text()
    assert "s-mini-base-1" in summary
    # The reports say what the exit status says, not "nothing new fails".
    assert summary.splitlines()[0].endswith("incomplete: a job of the night did not report "
                                            "(exit 7)"), summary
    assert "(exit 7" in (out / "nights" / NIGHT / "index.html").read_text()

    # Its job is run again (a retried CI job) and merged later: the night
    # is complete, and the shards merged before are remembered.
    _runner(monkeypatch, tmp_path, "runner2")
    assert job_cmd.run_job(pdir, "s-mini-base-1", shards / "s-mini-base-1",
                           [shards / "b-mini-base"]) == 0
    code = merge_cmd.merge([shards / "s-mini-base-1"], out)
    n = _night_json(out)
    assert code == 1 and [c["status"] for c in n["cells"]] == ["FAIL", "PASS"]
    assert not any("job " in c["text"] for c in n["changes"])

    # A failed shard (a tree that is not on the runner) is named with why.
    broken = tmp_path / "broken"
    with pytest.raises(Exception):
        job_cmd.run_job(pdir, "s-mini-base-1", broken / "s-mini-base-1",
                        trees={"mini": tmp_path / "nowhere"})
    assert jobfiles.read_job(broken / "s-mini-base-1").state == "failed"
    out2 = tmp_path / "merged2"
    code = merge_cmd.merge([shards / "b-mini-base", broken / "s-mini-base-1",
                            shards / "s-mini-base-2"], out2)
    n = _night_json(out2)
    assert code == 7, n["changes"]
    failed = [c["text"] for c in n["changes"] if "job s-mini-base-1" in c["text"]]
    assert failed and "not on this runner" in failed[0]


def test_a_corrupted_imported_kernel_is_rebuilt_not_booted(planned, tmp_path, monkeypatch):
    w, pdir = planned, planned["pdir"]
    shards = tmp_path / "shards"
    _runner(monkeypatch, tmp_path, "runner1")
    assert job_cmd.run_job(pdir, "b-mini-base", tmp_path / "earlier" / "b-mini-base") == 0
    # A self-hosted runner keeps its cache: the baseline job of a later run
    # boots its kernel again, never taking the earlier boot's results.
    booted = len(w["boots"])
    assert job_cmd.run_job(pdir, "b-mini-base", shards / "b-mini-base") == 0
    assert len(w["boots"]) == booted + 1
    export = shards / "b-mini-base" / jobfiles.EXPORT
    (kdir,) = (export / "kernels").iterdir()
    image = kdir / "bzImage"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))

    # The stand-in's builds are reproducible within a second (build #1 of a
    # fresh directory, stamped to the second): built in the same second,
    # runner 2's baseline would be the exported image byte for byte, and its
    # kept results rightly valid (the test failed 3 times in 8 so).
    time.sleep(1.1)
    _runner(monkeypatch, tmp_path, "runner2")
    boots_before = len(w["boots"])
    assert job_cmd.run_job(pdir, "s-mini-base-2", shards / "s-mini-base-2",
                           [shards / "b-mini-base"]) == 0
    rec = jobfiles.read_job(shards / "s-mini-base-2")
    assert f"kernels/{kdir.name}: not imported: bzImage failed its checksum" in rec.imported
    cell = json.loads((shards / "s-mini-base-2" / "night.json").read_text())["cells"][0]
    assert cell["status"] == "PASS"
    # Runner 2 built its own baseline and booted it (the kept results were
    # of the exported image, which is not the one it has).
    assert cell["built"] == {"baseline": True, "patched": True}
    assert cell["booted"]["baseline"] is True
    assert len(w["boots"]) == boots_before + 2
    mine = tmp_path / "runner2" / "kernels" / kdir.name / "bzImage"
    assert mine.read_bytes() != bytes(data)

    # The manifest rewritten to match the broken image: the kernel cache's
    # own checksum still refuses it.
    manifest = json.loads((export / cache_transfer.MANIFEST).read_text())
    manifest["kernels"][kdir.name]["bzImage"] = cache_transfer._sha(image)
    (export / cache_transfer.MANIFEST).write_text(json.dumps(manifest))
    _runner(monkeypatch, tmp_path, "runner3")
    lines = cache_transfer.import_dir(export, {f"kernels/{kdir.name}"})
    assert any(line.startswith(f"kernels/{kdir.name}: not imported: the kernel cache refused")
               for line in lines), lines
    assert not (tmp_path / "runner3" / "kernels" / kdir.name).exists()


def test_bad_input_is_one_line(planned, tmp_path):
    import subprocess
    import sys

    from helpers import one_error_line
    pdir = planned["pdir"]

    def orch(*args):
        r = subprocess.run([sys.executable, "-m", "orchestrator", *map(str, args)],
                           capture_output=True, text=True, timeout=120)
        return r.returncode, one_error_line(r.stderr)

    # orch plan itself: the child pipeline for the same night, from the
    # plan already there (lore is not asked again); another night is refused.
    asked = len(planned["srv"].requests)
    r = subprocess.run([sys.executable, "-m", "orchestrator", "plan", str(planned["toml"]),
                        "--out", str(pdir), "--format", "gitlab", "--night", NIGHT,
                        "--group-size", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(pdir / "pipeline.yml") and "1 baseline jobs, 2 series jobs" \
        in r.stderr
    assert len(planned["srv"].requests) == asked
    assert orch("plan", planned["toml"], "--out", pdir, "--night", "2026-11-28") == \
        (2, f"orch: error: {pdir} holds the plan of the night {NIGHT}, not 2026-11-28: "
            "give another --out")
    assert orch("job", pdir, "s-nope", "--out", tmp_path / "x") == \
        (2, "orch: error: no job 's-nope' in this plan (jobs: b-mini-base, s-mini-base-1, "
            "s-mini-base-2)")
    rc, line = orch("job", tmp_path, "b-mini-base", "--out", tmp_path / "x")
    assert rc == 2 and "is not an orch plan directory" in line
    rc, line = orch("merge", "--out", tmp_path / "m")
    assert rc == 2 and "no plan" in line
    # A plan edited after it was cut: its jobs no longer match it.
    edited = tmp_path / "edited"
    shutil.copytree(pdir, edited)
    p = json.loads((edited / "plan.json").read_text())
    p["configs"] = ["debug"]
    (edited / "plan.json").write_text(json.dumps(p))
    rc, line = orch("job", edited, "b-mini-base", "--out", tmp_path / "y")
    assert rc == 2 and "cut from another plan.json" in line


# -- settings and flags (issue 27, item 6) ------------------------------------------

def test_a_job_runs_with_its_runners_config_toml(planned, tmp_path):
    """A runner's config.toml (its cache, its timeouts) is what its jobs run
    with, as `orch test` would on that machine; the plan (NIGHTLY.toml) names
    no timeout here, so none overrides it."""
    from test_nightly_settings import orch_recording
    pdir, shards, cache = planned["pdir"], tmp_path / "shards", tmp_path / "runner-cache"
    config = f'cache = "{cache}"\nguest_timeout = 1234\ntest_timeout = 77\n'
    r, base_boots, xdg = orch_recording(tmp_path, config, "job", pdir, "b-mini-base",
                                        "--out", shards / "b")
    assert r.returncode == 0, r.stderr
    r, cell_boots, _ = orch_recording(tmp_path, config, "job", pdir, "s-mini-base-2",
                                      "--out", shards / "s2", "--import", shards / "b")
    assert r.returncode == 0, r.stderr
    # The baseline booted in its job; the cell booted only its patched kernel
    # (the imported baseline answered: the same limits, the same key).
    assert [(b["timeout"], b["test_timeout"]) for b in base_boots + cell_boots] == \
        [(1234, 77), (1234, 77)]
    assert {p.name for p in (cache / "kernels").iterdir()} == \
        {b["key"] for b in base_boots + cell_boots}
    assert not (xdg / "kernels").exists()
    night = json.loads((shards / "s2" / "night.json").read_text())
    (cell,) = night["cells"]
    rec = json.loads((shards / "s2" / cell["run_dir"] / "run.json").read_text())
    assert rec["configs"][0]["patched"]["build"]["image"].startswith(str(cache))
    assert rec["command"][rec["command"].index("--guest-timeout") + 1] == "1234"


def test_a_plan_directory_is_reused_only_by_its_own_file(planned, tmp_path):
    import subprocess
    import sys

    from helpers import one_error_line
    pdir, toml = planned["pdir"], planned["toml"]
    plan = json.loads((pdir / "plan.json").read_text())

    def orch(*args):
        return subprocess.run([sys.executable, "-m", "orchestrator", *map(str, args)],
                              capture_output=True, text=True, timeout=120)

    asked = len(planned["srv"].requests)
    other = tmp_path / "other.toml"
    other.write_text(toml.read_text().replace('configs = ["base"]', 'configs = ["debug"]'))
    r = orch("plan", other, "--out", pdir, "--night", NIGHT)
    assert r.returncode == 2, r.stderr
    assert (plan["nightly_toml"], len(plan["nightly_toml_sha256"])) == (str(toml), 64)
    assert one_error_line(r.stderr) == (
        f"orch: error: {pdir} holds the plan made from {toml} (sha256 "
        f"{plan['nightly_toml_sha256'][:12]}), not from {other} (sha256 "
        f"{config_file.load(other).digest[:12]}): give another --out")
    # The same bytes elsewhere are the same night: the plan is reused as is.
    same = tmp_path / "copy" / "nightly.toml"
    same.parent.mkdir()
    same.write_bytes(toml.read_bytes())
    r = orch("plan", same, "--out", pdir, "--night", NIGHT, "--format", "gitlab",
             "--group-size", "1")
    assert r.returncode == 0, r.stderr
    assert len(planned["srv"].requests) == asked
    assert json.loads((pdir / "plan.json").read_text()) == plan


def test_group_size_zero_asks_lore_nothing(planned, tmp_path):
    import subprocess
    import sys

    from orchestrator.core.errors import BadInput
    asked = len(planned["srv"].requests)
    r = subprocess.run([sys.executable, "-m", "orchestrator", "plan", str(planned["toml"]),
                        "--out", str(tmp_path / "fresh"), "--group-size", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--group-size must be at least 1" in r.stderr
    assert len(planned["srv"].requests) == asked and not (tmp_path / "fresh").exists()
    with pytest.raises(BadInput, match="--group-size must be at least 1, not 0"):
        plan_cmd.write(planned["cfg"], tmp_path / "lib", NIGHT, "json", group_size=0)
    assert len(planned["srv"].requests) == asked


@pytest.mark.parametrize("args,says", [
    (["b-mini-base", "--import", "SHARD"], "--import is for a series job; b-mini-base is a "
     "baseline job"),
    (["s-mini-base-1", "--tree", "mainline=/src/linux"], "--tree 'mainline=/src/linux': the "
     "plan has no tree 'mainline' (its trees: mini)"),
])
def test_a_job_refuses_a_flag_it_would_ignore(planned, tmp_path, args, says):
    import subprocess
    import sys

    from helpers import one_error_line
    args = [str(tmp_path) if a == "SHARD" else a for a in args]
    r = subprocess.run([sys.executable, "-m", "orchestrator", "job", str(planned["pdir"]),
                        *args, "--out", str(tmp_path / "shard")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert one_error_line(r.stderr) == f"orch: error: {says}"
    assert not (tmp_path / "shard").exists()
