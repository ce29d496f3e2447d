"""orch nightly, two nights, on the stand-in tree against the loopback lore.

Real: b4 (its newer-revision lookup and lore's search endpoint), git (a
tree that moves between nights), the builds, the SQLite history, the
reports. The guest is the stand-in (tests/standin_guest.py): what the
"guest" reports is compiled into each kernel.

  night 1 (2026-11-27): the tracked series "mini: feature" at v2 (its v3 not
    yet archived) and "mini: counter", found by a lore query; both pass.
  night 2 (2026-11-28): v3 of "mini: feature" appears and fails its test
    (the flip), the tree moves under "mini: counter", which no longer
    applies. Exit 1, with both in the changes.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import types

import pytest
import standin_guest
from helpers import IRQ_TEST, browse, git, orch_standin, run_json, series
from lore_mails import day, post
from lore_server import LoreServer
from test_reproduce import as_reproduced, differences

from orchestrator.fanout import nightly_run as nightly
from orchestrator.nightly import config_file, history
from orchestrator.run import series_run
from orchestrator.run.options import NOT_REPRODUCED

FEATURE_CID = "20261126-mini-feature-0a1b2c"
COUNTER_CID = "20261126-mini-counter-3d4e5f"


def guest(what: str) -> str:
    return f'const char orch_guest_{what.lower()}[] = "ORCH-GUEST:{what}";\n'


@pytest.fixture
def world(tmp_path, mini, monkeypatch):
    """The origin (mini), the nightly's clone of it, the posted series and a
    loopback lore serving them (v3 hidden), and NIGHTLY.toml."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    boots = standin_guest.install(monkeypatch)
    clone = tmp_path / "linux"
    subprocess.run(["git", "clone", "-q", str(mini), str(clone)], check=True)
    base = subprocess.run(["git", "-C", str(mini), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    lore = tmp_path / "lore"
    lore.mkdir()
    v2 = series(mini, tmp_path, "feat2", [("mini: feature", {"feature.c": "int f(void) "
                                                             "{ return 2; }\n"})])
    v3 = series(mini, tmp_path, "feat3", [("mini: feature", {
        "feature.c": "int f(void) { return 3; }\n" + guest("FAIL")})])
    ctr = series(mini, tmp_path, "ctr", [("mini: counter", {"counter.c": "int c(void) "
                                                            "{ return 1; }\n"})])
    ids = {
        "v2": post(v2, lore / "feature-v2.mbox", name="feature", title="mini: feature",
                   version=2, change_id=FEATURE_CID, base=base, date=day("2026-11-26")),
        "v3": post(v3, lore / "feature-v3.mbox", name="feature", title="mini: feature",
                   version=3, change_id=FEATURE_CID, base=base, date=day("2026-11-27T20:00")),
        "ctr": post(ctr, lore / "counter.mbox", name="counter", title="mini: counter",
                    version=1, change_id=COUNTER_CID, base=base, date=day("2026-11-26")),
    }
    with LoreServer(lore) as srv:
        toml = tmp_path / "nightly.toml"
        toml.write_text(f'lore_url = "{srv.url}/all"\nconfigs = ["base"]\n'
                        f'guest_tests = ["{IRQ_TEST}"]\n'
                        f'[[series]]\nmsgid = "<{ids["v2"]}>"\n'
                        f"[[query]]\nq = 's:\"mini: counter\" AND d:2.days.ago..'\n"
                        f'[[tree]]\npath = "{clone}"\nref = "origin/main"\nlabel = "mini"\n')
        yield {"srv": srv, "ids": ids, "mini": mini, "clone": clone, "toml": toml,
               "out": tmp_path / "out", "boots": boots}


def _night(world, date: str) -> tuple[int, dict]:
    world["srv"].archive.now = day(date)
    cfg = config_file.load(world["toml"])
    code = nightly.run_night(cfg, world["out"], date)
    ndir = world["out"] / "nights" / date
    return code, json.loads((ndir / "night.json").read_text())


def _v3_mails(world) -> list[str]:
    return [m.msgid for m in world["srv"].archive.mails.values()
            if m.msgid.startswith("feature-v3-")]


def test_two_nights(world):
    srv = world["srv"]
    srv.archive.hide(*_v3_mails(world))

    # -- night 1 ----------------------------------------------------------------
    code, n1 = _night(world, "2026-11-27")
    assert code == 0, n1["changes"]
    plan = n1["plan"]
    assert [(s["key"], s["version"], s["source"]) for s in plan["series"]] == [
        (f"change-id:{FEATURE_CID}", 2, "tracked"),
        (f"change-id:{COUNTER_CID}", 1, "query: s:\"mini: counter\" AND d:2.days.ago..")]
    assert [c["status"] for c in n1["cells"]] == ["PASS", "PASS"]
    assert sorted(c["kind"] for c in n1["changes"]) == ["new-series", "new-series"]
    # b4 asked lore for newer revisions by change-id, and the query was lore's.
    qs = [r.q for r in srv.requests if r.method == "POST"]
    assert any(q and f"change-id: {FEATURE_CID}" in q for q in qs), qs
    assert 's:"mini: counter" AND d:2.days.ago..' in qs
    # One baseline boot for the tree x config, one patched boot per series.
    booted = [c["booted"] for c in n1["cells"]]
    assert booted == [{"baseline": True, "patched": True}, {"baseline": False, "patched": True}]

    # -- night 2: v3 appears and fails; the tree moves under "mini: counter" --
    srv.archive.show(*_v3_mails(world))
    (world["mini"] / "counter.c").write_text("int c(void) { return 42; }\n")
    git(world["mini"], "add", "-A")
    git(world["mini"], "commit", "-q", "-m", "mini: a counter of its own")
    code, n2 = _night(world, "2026-11-28")
    assert code == 1, n2["changes"]
    assert [(s["key"], s["version"]) for s in n2["plan"]["series"]] == [
        (f"change-id:{FEATURE_CID}", 3), (f"change-id:{COUNTER_CID}", 1)]
    (tree,) = n2["plan"]["trees"]
    assert tree["moved_from"] == n1["plan"]["trees"][0]["commit"][:12]
    cells = {c["series"]: c for c in n2["cells"]}
    assert cells[f"change-id:{FEATURE_CID}"]["status"] == "FAIL"
    assert cells[f"change-id:{COUNTER_CID}"]["status"] == "NO-APPLY"
    kinds = {(c["kind"], c["regression"]) for c in n2["changes"]}
    assert {("new-revision", True), ("no-longer-applies", True), ("tree-moved", False)} <= kinds
    for c in n2["changes"]:
        if c["regression"]:
            assert c["reproduce"].startswith("orch test ") and "--on" in c["reproduce"], c
    assert n2["previous"] == {cells[k]["series"] + "|mini|base": "2026-11-27" for k in cells}
    # The baseline is booted again on the new night (never taken from night 1).
    assert cells[f"change-id:{FEATURE_CID}"]["booted"]["baseline"] is True

    # -- the history -------------------------------------------------------------
    db = sqlite3.connect(world["out"] / history.FILE)
    assert db.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
    assert db.execute("SELECT night, series, status FROM cells ORDER BY night, series").fetchall() \
        == [("2026-11-27", f"change-id:{COUNTER_CID}", "PASS"),
            ("2026-11-27", f"change-id:{FEATURE_CID}", "PASS"),
            ("2026-11-28", f"change-id:{COUNTER_CID}", "NO-APPLY"),
            ("2026-11-28", f"change-id:{FEATURE_CID}", "FAIL")]
    assert db.execute("SELECT series, version FROM revisions ORDER BY series, version").fetchall() \
        == [(f"change-id:{COUNTER_CID}", 1), (f"change-id:{FEATURE_CID}", 2),
            (f"change-id:{FEATURE_CID}", 3)]
    assert db.execute("SELECT test, patched FROM tests WHERE night='2026-11-28'").fetchall() == \
        [(IRQ_TEST, "FAIL")]
    assert db.execute("SELECT COUNT(*) FROM durations WHERE night='2026-11-27'").fetchone()[0] == 4
    ndir = world["out"] / "nights" / "2026-11-28"
    for f in ("index.html", "junit.xml", "kcidb.json", "summary.txt", "plan.json"):
        assert (ndir / f).stat().st_size > 0, f
    assert not (ndir / "report-errors.txt").exists()
    assert list((ndir / "series").glob("*.html"))
    # The night's page in a real browser: the changes, the matrix, no errors.
    dom, console = browse(world["out"].parent, ndir / "index.html")
    assert console == [] and "no-longer-applies" in dom and "NO-APPLY" in dom
    assert dom.count("<svg") >= 2
    assert "REGRESSION" in (ndir / "summary.txt").read_text()

    # -- a rerun of night 2 runs nothing and says the same ------------------------
    before = len(world["boots"])
    code, again = _night(world, "2026-11-28")
    assert code == 1 and len(world["boots"]) == before
    assert [c["status"] for c in again["cells"]] == [c["status"] for c in n2["cells"]]


def test_a_killed_night_reruns_only_what_is_missing(world, monkeypatch):
    """Interrupted after its first cell: the rerun of the same night follows
    the stored plan (lore is not asked again) and runs only the second."""
    world["srv"].archive.hide(*_v3_mails(world))
    real = series_run.test
    calls = []

    def killed_after_one(opts, progress=None):
        calls.append(opts.run_dir)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(opts, progress)

    monkeypatch.setattr(series_run, "test", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        _night(world, "2026-11-27")
    n = json.loads((world["out"] / "nights" / "2026-11-27" / "night.json").read_text())
    assert n["state"] == "interrupted" and [c["status"] for c in n["cells"]] == ["PASS"]
    asked = len(world["srv"].requests)
    monkeypatch.setattr(series_run, "test", real)
    boots = len(world["boots"])
    code, n = _night(world, "2026-11-27")
    assert code == 0 and n["state"] == "done"
    assert len(world["srv"].requests) == asked          # the stored plan, no discovery
    assert [c["status"] for c in n["cells"]] == ["PASS", "PASS"]
    # Only the second series' patched kernel booted: the baseline was booted
    # by the first cell tonight, before the kill.
    assert len(world["boots"]) == boots + 1


def test_no_result_at_all_is_exit_5_and_never_a_pass(world):
    """lore down and nothing discovered: no cell, status 5."""
    toml = world["toml"]
    toml.write_text(toml.read_text().replace(world["srv"].url, "http://127.0.0.1:9"))
    cfg = config_file.load(toml)
    code = nightly.run_night(cfg, world["out"], "2026-11-27")
    n = json.loads((world["out"] / "nights" / "2026-11-27" / "night.json").read_text())
    assert code == 5 and n["cells"] == [] and n["exit_code"] == 5
    assert any(c["kind"] == "error" for c in n["changes"])


def test_a_cells_recorded_command_and_reproduce_line_are_the_cell_again(world, monkeypatch,
                                                                          tmp_path):
    """Each cell's run.json command and its reproduce line (the revision by
    Message-ID from lore), run as orch: the same verdict and exit status,
    the same tests, the same kernels (built nothing: the same kernel keys;
    and the cell's boot settings, so its kept results answer); both read
    back as the options the cell ran with."""
    ran = {}
    real = series_run.test

    def kept_options(opts, progress=None):
        ran[opts.run_dir] = opts
        return real(opts, progress)
    monkeypatch.setattr(series_run, "test", kept_options)
    code, n = _night(world, "2026-11-27")        # v3 fails its test, "mini: counter" passes
    assert code == 1 and [c["status"] for c in n["cells"]] == ["FAIL", "PASS"], n["changes"]
    ndir = world["out"] / "nights" / "2026-11-27"
    t = types.SimpleNamespace(**n["plan"]["trees"][0])
    for i, c in enumerate(n["cells"]):
        rec = run_json(ndir / c["run_dir"])
        opts = ran[ndir / c["run_dir"]]
        assert differences(opts, rec["command"]) == {}
        assert differences(as_reproduced(opts, c["msgid"], t), c["reproduce"],
                           NOT_REPRODUCED) == {}
        for kind, argv in (("command", rec["command"]), ("reproduce", shlex.split(c["reproduce"]))):
            rd = tmp_path / f"again-{i}-{kind}"
            r = orch_standin(tmp_path, dict(os.environ), *argv[1:], "--run-dir", str(rd),
                             harness=False)
            again = run_json(rd)
            assert (r.returncode, again["exit_code"], again["verdict"]) == \
                (rec["exit_code"], rec["exit_code"], rec["verdict"]), (kind, r.stderr)
            assert _results(again) == _results(rec), kind
            # Built nothing; booted only what the line says to boot again
            # (the cell's own command keeps --rerun-baseline of the cell
            # that booted the night's baseline).
            for side in ("baseline", "patched"):
                a = again["configs"][0][side]
                rebooted = kind == "command" and side == "baseline" and opts.rerun_baseline
                assert a["build"]["cached"] and a["boot"]["cached"] != rebooted, (kind, side)


def _results(rec: dict) -> list:
    """What a run found, per config: each side's kernel and tests, the comparison."""
    return [(cfg["name"], cfg.get("verdict"),
             [(cfg[side]["build"].get("key"), cfg[side]["build"].get("banner"),
               [(t["name"], t["status"]) for t in cfg[side].get("tests") or []])
              for side in ("baseline", "patched")],
             [(x["name"], x["baseline"], x["patched"], x["transition"])
              for x in cfg.get("comparison") or []])
            for cfg in rec["configs"]]
