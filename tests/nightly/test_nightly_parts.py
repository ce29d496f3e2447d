"""The nightly's parts on their own: NIGHTLY.toml, the SQLite history and its
migrations, the comparison rules and the exit status."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from helpers import REPO
from night_sample import IRQ, TASK, sample_night

from orchestrator.core import figures
from orchestrator.core.errors import BadInput, OrchError
from orchestrator.nightly import cell_rows, compare, config_file, history, night
from orchestrator.nightly.night import Cell, CellSplat, TestCell, TreeState
from orchestrator.run.record import ConfigRecord, RunRecord, TestRecord


def _toml(tmp_path, text: str):
    f = tmp_path / "nightly.toml"
    f.write_text(textwrap.dedent(text))
    return f


def test_the_example_file_is_what_the_readme_documents():
    cfg = config_file.load(REPO / "examples" / "nightly.toml")
    assert cfg.configs and (cfg.series or cfg.queries) and cfg.trees


def test_a_full_file_loads(tmp_path):
    f = _toml(tmp_path, """
        lore_url = "https://lore.kernel.org/all"
        configs = ["base", "debug"]
        guest_tests = ["guest_tests/test_blockdev_dontcache.py"]
        [[series]]
        msgid = "<20251127-blk-dontcache-v2-0-abc@columbia.edu>"
        [[query]]
        q = 's:RWF_DONTCACHE AND d:2.days.ago..'
        [[tree]]
        debian_source = "linux-source-7.2"
        [[tree]]
        path = "~/linux"
        ref = "origin/master"
        """)
    cfg = config_file.load(f)
    assert cfg.lore_url == "https://lore.kernel.org"     # orch's form: the host
    assert cfg.series == ["20251127-blk-dontcache-v2-0-abc@columbia.edu"]
    assert cfg.queries == ["s:RWF_DONTCACHE AND d:2.days.ago.."]
    assert [t.label for t in cfg.trees] == ["debian:linux-source-7.2", "~/linux@origin/master"]
    assert cfg.trees[1].ref == "origin/master" and cfg.trees[1].path.is_absolute()


@pytest.mark.parametrize("text,says", [
    ("config = ['base']\n[[series]]\nmsgid = 'a@b'\n", "did you mean 'configs'"),
    ("[[series]]\nmsgid = 'a@b'\nmsgids = 1\n", "series[0].msgids: unknown key (did you mean"),
    ("configs = ['nosuch']\n[[series]]\nmsgid = 'a@b'\n", "unknown config 'nosuch'"),
    ("[[series]]\nmsgid = 'not a msgid'\n", "series[0].msgid"),
    ("[[series]]\nmsgid = 'a@b'\n[[tree]]\npath = '/x'\ndebian_source = 'y'\n",
     "exactly one of debian_source or path"),
    ("[[series]]\nmsgid = 'a@b'\n[[tree]]\ndebian_source = 'y'\nref = 'main'\n",
     "tree[0].ref"),
    ("configs = ['base']\n", "nothing to test"),
    ("[[series]]\nmsgid = 'a@b'\n[[query]]\nquery = 'x'\n", "query[0].query: unknown key"),
    ("lore_url = 'ftp://x'\n[[series]]\nmsgid = 'a@b'\n", "lore_url"),
    ("[[series]\n", "not valid TOML"),
])
def test_a_bad_file_is_one_line_naming_the_key(tmp_path, text, says):
    f = _toml(tmp_path, text)
    with pytest.raises(BadInput) as e:
        config_file.load(f)
    assert says in str(e.value) and str(f) in str(e.value) and "\n" not in str(e.value)


def test_a_bad_file_is_exit_2_from_the_cli(tmp_path):
    f = _toml(tmp_path, "[[series]]\nmsgid = 'a@b'\nbogus = 1\n")
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "nightly", str(f), "--out",
                        str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                            "HOME": str(tmp_path)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "series[0].bogus" in r.stderr
    assert not (tmp_path / "out").exists()


# -- history -----------------------------------------------------------------

def test_history_keeps_a_night_and_answers_for_the_next(tmp_path):
    n = sample_night("2026-11-27")
    h = history.History(tmp_path / "h.sqlite")
    h.record_night(n)
    assert h.version() == history.SCHEMA_VERSION
    c = n.cells[1]
    night, back = h.last_result(c.series, c.tree, c.config, before="2026-11-28")
    assert night == "2026-11-27"
    assert back == c      # every field of the cell survives the round trip
    assert h.last_result(c.series, c.tree, c.config, before="2026-11-27") is None
    assert h.figure_history(c.series, c.tree, c.config, f"evicted:{IRQ}", "2026-11-28") == [1.0]
    assert h.tested_series() == {s.key for s in n.plan.series}
    assert [p.night for p in h.series_history(c.series)] == ["2026-11-27"] * 2
    # A rerun of the night replaces its rows, never doubles them.
    h.record_night(n)
    assert len(h.series_history(c.series)) == 2
    h.close()
    # An ERROR cell is no result: the comparison looks past it.
    n2 = sample_night("2026-11-28")
    for x in n2.cells:
        x.status = "ERROR"
    h = history.History(tmp_path / "h.sqlite")
    h.record_night(n2)
    assert h.last_result(c.series, c.tree, c.config, before="2026-11-29")[0] == "2026-11-27"


def test_an_older_history_is_migrated_and_a_newer_refused(tmp_path):
    path = tmp_path / "h.sqlite"
    db = sqlite3.connect(path)
    db.executescript(history.MIGRATIONS[0] + "PRAGMA user_version = 1;")
    db.execute("INSERT INTO nights VALUES ('2026-11-01', 's', 'f', 'done', 0, '{}')")
    db.commit()
    db.close()
    h = history.History(path)
    assert h.version() == history.SCHEMA_VERSION == 2
    assert h.nights() == ["2026-11-01"]                       # rows kept
    idx = {r[0] for r in h.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"cells_by_cell", "figures_by_name"} <= idx
    h.db.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    h.db.commit()
    h.close()
    with pytest.raises(BadInput, match="newer than this orch"):
        history.History(path)
    (tmp_path / "junk.sqlite").write_text("not a database at all " * 100)
    with pytest.raises(BadInput, match="not an orch history"):
        history.History(tmp_path / "junk.sqlite")


def test_a_second_nightly_on_the_same_history_is_refused(tmp_path):
    with history.lock(tmp_path):
        with pytest.raises(OrchError) as e:
            with history.lock(tmp_path):
                pass
        assert e.value.exit == 5 and "another orch nightly" in str(e.value)
    with history.lock(tmp_path):   # released: the next night may start
        pass


# -- comparison --------------------------------------------------------------

def _cell(status="PASS", version=2, tests=None, splats=(), figures=None, accel="tcg"):
    return Cell(series="change-id:x", version=version, msgid="m@x", tree="t", commit="c" * 40,
                config="base", status=status, detail="", run_dir="cells/x",
                reproduce="orch test m@x --tree /t --on cccc --config base",
                tests=[TestCell(n, "FAIL", s, "") for n, s in (tests or {}).items()],
                splats=[CellSplat(f, "WARNING: x", "patched") for f in splats],
                figures=figures or {}, accel=accel)


def kinds(changes):
    return sorted((c.kind, c.regression) for c in changes)


def test_comparison_rules():
    prev = _cell(tests={IRQ: "PASS", TASK: "FAIL"}, splats=("aaa",))
    same = _cell(tests={IRQ: "PASS", TASK: "FAIL"}, splats=("aaa",))
    assert compare.cell_changes(same, "S", prev, "2026-11-27") == []
    flip = _cell(status="FAIL", tests={IRQ: "FAIL", TASK: "PASS"}, splats=("aaa", "bbb"))
    ch = compare.cell_changes(flip, "S", prev, "2026-11-27")
    assert kinds(ch) == [("fixed", False), ("new-failure", True), ("new-splat", True)]
    assert all(c.reproduce for c in ch if c.regression)
    assert kinds(compare.cell_changes(_cell("NO-APPLY"), "S", prev, "d")) == \
        [("no-longer-applies", True)]
    assert compare.cell_changes(_cell("NO-APPLY"), "S", _cell("NO-APPLY"), "d") == []
    assert kinds(compare.cell_changes(_cell(), "S", _cell("NO-APPLY"), "d")) == \
        [("applies-again", False)]
    assert kinds(compare.cell_changes(_cell("BUILD-FAILED"), "S", prev, "d")) == \
        [("build-broken", True)]
    # A new revision: reported; a failing one is a regression.
    assert kinds(compare.cell_changes(_cell(version=3, tests={IRQ: "PASS"}), "S", prev, "d")) \
        == [("new-revision", False)]
    assert kinds(compare.cell_changes(_cell("FAIL", 3, {IRQ: "FAIL"}), "S", prev, "d")) == \
        [("new-revision", True)]
    # A new series: failing is a regression, passing is news.
    assert kinds(compare.cell_changes(_cell(), "S", None, None)) == [("new-series", False)]
    assert kinds(compare.cell_changes(_cell("NO-APPLY"), "S", None, None)) == \
        [("new-series-failing", True)]
    # No result is never a regression and never a pass.
    assert kinds(compare.cell_changes(_cell("ERROR"), "S", prev, "d")) == [("error", False)]


def test_figures_are_advisory_and_need_a_spread():
    prev = _cell(tests={IRQ: "PASS"})
    now = _cell(tests={IRQ: "PASS"}, figures={"f": 5.0, "g": 1.5})
    past = {"f": [1.0, 2.0], "g": [1.0, 2.0]}
    ch = compare.cell_changes(now, "S", prev, "d", past)
    assert kinds(ch) == [("figure-moved", False)] and "f on t base: 5" in ch[0].text
    assert "advisory under TCG" in ch[0].text
    assert compare.cell_changes(now, "S", prev, "d", {"f": [1.0]}) == []   # one night: no spread


def test_exit_status():
    assert compare.exit_status([], []) == 5
    assert compare.exit_status([_cell("ERROR")], []) == 5
    ok = [_cell()]
    assert compare.exit_status(ok, []) == 0
    assert compare.exit_status(ok, compare.cell_changes(_cell("NO-APPLY"), "S", None, None)) == 1
    assert compare.exit_status(ok, compare.tree_changes(
        [TreeState("t", "git", "/t", "c" * 40, stale="fetch failed")])) == 0
    # A merged night a CI job of which did not report: never a pass, but a
    # regression or no result at all says more.
    assert compare.exit_status(ok, [], incomplete=True) == 7
    assert compare.exit_status(ok, compare.cell_changes(_cell("NO-APPLY"), "S", None, None),
                               incomplete=True) == 1
    assert compare.exit_status([_cell("ERROR")], [], incomplete=True) == 5


def test_orch_test_on_applies_on_exactly_that_commit(tmp_path, env, mini):
    from helpers import build_only, git, orch, run_json, series
    first = subprocess.run(["git", "-C", str(mini), "rev-parse", "HEAD"], capture_output=True,
                           text=True, check=True).stdout.strip()
    mbox = series(mini, tmp_path, "s", [("mini: feature", {"feature.c": "int f(void);\n"})])
    # The series names the tree's newest commit as its base; --on wins.
    text = mbox.read_text().replace("\n---\n", "\n---\nbase-commit: PLACEHOLDER\n", 1)
    (mini / "later.c").write_text("int later(void) { return 2; }\n")
    git(mini, "add", "-A")
    git(mini, "commit", "-q", "-m", "mini: later")
    head = subprocess.run(["git", "-C", str(mini), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    mbox.write_text(text.replace("PLACEHOLDER", head))
    r, rd = build_only(env, tmp_path, mini, mbox, "--on", first)
    assert r.returncode == 0, r.stderr
    tree = run_json(rd)["tree"]
    assert tree["base"] == first and "--on" in tree["base_reason"], tree
    # The control: without --on the series' base-commit is used.
    r, rd = build_only(env, tmp_path, mini, mbox, rd_name="run2")
    assert r.returncode == 0, r.stderr
    assert run_json(rd)["tree"]["base"] == head
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(mbox), "--tree", str(mini),
             "--on", first, "--base", first)
    assert r.returncode == 2 and "--on" in r.stderr
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(mbox), "--tree", str(mini),
             "--on", "nosuchref")
    assert r.returncode == 2 and "no such commit" in r.stderr


# -- figures: what a cell keeps of them ----------------------------------------------------

SCALE = "guest_tests/test_scale_bench.py::test_scale_dontcache_writers"
# A cell's fields in night.json before figures carried declarations.
OLD_CELL_FIELDS = {"series", "version", "msgid", "tree", "commit", "config", "status", "detail",
                   "run_dir", "reproduce", "tests", "splats", "build_seconds", "boot_seconds",
                   "built", "booted", "figures", "accel"}


def guest_recorder(props: list):
    """guest_tests/figures.py's Recorder with the suite's own DECLARED."""
    spec = importlib.util.spec_from_file_location("guest_figures",
                                                  REPO / "guest_tests" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Recorder(props)


def dontcache_config() -> ConfigRecord:
    """What the DONTCACHE suite's tests record through its helper, with the
    numbers of tests/night_sample.py's older night: the eviction figure of
    two tests, and the scale sweep on both sides."""
    cfg = ConfigRecord("base")
    for side, base in (("baseline", 40.0), ("patched", 35.0)):
        tests = []
        for test in (IRQ, TASK):
            props: list = []
            guest_recorder(props)("evicted", 1.0)
            tests.append(TestRecord(test, "PASS", "", 1.0, dict(props)))
        props = []
        record = guest_recorder(props)
        for n in (1, 2):
            record("mib_per_s", round(base * n * (0.9 if n == 2 else 1.0), 1), at=n)
            record("contentions", float(3 * n * n if side == "patched" else n), at=n)
        cfg.side(side).tests = tests + [TestRecord(SCALE, "PASS", "", 1.0, dict(props))]
    return cfg


def key_changes(values: dict[str, float], older: dict[str, float]) -> set[str]:
    """The keys on one side only: a figure whose key changed starts its
    history again (figure-moved needs past nights under the same key)."""
    return set(values) ^ set(older)


def test_the_dontcache_suites_figures_keep_the_keys_of_older_nights():
    got = cell_rows.cell_figures(dontcache_config())
    older = sample_night().cells[0].figures          # what a night before declarations kept
    assert key_changes(got.values, older) == set() and got.values == older
    assert set(got.declarations) == {"evicted", "mib_per_s", "contentions"}
    assert got.declarations["contentions"].better == figures.Better.LOWER


def test_control_the_key_check_sees_a_changed_key(monkeypatch):
    monkeypatch.setattr(figures, "x_text", lambda x: repr(float(x)))     # "2.0", not "2"
    got = cell_rows.cell_figures(dontcache_config())
    assert "scale:patched:mib_per_s:2.0" in key_changes(got.values,
                                                        sample_night().cells[0].figures)


def new_fields(night_json: dict) -> set[str]:
    return {k for c in night_json["cells"] for k in c} - OLD_CELL_FIELDS


def _record(cfg: ConfigRecord) -> RunRecord:
    return RunRecord("0", ["orch", "test"], "/r", "now", state="done", verdict="PASS",
                     exit_code=0, configs=[cfg])


def test_declarations_travel_in_night_json_and_nothing_new_without_them(tmp_path):
    plan = sample_night().plan
    s, t = plan.series[0], plan.trees[0]
    bare = ConfigRecord("base")
    bare.patched.tests = [TestRecord(IRQ, "PASS", "", 1.0, {"pages_still_cached": "0"})]
    n = sample_night()
    n.cells = [cell_rows.from_record(_record(bare), s, t, "base", "cells/a")]
    assert new_fields(sample_night().to_json()) == set() == new_fields(n.to_json())
    n.put(cell_rows.from_record(_record(dontcache_config()), plan.series[1], t, "base",
                                "cells/b"))
    assert new_fields(n.to_json()) == {"declarations"}
    n.write(tmp_path)
    data = json.loads((tmp_path / night.FILE).read_text())
    assert data["cells"][1]["declarations"]["contentions"] == {
        "title": "lock contentions vs writers", "unit": "lock contentions (lock_stat)",
        "better": "lower", "x": "writers (N devices)"}
    back = night.read(tmp_path)
    assert back.cells[1].declarations == n.cells[1].declarations
    assert back.cells[1].declarations["evicted"].y_range == (0.0, 1.05)


def test_control_the_new_fields_check_sees_an_empty_declaration():
    n = sample_night()
    n.cells[0].declarations = {}         # what a cell without figures must not write
    assert new_fields(n.to_json()) == {"declarations"}


def test_a_shards_declarations_are_cleaned_when_read(tmp_path):
    """night.json from a CI shard is an artifact: what its declarations hold
    is made plain text and numbers again."""
    n = sample_night()
    n.write(tmp_path)
    data = json.loads((tmp_path / night.FILE).read_text())
    data["cells"][0]["declarations"] = {"x": {"title": ["<b>", 1], "unit": "u\x1b[31m" * 50,
                                              "y_min": "abc", "y_max": 2}}
    (tmp_path / night.FILE).write_text(json.dumps(data))
    d = night.read(tmp_path).cells[0].declarations["x"]
    assert d.title == "['<b>', 1]" and len(d.unit) <= 40 and "\x1b" not in d.unit
    assert d.y_min is None and d.y_range is None and d.better is None


# -- settings: NIGHTLY.toml over config.toml over orch's defaults -------------

SERIES = "[[series]]\nmsgid = 'a@b'\n"


def _machine(tmp_path, monkeypatch, text: str):
    """This machine's settings from a config.toml holding `text`."""
    from orchestrator.run import settings
    path = tmp_path / "config.toml"
    path.write_text(text)
    monkeypatch.setenv("ORCH_CONFIG", str(path))
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    return settings.resolve({})


def test_the_timeout_keys_load_and_go_into_the_plan(tmp_path, monkeypatch):
    f = _toml(tmp_path, "guest_timeout = 1800\ntest_timeout = 120.5\ntimeout = 7200\n" + SERIES)
    cfg = config_file.load(f)
    assert (cfg.guest_timeout, cfg.test_timeout, cfg.timeout) == (1800.0, 120.5, 7200.0)
    # Left out: None, so that each machine's own settings answer.
    bare = config_file.load(_toml(tmp_path, SERIES))
    assert (bare.guest_timeout, bare.test_timeout, bare.timeout) == (None, None, None)


@pytest.mark.parametrize("key", ["guest_timeout", "test_timeout", "timeout", "lore_timeout"])
@pytest.mark.parametrize("value", ["0", "-5", "true", "'900'", "inf", "nan", "[1]"])
def test_a_bad_timeout_is_one_line_naming_the_key(tmp_path, key, value):
    f = _toml(tmp_path, f"{key} = {value}\n" + SERIES)
    with pytest.raises(BadInput) as e:
        config_file.load(f)
    assert str(e.value) == f"{f}: {key}: must be a positive number of seconds"


def test_cells_take_the_nights_timeouts_over_the_machines_over_orchs(tmp_path, monkeypatch):
    from orchestrator.guest import vm
    from orchestrator.nightly import cells
    from orchestrator.run import settings
    machine = _machine(tmp_path, monkeypatch, "guest_timeout = 1200\ntest_timeout = 200\n"
                       "jobs = 3\n")
    plan = sample_night().plan
    plan.test_timeout = 99.0                       # NIGHTLY.toml's
    opts = cells.night_options(plan, "base", None, True, machine)
    assert (opts.jobs, opts.guest_timeout, opts.test_timeout, opts.timeout) == \
        (3, 1200, 99.0, None)
    plan.timeout = 3600.0
    assert config_file.cell_settings(plan, machine) == config_file.CellSettings(
        jobs=3, guest_timeout=1200, test_timeout=99.0, timeout=3600.0)
    # No machine settings (a library caller): orch's defaults under the night's.
    assert config_file.cell_settings(plan) == config_file.CellSettings(
        jobs=settings.defaults()["jobs"], guest_timeout=vm.BOOT_TIMEOUT, test_timeout=99.0,
        timeout=3600.0)


def test_the_machines_lore_settings_answer_where_the_file_is_silent(tmp_path, monkeypatch):
    machine = _machine(tmp_path, monkeypatch, 'lore_url = "https://lore.example.org"\n'
                       "lore_timeout = 42\n")
    cfg = config_file.load(_toml(tmp_path, SERIES), base=machine)
    assert (cfg.lore_url, cfg.lore_timeout) == ("https://lore.example.org", 42)
    cfg = config_file.load(_toml(tmp_path, "lore_url = 'https://lore.kernel.org/all'\n"
                                 "lore_timeout = 7\n" + SERIES), base=machine)
    assert (cfg.lore_url, cfg.lore_timeout) == ("https://lore.kernel.org", 7.0)


def test_the_file_digest_is_of_its_bytes(tmp_path):
    import hashlib
    f = _toml(tmp_path, SERIES)
    assert config_file.load(f).digest == hashlib.sha256(f.read_bytes()).hexdigest()
    f.write_text(SERIES + "# a comment is another file\n")
    assert config_file.load(f).digest == hashlib.sha256(f.read_bytes()).hexdigest()
