"""orch bisect and orch check on the stand-in tree: real git bisect, real
builds (make, gcc, ccache, the kernel cache), real result keeping and
verdict rules; only the boot is the stand-in guest (standin_guest.py), whose
answer comes from the built image. The real kernel is test_bisect_e2e.py's.

Each history is the stand-in tree plus one commit per step; a commit that
compiles `ORCH-GUEST:<WHAT>` into the kernel changes what its guest reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import standin_guest
from helpers import IRQ_TEST, REPO, TASK_TEST, git, orch_standin, run_json
from test_reproduce import differences

from orchestrator import cli
from orchestrator.bisect import search as bisect_cmd
from orchestrator.bisect.judge import Mode
from orchestrator.run.options import NOT_REPRODUCED, Options

TESTS = [IRQ_TEST, TASK_TEST]


def guest(what: str) -> str:
    """A .c file whose kernel's stand-in guest reports `what`."""
    return f'const char orch_guest_{what.lower()}[] = "ORCH-GUEST:{what}";\n'


BROKEN_C = "int broken(void)\n{\n\treturn undeclared_thing;\n}\n"


def history(repo: Path, steps: list[tuple[str, dict]]) -> list[str]:
    """Commit each step on repo's HEAD; the commit ids, oldest first."""
    ids = []
    for subject, files in steps:
        for f, text in files.items():
            if text is None:
                (repo / f).unlink()
            else:
                (repo / f).write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", subject)
        ids.append(subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                                  capture_output=True, text=True).stdout.strip())
    return ids


def plain(n: int) -> list[tuple[str, dict]]:
    return [(f"mini: unrelated change {i}", {f"u{i}.c": f"int u{i}(void) {{ return {i}; }}\n"})
            for i in range(n)]


@pytest.fixture
def boots(monkeypatch, env):
    for k, v in env.items():
        if k in ("ORCH_CACHE", "HOME"):
            monkeypatch.setenv(k, v)
    return standin_guest.install(monkeypatch)


def run(tmp_path, *args, rd="run") -> tuple[int, dict | None]:
    code = cli.main(["bisect", "--run-dir", str(tmp_path / rd), "--config", "base", *args])
    f = tmp_path / rd / "run.json"
    return code, (json.loads(f.read_text()) if f.exists() else None)


def sel_args(*tests):
    out = []
    for t in tests or TESTS:
        out += ["--guest-test", t]
    return out


def steps(rec, role="step"):
    return [s for s in rec["bisect"]["steps"] if s["role"] == role]


def test_finds_the_breaking_commit_and_a_second_bisect_builds_and_boots_nothing(
        tmp_path, mini, boots, capfd):
    ids = history(mini, plain(3) + [("mini: break the guest", {"bad.c": guest("FAIL")})]
                  + plain(4)[3:] + [("mini: more", {"m.c": "int m(void) { return 0; }\n"})])
    good, bad = ids[0], ids[-1]
    code, rec = run(tmp_path, "--tree", str(mini), "--good", good, "--bad", bad, *sel_args())
    assert code == 0, capfd.readouterr().err
    b = rec["bisect"]
    assert b["result"] == "found" and rec["verdict"] == "FOUND"
    assert b["first_bad"]["commit"] == ids[3]
    assert b["first_bad"]["subject"] == "mini: break the guest"
    assert b["first_bad"]["author"] == "T <t@example.org>"
    n = b["commits"]
    assert n == len(ids) - 1
    assert len(steps(rec)) <= b["max_steps"] == 4  # ceil(log2 5) + 1
    assert [s["outcome"] for s in steps(rec, "good end") + steps(rec, "bad end")] == \
        ["good", "bad"]
    # confirmed: the first bad and its parent booted once more
    conf = steps(rec, "confirm")
    assert [(s["commit"], s["outcome"], s["boot"]) for s in conf] == \
        [(ids[3], "bad", "booted"), (ids[2], "good", "booted")]
    assert b["reproduce"].startswith(f"orch test --tree {mini} --range {ids[2]}..{ids[3]}")
    # the log replays to the same answer in a plain clone
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(mini), str(clone)], check=True)
    out = subprocess.run(["git", "-C", str(clone), "bisect", "replay",
                          str(tmp_path / "run" / "bisect.log")], capture_output=True, text=True)
    assert f"{ids[3]} is the first bad commit" in out.stdout, out.stdout + out.stderr
    out, err = capfd.readouterr()
    assert "first bad commit: " + ids[3] in out          # the summary: the result
    assert "step 1: " in err and "| bad" in err          # the progress
    first_boots = len(boots)

    # Again: every kernel is in the kernel cache and every boot is kept.
    code, rec2 = run(tmp_path, "--tree", str(mini), "--good", good, "--bad", bad,
                     *sel_args(), rd="run2")
    assert code == 0
    assert len(boots) == first_boots, "the second bisect booted a kernel"
    assert all(s["build"] == "cached" and s["boot"] == "kept"
               for s in rec2["bisect"]["steps"]), rec2["bisect"]["steps"]
    assert rec2["bisect"]["first_bad"] == b["first_bad"]


def test_the_users_checkout_and_their_own_bisect_are_untouched(tmp_path, mini, boots):
    ids = history(mini, plain(2) + [("mini: break", {"bad.c": guest("FAIL")})])
    (mini / "notes.txt").write_text("uncommitted work\n")
    git(mini, "bisect", "start", ids[-1], ids[0])
    before = {cmd: subprocess.run(["git", "-C", str(mini), *cmd.split()], capture_output=True,
                                  text=True).stdout
              for cmd in ("rev-parse HEAD", "status --porcelain", "bisect log",
                          "for-each-ref refs/bisect", "worktree list --porcelain")}
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    *sel_args())
    assert code == 0 and rec["bisect"]["first_bad"]["commit"] == ids[-1]
    after = {cmd: subprocess.run(["git", "-C", str(mini), *cmd.split()], capture_output=True,
                                 text=True).stdout for cmd in before}
    wt = after.pop("worktree list --porcelain")
    assert after == {k: v for k, v in before.items() if k != "worktree list --porcelain"}
    # orch's build worktree stays (it is reused); its bisect worktree is gone.
    assert "/bisect/" not in wt, wt


def test_a_commit_that_does_not_build_is_skipped(tmp_path, mini, boots):
    ids = history(mini, plain(1) + [("mini: broken build", {"x.c": BROKEN_C}),
                                    ("mini: fix build, break guest",
                                     {"x.c": guest("FAIL")})] + plain(3)[1:])
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    *sel_args())
    # The break is the commit after the one that does not build: git
    # cannot tell which of the two it is.
    skipped = [s for s in steps(rec) if s["outcome"] == "skip"]
    assert any(s["commit"] == ids[1] and s["build"] == "failed" for s in skipped), steps(rec)
    assert code == 6 and rec["bisect"]["result"] == "only-skipped"
    assert {c["commit"] for c in rec["bisect"]["candidates"]} == {ids[1], ids[2]}
    assert rec["verdict"] == "INCONCLUSIVE"


def test_build_mode_finds_the_first_commit_that_does_not_build(tmp_path, mini, boots):
    ids = history(mini, plain(3) + [("mini: broken build", {"x.c": BROKEN_C})] + plain(5)[3:])
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    "--build")
    assert code == 0, rec
    assert rec["bisect"]["first_bad"]["commit"] == ids[3]
    assert boots == [], "--build boots nothing"


def test_fixed_mode_finds_the_first_passing_commit(tmp_path, mini, boots, capsys):
    ids = history(mini, [("mini: broken guest", {"g.c": guest("FAIL")})] + plain(2)
                  + [("mini: fix it", {"g.c": "int g(void) { return 0; }\n"})] + plain(4)[2:])
    # --good passes (the newer end), --bad fails (the older)
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[-1], "--bad", ids[0],
                    "--fixed", *sel_args())
    assert code == 0, rec["error"]
    assert rec["bisect"]["first_bad"]["commit"] == ids[3]
    assert rec["bisect"]["terms"] == ["old", "new"]
    # the wrong way round is bad input, in one line, and no run directory
    capsys.readouterr()
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    "--fixed", *sel_args(), rd="run2")
    assert code == 2 and rec is None
    assert "--bad is not an ancestor of --good" in capsys.readouterr().err


def test_repeat_a_flaky_commit_is_bad(tmp_path, mini, boots, capfd):
    ids = history(mini, plain(2) + [("mini: flaky", {"f.c": guest("FLAKY")})] + plain(3)[2:])
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    "--repeat", "3", *sel_args(IRQ_TEST))
    assert code == 0, rec["error"]
    assert rec["bisect"]["first_bad"]["commit"] == ids[2]
    bad = [s for s in rec["bisect"]["steps"] if s["commit"] == ids[2]][0]
    assert "failed 1 of 3 runs" in bad["reason"], bad
    assert bad["tests"] == {IRQ_TEST: "FLAKY"}


def test_endpoint_that_disagrees_is_bad_input_naming_it(tmp_path, mini, boots):
    ids = history(mini, [("mini: broken guest", {"g.c": guest("FAIL")})] + plain(2))
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    *sel_args())
    assert code == 2
    assert rec["error"].startswith(f"the good end disagrees: --good {ids[0][:12]} should pass "
                                   "the tests, but it is bad")
    assert rec["bisect"]["result"] == "endpoint-disagrees"
    ids2 = history(mini, [("mini: fix the guest", {"g.c": None})] + plain(4)[2:])
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids2[0], "--bad", ids2[-1],
                    *sel_args(), rd="run2")
    assert code == 2 and rec["error"].startswith("the bad end disagrees"), rec["error"]


def test_panic_before_the_tests_is_retried_once_then_skipped(tmp_path, mini, boots):
    ids = history(mini, plain(2) + [("mini: panics at boot", {"p.c": guest("PANIC")}),
                                    ("mini: breaks and no longer panics",
                                     {"p.c": guest("FAIL")})])
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    *sel_args())
    panic = [s for s in steps(rec) if s["commit"] == ids[2]]
    assert panic and panic[0]["outcome"] == "skip" and panic[0]["boots"] == 2, panic
    assert "skipped after a retry" in panic[0]["reason"]
    assert code == 6 and {c["commit"] for c in rec["bisect"]["candidates"]} == {ids[2], ids[3]}


def test_skip_where_the_good_end_ran_the_test_is_bad(tmp_path, mini, boots):
    ids = history(mini, plain(2) + [("mini: tests skip", {"s.c": guest("SKIP")})])
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    *sel_args())
    assert code == 0, rec["error"]
    assert rec["bisect"]["first_bad"]["commit"] == ids[2]
    bad_end = steps(rec, "bad end")[0]
    assert "skipped where the good end ran it" in bad_end["reason"]


def test_splat_mode(tmp_path, mini, boots):
    ids = history(mini, plain(3) + [("mini: warns", {"w.c": guest("SPLAT")})] + plain(4)[3:])
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    "--splat", *sel_args(IRQ_TEST))
    assert code == 0, rec["error"]
    assert rec["bisect"]["first_bad"]["commit"] == ids[3]
    assert "new warning" in steps(rec, "bad end")[0]["reason"]


def test_host_failure_aborts_with_5(tmp_path, mini, boots):
    ids = history(mini, plain(2) + [("mini: the host breaks here", {"i.c": guest("INFRA")})])
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    *sel_args())
    assert code == 5 and rec["verdict"] == "INFRA-ERROR", rec


@pytest.mark.parametrize("args,message", [
    (["--good", "nonesuch", "--bad", "HEAD", "--build"], "--good 'nonesuch' is not a commit"),
    (["--good", "HEAD", "--bad", "HEAD~2", "--build"], "--good is not an ancestor of --bad"),
    (["--good", "HEAD~2", "--bad", "HEAD", "--guest-test", "guest_tests/nope.py"],
     "no guest test matches"),
    (["--good", "HEAD~2", "--bad", "HEAD"], "give the guest test"),
    (["--good", "HEAD~2", "--bad", "HEAD", "--build", "--config", "nonesuch"], "nonesuch"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path, mini, env, args, message):
    history(mini, plain(3))
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "bisect", "--tree", str(mini),
                        "--run-dir", str(tmp_path / "run"), *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    errors = [l for l in r.stderr.splitlines() if l.startswith("orch: error:")]
    assert len(errors) == 1 and message in errors[0], r.stderr
    assert "Traceback" not in r.stderr


def test_interrupted_bisect_resumes_from_its_log(tmp_path, mini, boots, monkeypatch):
    ids = history(mini, plain(6) + [("mini: break", {"bad.c": guest("FAIL")})] + plain(9)[6:])
    from orchestrator.bisect import stepping
    real = stepping.Stepper.step
    calls = []

    def interrupt_on_the_second_step(self, commit, *a, **kw):
        calls.append(commit)
        if len(calls) == 4:   # good end, bad end, step 1, then step 2
            raise KeyboardInterrupt
        return real(self, commit, *a, **kw)
    monkeypatch.setattr(stepping.Stepper, "step", interrupt_on_the_second_step)
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    *sel_args())
    assert code == 130 and rec["state"] == "interrupted"
    assert len(steps(rec)) == 1
    monkeypatch.setattr(stepping.Stepper, "step", real)
    booted = len(boots)
    code = cli.main(["bisect", "--resume", str(tmp_path / "run")])
    rec = run_json(tmp_path / "run")
    assert code == 0, rec["error"]
    assert rec["bisect"]["first_bad"]["commit"] == ids[6]
    # step 1 was not taken again; the ends came from kept results
    assert len(steps(rec)) <= rec["bisect"]["max_steps"]
    assert len({s["commit"] for s in steps(rec)}) == len(steps(rec))
    assert len(boots) - booted == len(steps(rec)) - 1 + 2   # the new steps and 2 confirms


def test_series_bisect_names_the_patch(tmp_path, mini, boots):
    from helpers import series as make_series
    mbox = make_series(mini, tmp_path, "s", [
        ("mini: one", {"a.c": "int a(void) { return 1; }\n"}),
        ("mini: two breaks the guest", {"b.c": guest("FAIL")}),
        ("mini: three", {"c.c": "int c(void) { return 3; }\n"})])
    code, rec = run(tmp_path, "--tree", str(mini), "--mbox", str(mbox), "--offline-mode",
                    *sel_args())
    assert code == 0, rec["error"]
    assert rec["bisect"]["first_bad"]["subject"] == "mini: two breaks the guest"
    assert len(rec["series"]["patches"]) == 3


# -- orch check under git bisect run ----------------------------------------

CHECK = """\
import sys
sys.path[:0] = [{tests!r}, {repo!r}]
import standin_guest
standin_guest.install_globally()
from orchestrator import cli
sys.exit(cli.main(["check", *sys.argv[1:]]))
"""


@pytest.mark.parametrize("checkout", [[], ["--no-checkout"]])
def test_git_bisect_run_orch_check_gives_the_same_answer(tmp_path, mini, env, checkout):
    """In a plain clone, with git moving HEAD, or only BISECT_HEAD."""
    ids = history(mini, plain(4) + [("mini: break", {"bad.c": guest("FAIL")})] + plain(6)[4:])
    script = tmp_path / "check.py"
    script.write_text(CHECK.format(tests=str(REPO / "tests"), repo=str(REPO)))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(mini), str(clone)], check=True)
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout
    git(clone, "bisect", "start", *checkout, ids[-1], ids[0])
    r = subprocess.run(["git", "-C", str(clone), "bisect", "run", sys.executable, str(script),
                        "--config", "base", *sel_args()], env=env, capture_output=True,
                       text=True, timeout=600)
    assert f"{ids[4]} is the first bad commit" in r.stdout, r.stdout + r.stderr
    # Each step's result is on stdout (git bisect run passes it on).
    assert "verdict: good (git bisect run: exit 0)" in r.stdout
    assert "verdict: bad (git bisect run: exit 1): " in r.stdout
    if checkout:   # the checkout never moved
        assert subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout == head


@pytest.mark.parametrize("what,rc", [("PASS", 0), ("FAIL", 1), ("PANIC", 125), ("BUILD", 125),
                                     ("INFRA", 129)])
def test_check_exit_statuses(tmp_path, mini, env, what, rc):
    files = {"PASS": {}, "BUILD": {"x.c": BROKEN_C}}.get(what, {"g.c": guest(what)})
    history(mini, [("mini: the commit", files or {"p.c": "int p(void) { return 0; }\n"})])
    script = tmp_path / "check.py"
    script.write_text(CHECK.format(tests=str(REPO / "tests"), repo=str(REPO)))
    r = subprocess.run([sys.executable, str(script), "--config", "base", *sel_args()],
                       cwd=mini, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == rc, r.stderr
    # --fixed swaps good and bad
    if what in ("PASS", "FAIL"):
        r = subprocess.run([sys.executable, str(script), "--config", "base", "--fixed",
                            *sel_args()], cwd=mini, env=env, capture_output=True, text=True)
        assert r.returncode == 1 - rc, r.stderr


@pytest.mark.parametrize("args", [["--bogus"], ["--config", "nonesuch", "--build"],
                                  ["--guest-test", "guest_tests/nope.py"]])
def test_check_bad_input_stops_the_bisect(tmp_path, mini, env, args):
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "check", *args], cwd=mini,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 128, r.stderr
    assert "Traceback" not in r.stderr


def test_options_mode_default():
    assert bisect_cmd.Options().mode == Mode.TEST
    assert os.path.basename(bisect_cmd.__file__) == "search.py"


# -- what a step records, and its reproduce line run again ------------------------------

def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_each_steps_reproduce_line_is_that_step_again(tmp_path, mini, boots, env):
    """Every step records the kernel it booted (key, image SHA-256, banner)
    and the `orch test --range PARENT..COMMIT` that redoes it. Run as orch,
    that line builds nothing (the same kernel, by key and image), boots
    nothing (the step's boot settings: its kept results answer) and says
    the same: each test's status, good a PASS, bad a FAIL."""
    ids = history(mini, plain(2) + [("mini: break the guest", {"bad.c": guest("FAIL")}),
                                    ("mini: more", {"m.c": "int m(void) { return 0; }\n"})])
    code, rec = run(tmp_path, "--tree", str(mini), "--good", ids[0], "--bad", ids[-1],
                    "--test-timeout", "45", "--no-sandbox", *sel_args())
    assert code == 0, rec["error"]
    b = rec["bisect"]
    first = {}
    for s in b["steps"]:
        assert s["key"] and s["banner"] and s["sha256"] == _sha256(
            f"{env['ORCH_CACHE']}/kernels/{s['key']}/bzImage"), s
        assert s["boot_banner"] == s["banner"], s
        first.setdefault(s["commit"], s)
    assert b["first_bad"]["commit"] == ids[2] and b["reproduce"] == first[ids[2]]["reproduce"]
    parent = {ids[0]: git_rev(mini, f"{ids[0]}^"), ids[2]: ids[1], ids[-1]: ids[2]}
    for commit, exit_code in ((ids[0], 0), (ids[2], 1), (ids[-1], None)):
        step = first[commit]
        # The line states the bisect's options for this one commit, no less.
        asked = Options(tree=mini, range=f"{parent[commit]}..{commit}", configs=["base"],
                        guest_tests=TESTS, test_timeout=45.0, sandbox=False)
        assert differences(asked, step["reproduce"], NOT_REPRODUCED) == {}
        rd = tmp_path / f"again-{commit[:12]}"
        r = orch_standin(tmp_path, env, *shlex.split(step["reproduce"])[1:], "--run-dir",
                         str(rd), harness=False)
        again = run_json(rd)
        if exit_code is not None:     # the bad end's parent fails too: not a regression
            assert r.returncode == exit_code, r.stderr
        patched = again["configs"][0]["patched"]
        assert patched["build"]["key"] == step["key"] and patched["build"]["cached"], patched
        assert _sha256(patched["build"]["image"]) == step["sha256"]
        assert patched["boot"]["cached"] and patched["boot"]["banner"] == step["boot_banner"]
        assert {t["name"]: t["status"] for t in patched["tests"]} == step["tests"]
        assert patched["outcome"]["status"] == {"good": "PASS", "bad": "FAIL"}[step["outcome"]]


def git_rev(repo: Path, rev: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", rev], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_a_checks_record_names_the_kernel_it_booted(tmp_path, mini, env):
    history(mini, [("mini: the commit", {"p.c": "int p(void) { return 0; }\n"})])
    script = tmp_path / "check.py"
    script.write_text(CHECK.format(tests=str(REPO / "tests"), repo=str(REPO)))
    r = subprocess.run([sys.executable, str(script), "--config", "base", *sel_args()],
                       cwd=mini, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (f,) = Path(env["ORCH_CACHE"], "checks").glob("*/run.json")
    (step,) = json.loads(f.read_text())["bisect"]["steps"]
    assert step["role"] == "check" and step["commit"] == git_rev(mini, "HEAD")
    image = Path(env["ORCH_CACHE"], "kernels", step["key"], "bzImage")
    assert step["sha256"] == _sha256(str(image))
    assert step["banner"] == (image.parent / "banner").read_text().strip()
    assert step["boot_banner"] == step["banner"]
