"""`orch test --range A..B`: a branch of the user's tree tested as a series,
one patch per commit, on the stand-in tree (tests/data/minikernel). The
range goes through the same mbox intake as --mbox (test_build.py covers what
comes after it); here: what the range becomes, its bad forms, and that the
user's checkout is only read."""

from __future__ import annotations

import subprocess

import pytest
from helpers import FIXED, git, one_error_line, orch, run_json

BROKEN = "int mini_new(void)\n{\n\treturn undeclared_thing;\n}\n"
TWO = [("mini: add a", {"a.c": FIXED.replace("new", "a")}),
       ("mini: add b", {"b.c": FIXED.replace("new", "b")})]


def commit(repo, steps, *, allow_empty=False):
    for subject, files in steps:
        for f, text in files.items():
            (repo / f).write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", subject, *(["--allow-empty"] if allow_empty else []))


def branch(repo, name, steps, start="main"):
    """Branch `name` from `start` with a commit per step; the checkout stays on it."""
    git(repo, "checkout", "-q", "-b", name, start)
    commit(repo, steps)


def out(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def run_range(env, tmp_path, mini, rng, *extra, rd_name="run"):
    rd = tmp_path / rd_name
    r = orch(env, tmp_path, "test", "--build-only", "--config", "base", "--tree", str(mini),
             "--range", rng, "--run-dir", str(rd), *extra)
    return r, rd


def test_a_branch_is_tested_as_a_series_of_its_commits(env, tmp_path, mini):
    base = out(mini, "rev-parse", "main")
    branch(mini, "topic", TWO)
    r, rd = run_range(env, tmp_path, mini, "main..topic")
    assert r.returncode == 0, r.stderr
    rec = run_json(rd)
    assert rec["verdict"] == "BUILT"
    c = rec["configs"][0]
    assert c["baseline"]["build"]["status"] == "ok"
    assert c["patched"]["build"]["status"] == "ok"
    assert c["baseline"]["build"]["key"] != c["patched"]["build"]["key"]
    s = rec["series"]
    assert (s["source"], s["range"]) == ("range", "main..topic")
    assert s["commits"] == out(mini, "rev-list", "--reverse", "main..topic").split()
    assert [(p["subject"], p["status"]) for p in s["patches"]] == [
        ("mini: add a", "applied"), ("mini: add b", "applied")]
    assert rec["tree"]["base"] == base
    assert "--range main..topic" in rec["tree"]["base_reason"]
    assert "series: mini: add a (v1, 2 patches) --range main..topic" in r.stdout
    # What was tested is the branch: the patched source is topic's tree.
    applied = (rd / "logs" / "git-am.log").read_text()
    assert "[1/2] mini: add a" in applied and "[2/2] mini: add b" in applied


def test_each_patch_builds_every_commit_of_the_range(env, tmp_path, mini):
    branch(mini, "topic", [("mini: add mini_new (broken)", {"new.c": BROKEN}),
                           ("mini: fix mini_new", {"new.c": FIXED})])
    # The branch builds at its tip ...
    r, rd = run_range(env, tmp_path, mini, "main..topic")
    assert r.returncode == 0, r.stderr
    # ... but not at its first commit.
    r, rd = run_range(env, tmp_path, mini, "main..topic", "--each-patch", rd_name="run2")
    assert r.returncode == 4, r.stderr
    assert 'patch 1/2 "mini: add mini_new (broken)" breaks the build' in one_error_line(r.stderr)
    assert [s["status"] for s in run_json(rd)["each_patch"]] == ["failed"]


def _other_repo_commit(tmp_path, mini) -> str:
    """A commit that exists only in a clone of the tree."""
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(mini), str(other)], check=True)
    commit(other, [("elsewhere", {"x.c": "int x;\n"})])
    return out(other, "rev-parse", "HEAD")


def _with_merge(mini):
    branch(mini, "side", [("mini: side", {"s.c": "int s;\n"})])
    branch(mini, "merged", TWO)
    git(mini, "merge", "-q", "--no-ff", "-m", "Merge side", "side")


def _diverged(mini):
    branch(mini, "topic", TWO)
    git(mini, "checkout", "-q", "main")
    commit(mini, [("mini: main moves on", {"m.c": "int m;\n"})])


def _empty_commit(mini):
    branch(mini, "topic", TWO[:1])
    commit(mini, [("mini: nothing", {})], allow_empty=True)


BAD = [
    (["--range", "topic"], None, "--range wants A..B"),
    (["--range", "main...topic"], None, "--range wants A..B"),
    (["--range", "main.."], None, "--range wants A..B"),
    (["--range", "nope..topic"], None, "no commit 'nope' in"),
    (["--range", "topic..main"], None, "has no commits"),
    (["--range", "main..topic", "some@msg.id"], None, "without a Message-ID or --mbox"),
    (["--range", "main..topic", "--mbox", "x.mbox"], None, "without a Message-ID or --mbox"),
    (["--range", "main..topic", "--base", "main"], None, "without --base"),
    (["--range", "main..OTHER"], None, "no commit 'OTHER-SHA' in"),
    (["--range", "main..merged"], _with_merge, "has a merge"),
    (["--range", "main..topic"], _diverged, "main is not an ancestor of topic"),
    (["--range", "main..topic"], _empty_commit, "changes nothing"),
]


@pytest.mark.parametrize("args,setup,expected", BAD,
                         ids=["single-ref", "three-dots", "open-end", "unknown-ref", "empty",
                              "and-msgid", "and-mbox", "and-base", "not-in-tree", "merge",
                              "diverged", "empty-commit"])
def test_bad_range_is_one_line_exit_2(env, tmp_path, mini, args, setup, expected):
    if setup:
        setup(mini)
    else:
        branch(mini, "topic", TWO)
    if "main..OTHER" in args:
        sha = _other_repo_commit(tmp_path, mini)
        args = ["--range", f"main..{sha}"]
        expected = expected.replace("OTHER-SHA", sha)
    rd = tmp_path / "run"
    r = orch(env, tmp_path, "test", "--build-only", "--tree", str(mini), "--run-dir", str(rd),
             *args)
    assert r.returncode == 2, r.stderr
    assert expected in one_error_line(r.stderr)
    if (rd / "run.json").exists():   # found out in the tree, after the run began
        rec = run_json(rd)
        assert rec["verdict"] == "BAD-INPUT" and rec["configs"] == []


def _checkout_state(repo) -> dict:
    # The index's bytes before `git status`, which may refresh it.
    index = (repo / ".git" / "index").read_bytes()
    bisect = subprocess.run(["git", "-C", str(repo), "bisect", "log"], capture_output=True,
                            text=True).stdout
    return {"index": index, "HEAD": (repo / ".git" / "HEAD").read_text(),
            "head": out(repo, "rev-parse", "HEAD"), "bisect": bisect,
            "status": out(repo, "status", "--porcelain=v1", "--untracked-files=all"),
            "refs": out(repo, "for-each-ref", "--format=%(refname) %(objectname)",
                        "refs/heads", "refs/bisect")}


def test_the_users_checkout_is_only_read(env, tmp_path, mini):
    branch(mini, "topic", TWO)
    # Work in progress: a change to a tracked file and a new file.
    (mini / "old.c").write_text((mini / "old.c").read_text() + "/* wip */\n")
    (mini / "notes.txt").write_text("wip\n")
    before = _checkout_state(mini)
    assert before["HEAD"] == "ref: refs/heads/topic\n"
    r, _ = run_range(env, tmp_path, mini, "main..topic")
    assert r.returncode == 0, r.stderr
    assert _checkout_state(mini) == before
    # The same in the middle of a bisect of the branch.
    git(mini, "bisect", "start", "topic", "main")
    before = _checkout_state(mini)
    assert before["bisect"] and before["HEAD"] != "ref: refs/heads/topic\n"
    r, _ = run_range(env, tmp_path, mini, "main..topic", rd_name="run2")
    assert r.returncode == 0, r.stderr
    assert _checkout_state(mini) == before
    git(mini, "bisect", "reset")
    assert out(mini, "symbolic-ref", "HEAD") == "refs/heads/topic"


def test_help_lists_range_with_the_intake_flags(env, tmp_path):
    r = orch(env, tmp_path, "test", "--help")
    intake = r.stdout.split("series intake:")[1].split("\n\n")[0]
    assert "--range A..B" in intake
