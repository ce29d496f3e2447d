"""--kselftest and --suite through `orch test`, `orch bisect` and `orch check`
on the stand-in tree: real git, real builds of the kernel and of its
kselftest target `mini` (kernel/kselftest_build), the tree's own
run_kselftest.sh running the built test (the stand-in guest runs it on the
host, tests/standin_guest.py), real KTAP parsing, result keeping and
verdicts. The real kernel's are test_kselftest_e2e.py's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import standin_guest
from helpers import REPO, git, one_error_line, orch_standin, run_json, series

from orchestrator import cli
from orchestrator.core import sandbox

MINI_C = "tools/testing/selftests/mini/test_mini.c"
TEST_MINI = "kselftest/mini/test_mini"
SCRIPT = "kselftest/mini/mini_script.sh"
SMOKE = REPO / "guest_selftest" / "smoke"


def behaving(repo: Path, how: str) -> str:
    """test_mini.c of `repo` made to `how` (pass, fail, skip, hang, die)."""
    src = (repo / MINI_C).read_text()
    assert '#define MINI_BEHAVIOUR "pass"' in src
    return src.replace('#define MINI_BEHAVIOUR "pass"', f'#define MINI_BEHAVIOUR "{how}"')


def orch_test(tmp_path, env, mbox, tree, *extra, rd="run"):
    r = orch_standin(tmp_path, env, "test", "--offline-mode", "--mbox", str(mbox), "--tree",
                     str(tree), "--config", "base", "--run-dir", str(tmp_path / rd), *extra)
    f = tmp_path / rd / "run.json"
    return r, (json.loads(f.read_text()) if f.exists() else None)


def test_a_series_passing_its_kselftests_then_a_rerun_builds_and_boots_nothing(
        tmp_path, env, mini):
    mbox = series(mini, tmp_path, "ok", [("mini: a harmless change",
                                          {"u1.c": "int u1(void) { return 1; }\n"})])
    r, rec = orch_test(tmp_path, env, mbox, mini, "--kselftest", "mini")
    assert r.returncode == 0, r.stdout + r.stderr
    assert rec["verdict"] == "PASS" and rec["kselftests"] == ["mini"]
    # Only the kselftests: no pytest session ran (the default rule).
    assert rec["expected_tests"] == [TEST_MINI, SCRIPT]
    (cfg,) = rec["configs"]
    for side in ("baseline", "patched"):
        (built,) = cfg[side]["build"]["kselftests"]
        assert built["target"] == "mini" and not built["cached"]
        assert built["tests"] == ["mini:test_mini", "mini:mini_script.sh"]
        assert {t["name"]: t["status"] for t in cfg[side]["tests"]} == {
            TEST_MINI: "PASS", SCRIPT: "PASS"}
        assert Path(cfg[side]["boot"]["console"]).exists()
        assert cfg[side]["boot"]["harness_rc"] is None
    # Each kernel its own build: the patched tree is another source state.
    keys = {cfg[s]["build"]["kselftests"][0]["key"] for s in ("baseline", "patched")}
    assert len(keys) == 2
    assert "kselftests: mini built" in r.stdout

    r, again = orch_test(tmp_path, env, mbox, mini, "--kselftest", "mini", rd="again")
    assert r.returncode == 0, r.stderr
    (cfg2,) = again["configs"]
    for side in ("baseline", "patched"):
        assert cfg2[side]["build"]["status"] == "cached"
        assert cfg2[side]["build"]["kselftests"][0]["cached"] is True
        assert cfg2[side]["boot"]["cached"] is True
    assert cfg2["comparison"] == cfg["comparison"]
    assert "kselftests: mini cached" in r.stdout


def test_a_series_breaking_its_kselftest_regresses_it(tmp_path, env, mini):
    mbox = series(mini, tmp_path, "bad", [("mini: break test_mini",
                                           {MINI_C: behaving(mini, "fail")})])
    r, rec = orch_test(tmp_path, env, mbox, mini, "--kselftest", "mini", "--suite", str(SMOKE))
    assert r.returncode == 1, r.stdout + r.stderr
    (cfg,) = rec["configs"]
    comp = {c["name"]: c for c in cfg["comparison"]}
    assert comp[TEST_MINI]["baseline"] == "PASS" and comp[TEST_MINI]["patched"] == "FAIL"
    assert comp[TEST_MINI]["transition"] == "regressed"
    assert comp[SCRIPT]["transition"] == "passing"
    # The suite ran in the same boot, as its own session, ids by its name.
    smoke = [n for n in comp if n.startswith("smoke/")]
    assert smoke and all(comp[n]["patched"] in ("PASS", "SKIP") for n in smoke)
    assert any(TEST_MINI in line for line in cfg["problems"]["regressions"])
    assert "verdict: FAIL (exit 1)" in r.stdout


def test_a_named_kselftest_no_kernel_lists_and_an_unknown_target_are_bad_input(
        tmp_path, env, mini):
    mbox = series(mini, tmp_path, "ok", [("mini: a harmless change",
                                          {"u1.c": "int u1(void) { return 1; }\n"})])
    r, rec = orch_test(tmp_path, env, mbox, mini, "--kselftest", "nosuch", rd="unknown")
    assert r.returncode == 2
    assert "nosuch" in one_error_line(r.stderr)
    # Before any build: nothing was built, the run directory is gone.
    assert rec is None and not list((tmp_path / "cache").glob("kernels/*"))
    r, rec = orch_test(tmp_path, env, mbox, mini, "--kselftest", "mini:nope", rd="nope")
    assert r.returncode == 2
    assert "mini:nope" in one_error_line(r.stderr)
    for bad in ("../etc", "mini:", "a:b:c"):
        r, _ = orch_test(tmp_path, env, mbox, mini, "--kselftest", bad, rd="bad")
        assert r.returncode == 2 and "--kselftest" in one_error_line(r.stderr)


def test_a_target_failing_to_build_on_the_patched_side_is_exit_4(tmp_path, env, mini):
    mbox = series(mini, tmp_path, "broken", [("mini: test_mini does not compile",
                                              {MINI_C: "int main(void) { return nope; }\n"})])
    r, rec = orch_test(tmp_path, env, mbox, mini, "--kselftest", "mini")
    assert r.returncode == 4, r.stdout + r.stderr
    line = one_error_line(r.stderr)
    assert "kselftest mini build failed on the patched kernel of config base" in line


@pytest.fixture
def boots(monkeypatch, env):
    for k, v in env.items():
        if k in ("ORCH_CACHE", "HOME"):
            monkeypatch.setenv(k, v)
    return standin_guest.install(monkeypatch, harness=True)


def test_bisect_on_a_kselftest_finds_the_commit_that_broke_it(tmp_path, mini, boots):
    ids = []
    for subject, files in [("mini: one", {"u1.c": "int u1(void) { return 1; }\n"}),
                           ("mini: break test_mini", {MINI_C: behaving(mini, "fail")}),
                           ("mini: three", {"u3.c": "int u3(void) { return 3; }\n"})]:
        for f, text in files.items():
            (mini / f).write_text(text)
        git(mini, "add", "-A")
        git(mini, "commit", "-q", "-m", subject)
        ids.append(subprocess.run(["git", "-C", str(mini), "rev-parse", "HEAD"],
                                  capture_output=True, text=True).stdout.strip())
    code = cli.main(["bisect", "--run-dir", str(tmp_path / "bisect"), "--config", "base",
                     "--tree", str(mini), "--good", "HEAD~3", "--bad", "HEAD",
                     "--kselftest", "mini:test_mini"])
    rec = json.loads((tmp_path / "bisect" / "run.json").read_text())
    assert code == 0, rec.get("error")
    assert rec["bisect"]["first_bad"]["commit"] == ids[1]
    assert rec["bisect"]["kselftests"] == ["mini:test_mini"]
    step = next(s for s in rec["bisect"]["steps"] if s["commit"] == ids[1])
    assert "--kselftest mini:test_mini" in step["reproduce"]


def test_check_on_a_kselftest_says_bad_to_git(tmp_path, mini, boots, monkeypatch):
    (mini / MINI_C).write_text(behaving(mini, "fail"))
    git(mini, "commit", "-qam", "mini: break test_mini")
    code = cli.main(["check", "--tree", str(mini), "--config", "base", "--run-dir",
                     str(tmp_path / "check"), "--kselftest", "mini:test_mini"])
    assert code == 1
    rec = run_json(tmp_path / "check")
    assert rec["bisect"]["kselftests"] == ["mini:test_mini"]
    assert rec["bisect"]["steps"][0]["tests"] == {TEST_MINI: "FAIL"}


def test_a_suite_the_sandboxed_guest_cannot_read_is_bad_input(tmp_path, env, mini):
    """As root, QEMU and the guest's files are nobody's: a suite under a
    0700 directory would be shown to a guest that cannot list it, and its
    tests would all be MISS with no reason given."""
    if not sandbox.as_root():
        pytest.skip("only a root orch runs its guest as another user")
    suite = tmp_path / "mine"
    suite.mkdir()
    (suite / "test_x.py").write_text("def test_x():\n    pass\n")
    suite.chmod(0o700)
    mbox = series(mini, tmp_path, "ok", [("mini: a harmless change",
                                          {"u1.c": "int u1(void) { return 1; }\n"})])
    r, rec = orch_test(tmp_path, env, mbox, mini, "--suite", str(suite))
    assert r.returncode == 2 and rec is None
    assert f"cannot read {suite} (mode 700)" in one_error_line(r.stderr)
    suite.chmod(0o755)
    (suite / "test_x.py").chmod(0o600)
    assert sandbox.unreadable(suite) == suite / "test_x.py"
    (suite / "test_x.py").chmod(0o644)
    assert sandbox.unreadable(suite) is None
