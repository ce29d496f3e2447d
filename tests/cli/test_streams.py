"""What each command prints where: its result on stdout (a run's summary
and directory, a night's summary, a plan's path, a job's one line), its
progress and errors on stderr; and bad input, whose whole answer is one
line on stderr, with no run directory left behind.

Real `orch` subprocesses on the stand-in tree; the nightly commands against
the loopback lore with the stand-in guest (test_nightly's world). Before:
`orch test` and `orch bisect` printed their summary on stderr and nothing on
stdout, `orch job` printed nothing, and a bad input printed its progress,
the summary and the run directory before its error, and left the run
directory (27 `orch-runs/` folders after one review).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import (
    REPO,
    build_only,
    git,
    one_error_line,
    orch,
    orch_standin,
    run_json,
    series,
)
from lore_mails import day
from lore_server import LORE_DATA_DIR
from test_nightly import world  # noqa: F401 (the fixture)

NIGHT = "2026-11-27"
BROKEN_C = "int broken(void)\n{\n\treturn undeclared_thing;\n}\n"


def result_on_stdout_only(r: subprocess.CompletedProcess, result: str) -> None:
    """`result` is what stdout holds, and none of its lines is on stderr."""
    assert r.stdout == result, r.stdout
    on_stderr = set(r.stderr.splitlines())
    assert [line for line in result.splitlines() if line.strip() and line in on_stderr] == []


def test_orch_test_prints_its_summary_on_stdout(env, mini, tmp_path):
    mbox = series(mini, tmp_path, "s", [("mini: a", {"a.c": "int a(void) { return 1; }\n"})])
    r, rd = build_only(env, tmp_path, mini, mbox, "--config", "base")
    assert r.returncode == 0, r.stderr
    report = orch(env, tmp_path, "report", str(rd))
    result_on_stdout_only(r, report.stdout + f"run directory: {rd}\n")
    assert "verdict: BUILT (exit 0)" in r.stdout
    assert "s] patched build, config base" in r.stderr   # the progress


def test_orch_bisect_prints_its_summary_on_stdout(env, mini, tmp_path):
    for i, text in enumerate(["int u(void) { return 1; }\n", BROKEN_C]):
        (mini / f"u{i}.c").write_text(text)
        git(mini, "add", "-A")
        git(mini, "commit", "-q", "-m", f"mini: change {i}")
    rd = tmp_path / "bisect"
    r = orch(env, tmp_path, "bisect", "--tree", str(mini), "--good", "HEAD~2", "--bad", "HEAD",
             "--config", "base", "--build", "--run-dir", str(rd))
    assert r.returncode == 0, r.stderr
    report = orch(env, tmp_path, "report", str(rd))
    result_on_stdout_only(r, report.stdout + f"run directory: {rd}\n")
    assert "first bad commit: " in r.stdout and "verdict: FOUND (exit 0)" in r.stdout


def test_the_night_commands_print_their_result_on_stdout(world, tmp_path):  # noqa: F811
    world["srv"].archive.now = day(NIGHT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    toml = str(world["toml"])

    out = tmp_path / "out"
    r = orch_standin(tmp_path, env, "nightly", toml, "--out", str(out), "--night", NIGHT,
                     harness=False)
    assert r.returncode in (0, 1), r.stderr
    ndir = out / "nights" / NIGHT
    result_on_stdout_only(r, (ndir / "summary.txt").read_text()
                          + f"night directory: {ndir}\n")
    assert "] cell mini: feature" in r.stderr                  # the progress

    pdir = tmp_path / "plan"
    r = orch(env, tmp_path, "plan", toml, "--out", str(pdir), "--night", NIGHT,
             "--format", "github")
    assert r.returncode == 0, r.stderr
    (path,) = r.stdout.splitlines()
    assert Path(path).is_file() and Path(path).parent == pdir
    assert f"night {NIGHT}: " in r.stderr and path not in r.stderr

    shard = tmp_path / "shards" / "b-mini-base"
    r = orch_standin(tmp_path, env, "job", str(pdir), "b-mini-base", "--out", str(shard),
                     harness=False)
    assert r.returncode == 0, r.stderr
    result_on_stdout_only(r, "job b-mini-base: done (baseline job, 2 exported on mini / base);"
                          f" shard: {shard}\n")

    merged = tmp_path / "merged"
    r = orch(env, tmp_path, "merge", str(shard), "--out", str(merged), "--plan", str(pdir))
    assert r.returncode == 5, r.stderr    # its series job never reported: no cell has a result
    result_on_stdout_only(r, (merged / "nights" / NIGHT / "summary.txt").read_text())


# -- bad input: one line, no run directory -------------------------------------------------

def test_bad_input_leaves_no_orch_runs_behind(env, tmp_path):
    """No --run-dir: the run's orch-runs/<time>-<what> and orch-runs/
    itself, both made by the run, are gone again."""
    work = tmp_path / "work"
    work.mkdir()
    for args in (["--tree", str(tmp_path / "nope")], ["--config", "nosuch"]):
        r = orch(env, work, "test", "--offline-mode", "--mbox", str(LORE_DATA_DIR / "all.mbox"),
                 *args)
        assert r.returncode == 2 and r.stdout == "", r.stdout
        assert len(r.stderr.splitlines()) == 1, r.stderr
        one_error_line(r.stderr)
        assert list(work.iterdir()) == []


def test_bad_input_keeps_a_run_dir_that_was_there(env, tmp_path):
    rd = tmp_path / "mine"
    rd.mkdir()
    (rd / "notes.txt").write_text("mine\n")
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(LORE_DATA_DIR / "all.mbox"),
             "--tree", str(tmp_path / "nope"), "--run-dir", str(rd))
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.splitlines()) == 1, r.stderr
    assert (rd / "notes.txt").read_text() == "mine\n"
    assert run_json(rd)["verdict"] == "BAD-INPUT"
