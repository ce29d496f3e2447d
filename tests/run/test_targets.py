"""Targets: the guest tests a series is expected to fix (run/targets.py,
guest/about.py), and the verdict that follows from them. A test failing on
the baseline and on the patched kernel fails the run only when it is a
target; otherwise it is a known failure, listed and exit 0.

The runs are real `orch test` processes on the stand-in tree (builds in
seconds) with the stand-in guest (tests/standin_guest.py): the baseline
tree compiles `ORCH-GUEST:FAIL` in, so every selected test fails on both
kernels, as the DONTCACHE tests do on 7.2.13. The suite is a directory of
this test's own, with or without an about.toml beside its tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import PATCHES, PORT, git, one_error_line, orch_standin, run_json, series

from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.guest import about, selection
from orchestrator.reports import html_page
from orchestrator.run import record, targets

UNRELATED = PATCHES / "unrelated-readahead-comment.mbox"
V2 = PORT.parent / "blk-dontcache-v2-port-7.2.13.mbox"
KNOWN = "known failures (failing on the baseline too; not a target of this series)"

ABOUT = """\
[[entry]]
tests = ["test_target.py"]
paths = ["main.c"]          # what test_target checks

[[entry]]
tests = ["test_other.py::test_o*"]
paths = ["other/"]          # a directory: everything under it
"""


# -- the rule, unit by unit --------------------------------------------------

@pytest.mark.parametrize("pattern,tid,hit", [
    ("t.py::a", "t.py::a", True),
    ("t.py", "t.py::a[x]", True),                       # a file
    ("t.py::C", "t.py::C::a", True),                    # a class
    ("t.py::a", "t.py::a[x]", True),                    # a test without its parameters
    ("t.py::a[x]", "t.py::a[x]", True),                 # an id is no character class
    ("t.py::a[y]", "t.py::a[x]", False),
    ("t.py::a", "t.py::ab", False),                     # no prefix inside a name
    ("t", "t.py::a", False),
    ("d/", "d/t.py::a", True),                          # a directory
    ("*many*", "guest_tests/test_many_folios.py::x", True),
    ("test_*.py", "test_f.py::x", True),                # a glob over the file
    ("test_f.py::test_ext4_*", "test_f.py::test_ext4_a[irq]", True),
    ("*.py::b", "t.py::a", False),
])
def test_a_pattern_names_tests_at_pytest_boundaries(pattern, tid, hit):
    assert about.matches(pattern, tid) is hit


def test_touched_paths_are_both_sides_of_every_diff():
    assert targets.touched_paths(PORT.read_text()) == [
        "block/fops.c", "fs/buffer.c", "include/linux/buffer_head.h",
        "include/linux/pagemap.h", "mm/filemap.c", "mm/page_alloc.c"]
    assert targets.touched_paths(UNRELATED.read_text()) == ["mm/readahead.c"]
    moved = ("diff --git a/old/x.c b/new/x.c\nsimilarity index 90%\nrename from old/x.c\n"
             "rename to new/x.c\n--- a/old/x.c\n+++ b/new/x.c\n"
             "diff --git a/gone.c b/gone.c\ndeleted file mode 100644\n--- a/gone.c\n"
             "+++ /dev/null\n")
    assert targets.touched_paths(moved) == ["gone.c", "new/x.c", "old/x.c"]


def test_the_suites_about_toml_names_every_test():
    """A test no entry names is every series' target: in orch's own suite
    each one is named, so that fallback never decides for it."""
    ids = selection.collect(None)
    got = about.tests_about(ids, selection.rootdir(selection.paths.data_root(), None),
                            ["no/such/file.c"])
    assert got.unnamed == [] and got.named == [] and len(got.about) == 1


@pytest.mark.parametrize("mbox,count", [(PORT, "all"), (V2, "all"), (UNRELATED, 0)])
def test_the_dontcache_tests_are_targets_of_the_series_about_them(mbox, count):
    """RFC v3 and v2 (mm/filemap.c, block/fops.c, ...) are expected to fix
    every DONTCACHE test, many_folios and memcg included; a comment change
    in mm/readahead.c none."""
    ids = selection.collect(None)
    t = targets.choose(None, ids, None, mbox)
    assert t.rule == "touched"
    assert t.tests == (ids if count == "all" else [])
    if count == "all":
        assert "guest_tests/test_many_folios.py::test_many_folios_all_evicted" in t.tests
        assert "guest_tests/test_memcg_pressure.py::test_dontcache_under_memcg_limit[irq]" \
            in t.tests


def test_a_series_touching_only_an_entrys_own_path_targets_only_its_tests():
    ids = selection.collect(None)
    rootdir = selection.rootdir(selection.paths.data_root(), None)
    hot = about.tests_about(ids, rootdir, ["mm/page_alloc.c"])
    assert hot.named == ["guest_tests/test_hotplug.py::test_cpu_offline_during_dontcache_writeback"]
    ext4 = about.tests_about(ids, rootdir, ["fs/ext4/page-io.c"])
    assert [short(t) for t in ext4.named] == [
        "test_ext4_overwrite_evicts[nullblk-irq]", "test_ext4_overwrite_evicts[virtio-blk]",
        "test_ext4_new_allocation_evicts[dioread_nolock]",
        "test_ext4_new_allocation_evicts[dioread_lock]"]


def short(tid: str) -> str:
    return tid.split("::")[-1]


def test_expect_fixed_patterns_are_checked_against_the_selection():
    ids = ["g/test_a.py::x", "g/test_b.py::y[1]"]
    targets.check_patterns(None, ids)
    targets.check_patterns(["none"], ids)
    targets.check_patterns(["g/test_a.py", "*::y*"], ids)
    with pytest.raises(BadInput, match=r"--expect-fixed g/test_c.py: matches none of the 2"):
        targets.check_patterns(["g/test_a.py", "g/test_c.py"], ids)
    with pytest.raises(BadInput, match="give it alone"):
        targets.check_patterns(["none", "g/test_a.py"], ids)
    assert targets.choose(["*::y*"], ids, None, UNRELATED).tests == ["g/test_b.py::y[1]"]
    none = targets.choose(["none"], ids, None, UNRELATED)
    assert (none.rule, none.tests, none.patterns) == ("expect-fixed", [], ["none"])


@pytest.mark.parametrize("text,why", [
    ("[[entry]]\ntests = ['t.py']\n", "entry[0]: needs paths"),
    ("[[entry]]\ntests = ['t.py']\npaths = []\n", "entry[0].paths: must be a non-empty array"),
    ("[[entry]]\ntests = ['t.py']\npaths = ['a']\nwhy = 1\n", "entry[0].why: unknown key"),
    ("[entry]\ntests = 1\n", "needs [[entry]] tables"),
    ("tests = [\n", "not valid TOML"),
    ("", "needs [[entry]] tables"),
])
def test_a_broken_about_toml_is_one_line_and_the_suites_fault(tmp_path, text, why):
    f = tmp_path / "about.toml"
    f.write_text(text)
    with pytest.raises(OrchError) as e:
        about.load(f)
    assert e.value.exit == Exit.INFRA and why in str(e.value) and str(f) in str(e.value)
    assert "\n" not in str(e.value)


# -- real `orch test` runs on the stand-in tree ------------------------------

def guest(what: str) -> str:
    return f'const char orch_guest_{what.lower()}[] = "ORCH-GUEST:{what}";\n'


@pytest.fixture
def world(tmp_path, mini, env):
    """The stand-in tree whose baseline fails every guest test, a suite of
    two tests with an about.toml, a series touching what test_target is
    about (main.c) and one touching neither test's paths (old.c)."""
    (mini / "known.c").write_text(guest("FAIL"))
    git(mini, "add", "-A")
    git(mini, "commit", "-q", "-m", "mini: a tree on which every guest test fails")
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_target.py").write_text("def test_t():\n    pass\n")
    (suite / "test_other.py").write_text("def test_o():\n    pass\n")
    (suite / "about.toml").write_text(ABOUT)
    bare = tmp_path / "bare"            # the same tests, nothing said about them
    bare.mkdir()
    for f in ("test_target.py", "test_other.py"):
        (bare / f).write_text((suite / f).read_text())
    related = series(mini, tmp_path, "related", [("mini: main returns 1", {
        "main.c": "int mini_main(void)\n{\n\treturn 1;\n}\n"})])
    unrelated = series(mini, tmp_path, "unrelated", [("mini: a comment in old.c", {
        "old.c": "/* unrelated */\n" + (mini / "old.c").read_text()})])
    return {"tmp": tmp_path, "mini": mini, "env": env, "suite": suite, "bare": bare,
            "related": related, "unrelated": unrelated}


def run(w, name: str, mbox: str, *extra: str, suite: str = "suite"):
    rd = w["tmp"] / f"run-{name}"
    d = w[suite]
    r = orch_standin(w["tmp"], w["env"], "test", "--offline-mode", "--mbox", str(w[mbox]),
                     "--tree", str(w["mini"]), "--config", "base",
                     "--guest-test", str(d / "test_target.py"),
                     "--guest-test", str(d / "test_other.py"),
                     "--run-dir", str(rd), *extra, harness=False)
    return r, rd


def problems(rd: Path) -> dict:
    (cfg,) = run_json(rd)["configs"]
    return cfg["problems"]


def test_an_unrelated_series_passes_with_the_still_failing_tests_listed(world):
    r, rd = run(world, "unrelated", "unrelated")
    assert r.returncode == 0, r.stderr
    rec = run_json(rd)
    assert rec["verdict"] == "PASS" and rec["exit_code"] == 0 and rec["error"] is None
    assert rec["targets"] == {"rule": "touched", "tests": [],
                              "about": [str(world["suite"] / "about.toml")],
                              "touched": ["old.c"], "touched_count": 1}
    (cfg,) = rec["configs"]
    assert cfg["verdict"] == "PASS"
    assert [c["transition"] for c in cfg["comparison"]] == ["still failing"] * 2
    assert [c.get("known") for c in cfg["comparison"]] == [True, True]
    assert cfg["problems"]["failures"] == [] and len(cfg["problems"]["known"]) == 2
    assert all(k.endswith(" still failing") for k in cfg["problems"]["known"])
    out = r.stderr + r.stdout
    assert KNOWN in out
    assert "targets: 0 of 2 tests (about.toml, for the 1 file(s) the series touches: old.c)" \
        in out
    assert "verdict: PASS (exit 0)" in out
    page = html_page.write_run_page(record.read(rd / "run.json"), rd).read_text()
    assert page.count("(known failure: failing on the baseline too") == 2


def test_a_series_touching_a_named_path_fails_on_its_still_failing_target(world):
    r, rd = run(world, "related", "related")
    assert r.returncode == 1, r.stderr
    rec = run_json(rd)
    assert rec["verdict"] == "FAIL"
    assert rec["targets"]["rule"] == "touched" and rec["targets"]["touched"] == ["main.c"]
    (target,) = rec["targets"]["tests"]
    assert target.endswith("suite/test_target.py::test_t")
    p = problems(rd)
    assert p["failures"] == [f"config base: {target} still failing"]
    assert len(p["known"]) == 1 and "test_other.py::test_o still failing" in p["known"][0]
    assert rec["error"] == p["failures"][0]


def test_expect_fixed_overrides_what_the_series_touches_both_ways(world):
    r, rd = run(world, "ef-other", "unrelated", "--expect-fixed", "*/test_other.py")
    assert r.returncode == 1, r.stderr
    rec = run_json(rd)
    assert rec["targets"]["rule"] == "expect-fixed"
    assert rec["targets"]["patterns"] == ["*/test_other.py"]
    assert "touched" not in rec["targets"]
    assert [f.rsplit("::", 1)[-1] for f in problems(rd)["failures"]] == ["test_o still failing"]
    assert rec["command"][-2:] == ["--expect-fixed", "*/test_other.py"]
    r, rd = run(world, "ef-none", "related", "--expect-fixed", "none")
    assert r.returncode == 0, r.stderr
    assert run_json(rd)["targets"] == {"rule": "expect-fixed", "tests": [],
                                       "patterns": ["none"]}
    assert len(problems(rd)["known"]) == 2
    assert "targets: none (--expect-fixed none)" in r.stderr + r.stdout


def test_an_expect_fixed_pattern_that_names_no_test_stops_before_any_build(world):
    r, rd = run(world, "ef-typo", "related", "--expect-fixed", "*/test_targte.py")
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert "--expect-fixed */test_targte.py: matches none of the 2 selected guest tests" in line
    assert not (Path(world["env"]["ORCH_CACHE"]) / "kernels").exists()   # nothing built
    assert not (rd / "run.json").exists() or run_json(rd)["configs"] == []
    r, _ = run(world, "ef-mixed", "related", "--expect-fixed", "none",
               "--expect-fixed", "*/test_target.py")
    assert r.returncode == 2 and "give it alone" in one_error_line(r.stderr)


def test_a_suite_without_about_toml_makes_every_test_a_target(world):
    r, rd = run(world, "bare", "unrelated", suite="bare")
    assert r.returncode == 1, r.stderr
    rec = run_json(rd)
    assert rec["targets"]["rule"] == "all" and len(rec["targets"]["tests"]) == 2
    assert len(problems(rd)["failures"]) == 2 and problems(rd)["known"] == []
    assert "targets: all 2 tests (the guest suite has no about.toml)" in r.stderr + r.stdout


def test_summary_of_an_old_record_without_targets_still_reads(tmp_path):
    """run.json before 1.3 has no targets and no problems.known."""
    from orchestrator.run import summary
    old = json.loads((Path(__file__).parent.parent / "data" / "records" / "run.json")
                     .read_text())
    assert "targets" not in old
    text = summary.summary(record.RunRecord.from_json(old))
    assert KNOWN not in text and "targets:" not in text
