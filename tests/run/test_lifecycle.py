"""The run lifecycle (run/lifecycle.py): every command that writes a record
finishes it on every kind of exit, and the exception still reaches cli.py,
which prints its one line.

A bug is injected into each engine by replacing one function it calls with
one that raises; everything else is real (git, the stand-in tree, the
kernel config, the record files). Before the lifecycle, a bug in bisect or
check left run.json saying "running" and kept no traceback:
test_the_old_lifecycle_is_caught shows what these checks say of that.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import time

import pytest
from helpers import git

from orchestrator import cli
from orchestrator.bisect import revs, stepping
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.exits import GitBisect
from orchestrator.core.progress import Progress
from orchestrator.fanout import job_run, jobfiles, nightly_run
from orchestrator.nightly import config_file, history, tonight
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.night import Plan, SeriesRev, TreeState
from orchestrator.run import lifecycle, record, series_run
from orchestrator.run.lifecycle import Lifecycle, Run
from orchestrator.run.record import RunState, RunVerdict

NIGHT = "2026-11-27"


class InjectedBug(Exception):
    """The bug a test puts into an engine."""


def _bug(*args, **kwargs):
    raise InjectedBug("injected into the engine")


def crash_problems(rd, code: int = Exit.INFRA) -> list[str]:
    """What is wrong with how run directory `rd` records a bug: nothing
    when run.json is finished as an internal error (exit `code`: 5, or
    git bisect's 129 for a check; INFRA-ERROR, the bug named) and
    traceback.txt beside it holds the traceback."""
    rec = json.loads((rd / "run.json").read_text())
    problems = []
    if rec["state"] != "done" or not rec.get("finished"):
        problems.append(f"state {rec['state']}, finished {rec.get('finished')}")
    if (rec["verdict"], rec["exit_code"]) != ("INFRA-ERROR", int(code)):
        problems.append(f"verdict {rec['verdict']}, exit {rec['exit_code']}")
    if not (rec["error"] or "").startswith("internal error: InjectedBug: injected"):
        problems.append(f"error {rec['error']!r}")
    tb = rd / lifecycle.TRACEBACK
    if not tb.exists() or "InjectedBug: injected into the engine" not in tb.read_text():
        problems.append("no traceback beside run.json")
    return problems


@pytest.fixture
def tree(tmp_path, mini, monkeypatch):
    """The stand-in tree with a second commit: (tree, first, second)."""
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))     # cli.py's own crash file
    (mini / "x.c").write_text("int x(void) { return 1; }\n")
    git(mini, "add", "x.c")
    git(mini, "commit", "-q", "-m", "mini: x")
    ids = subprocess.run(["git", "-C", str(mini), "rev-list", "--reverse", "HEAD"],
                         capture_output=True, text=True, check=True).stdout.split()
    return mini, ids[0], ids[1]


def _bisect(tmp_path, tree) -> int:
    mini, first, second = tree
    return cli.main(["bisect", "--run-dir", str(tmp_path / "run"), "--tree", str(mini),
                     "--good", first, "--bad", second, "--config", "base", "--build"])


def test_a_bug_in_the_bisect_engine_finishes_its_record(tmp_path, tree, monkeypatch, capsys):
    monkeypatch.setattr(revs, "count", _bug)      # after both ends are resolved
    assert _bisect(tmp_path, tree) == int(Exit.INFRA)
    assert crash_problems(tmp_path / "run") == []
    err = capsys.readouterr().err
    assert "orch: error: internal error: InjectedBug: injected into the engine" in err


def test_a_bug_in_the_check_engine_finishes_its_record(tmp_path, tree, monkeypatch, capsys):
    mini, _, second = tree
    monkeypatch.setattr(stepping.Stepper, "step", _bug)
    rd = tmp_path / "check"
    code = cli.main(["check", "--tree", str(mini), "--build", "--config", "base",
                     "--run-dir", str(rd)])
    assert code == GitBisect.INFRA               # stops the bisect: never good, bad or skip
    assert crash_problems(rd, GitBisect.INFRA) == []
    assert json.loads((rd / "run.json").read_text())["tree"]["base"] == second
    assert "orch: error: internal error: InjectedBug" in capsys.readouterr().err


def test_a_bug_in_the_test_engine_keeps_its_traceback_beside_run_json(tmp_path, tree,
                                                                      monkeypatch):
    mini, _, _ = tree
    monkeypatch.setattr(series_run, "_intake", _bug)
    rd = tmp_path / "test"
    code = cli.main(["test", "--offline-mode", "--mbox", str(tmp_path / "never-read.mbox"),
                     "--tree", str(mini), "--config", "base", "--build-only",
                     "--run-dir", str(rd)])
    assert code == int(Exit.INFRA)
    assert crash_problems(rd) == []


def test_the_old_lifecycle_is_caught(tmp_path, tree, monkeypatch):
    """The broken variant: a lifecycle that lets a bug through without
    finishing the record, as bisect and check did before run/lifecycle.py."""
    monkeypatch.setattr(revs, "count", _bug)
    monkeypatch.setattr(Lifecycle, "__exit__", lambda self, *exc: False)
    assert _bisect(tmp_path, tree) == int(Exit.INFRA)
    problems = crash_problems(tmp_path / "run")
    assert problems[0].startswith("state running") and "no traceback beside run.json" in problems


def _run(tmp_path) -> Run:
    return Run(tmp_path / "run", ["orch", "x"], Progress(stream=io.StringIO()))


def _read(tmp_path) -> record.RunRecord:
    return record.read(tmp_path / "run" / "run.json")


def test_an_orch_error_ends_the_record_with_its_exit_status(tmp_path):
    with pytest.raises(OrchError), Lifecycle(_run(tmp_path)):
        assert _read(tmp_path).state == "running"
        raise OrchError("patch 1/1 does not apply", Exit.NO_APPLY)
    rec = _read(tmp_path)
    assert (rec.state, rec.verdict, rec.exit_code) == ("done", "NO-APPLY", 3)
    assert rec.error == "patch 1/1 does not apply" and rec.finished
    assert not (tmp_path / "run" / lifecycle.TRACEBACK).exists()


def test_an_interrupt_ends_the_record_interrupted_saying_how_to_go_on(tmp_path):
    with pytest.raises(KeyboardInterrupt), Lifecycle(_run(tmp_path), "interrupted; resume"):
        raise KeyboardInterrupt
    rec = _read(tmp_path)
    assert (rec.state, rec.verdict, rec.exit_code, rec.error) == (
        "interrupted", "INTERRUPTED", 130, "interrupted; resume")


def test_a_record_that_cannot_be_finished_still_lets_the_bug_through(tmp_path):
    """The bug is what cli.py reports; why the record is not finished is
    kept beside it."""
    with pytest.raises(InjectedBug), Lifecycle(_run(tmp_path)):
        (tmp_path / "run" / "run.json").unlink()
        (tmp_path / "run" / "run.json").mkdir()  # no record can replace a directory
        _bug()
    text = (tmp_path / "run" / lifecycle.TRACEBACK).read_text()
    assert "InjectedBug" in text and "the record was not finished" in text
    (tmp_path / "run" / "run.json").rmdir()      # not a run.json for schema_check to read


def test_a_resumed_record_runs_again(tmp_path):
    done = record.RunRecord("0", ["orch", "old"], str(tmp_path), "t0")
    done.state, done.verdict, done.exit_code, done.finished = (
        RunState.INTERRUPTED, RunVerdict.INTERRUPTED, 130, "t1")
    run = Run(tmp_path / "run", ["orch", "new"], Progress(stream=io.StringIO()), rec=done)
    with Lifecycle(run):
        rec = _read(tmp_path)
        assert (rec.state, rec.verdict, rec.exit_code, rec.finished) == (
            "running", None, None, None)
        assert rec.command == ["orch", "new"] and rec.started == "t0"


# -- the CI job's job.json and the nightly's night.json ------------------------------

def _plan(tmp_path, mini, commit: str) -> Plan:
    (tmp_path / "series").mkdir(parents=True, exist_ok=True)
    s = SeriesRev("msgid:a@example.org", "mini: a", "a@example.org", 1, None, "tracked",
                  "series/a.mbx")
    return Plan(NIGHT, "https://lore.example.org", ["base"], [s],
                [TreeState("mini", "git", str(mini), commit)])


def test_a_bug_in_a_job_fails_its_shard_and_keeps_the_traceback(tmp_path, tree, monkeypatch):
    mini, _, second = tree
    pdir = tmp_path / "plan"
    plan = _plan(pdir, mini, second)
    nightrec.write_plan(pdir, plan)
    jobfiles.write_jobs(pdir, jobfiles.cut(plan))
    monkeypatch.setattr(job_run, "_tree_here", _bug)
    with pytest.raises(InjectedBug):
        job_run.run_job(pdir, "b-mini-base", tmp_path / "shard",
                        progress=Progress(stream=io.StringIO()))
    rec = jobfiles.read_job(tmp_path / "shard")
    assert (rec.state, rec.error) == ("failed", "internal error: injected into the engine")
    assert rec.finished
    assert "InjectedBug" in (tmp_path / "shard" / lifecycle.TRACEBACK).read_text()


@pytest.mark.parametrize("exc,state,code", [(InjectedBug, "done", 5),
                                            (KeyboardInterrupt, "interrupted", None)])
def test_a_stopped_night_is_recorded(tmp_path, tree, monkeypatch, exc, state, code):
    """night.json and the history's row say how the night ended; a rerun
    of the same night goes on from its stored plan."""
    mini, _, second = tree
    out = tmp_path / "out"
    ndir = out / "nights" / NIGHT
    nightrec.write_plan(ndir, _plan(ndir, mini, second))
    toml = tmp_path / "nightly.toml"
    toml.write_text(f'configs = ["base"]\n[[series]]\nmsgid = "<a@example.org>"\n'
                    f'[[tree]]\npath = "{mini}"\nref = "main"\nlabel = "mini"\n')

    def stop(*args, **kwargs):
        raise exc("injected into the engine")
    monkeypatch.setattr(tonight, "run_cell", stop)
    with pytest.raises(exc):
        nightly_run.run_night(config_file.load(toml), out, NIGHT,
                              progress=Progress(stream=io.StringIO()))
    n = nightrec.read(ndir)
    assert (n.state, n.exit_code, bool(n.finished)) == (state, code, code is not None)
    db = sqlite3.connect(out / history.FILE)
    assert db.execute("SELECT state, exit_code FROM nights").fetchall() == [(state, code)]
    db.close()
    assert (ndir / lifecycle.TRACEBACK).exists() == (exc is InjectedBug)


# -- what a command shows at the end (print_summary), and the held progress -------------

def _ended(tmp_path, error: Exception, said: str = "b4: fetching the series") -> tuple[Run, str]:
    """A run made under tmp_path/orch-runs/ that says `said`, then stops
    with `error`; what its progress printed."""
    stream = io.StringIO()
    run = Run(tmp_path / "orch-runs" / "r1", ["orch", "test"], Progress(stream=stream))
    with pytest.raises(type(error)), Lifecycle(run):
        run.say(said)
        raise error
    run.progress.done()
    return run, stream.getvalue()


def test_bad_input_says_nothing_and_leaves_no_run_directory(tmp_path, capsys):
    run, printed = _ended(tmp_path, BadInput("no such tree: /nope"))
    assert printed == ""                          # its progress was held, and dropped
    lifecycle.print_summary(run.dir)
    assert capsys.readouterr() == ("", "")        # cli.py's one line is all
    assert list(tmp_path.iterdir()) == []         # orch-runs/ too: the run made it


def test_another_error_shows_its_progress_and_summary(tmp_path, capsys):
    run, printed = _ended(tmp_path, OrchError("lore unreachable", Exit.INFRA))
    assert "b4: fetching the series" in printed
    lifecycle.print_summary(run.dir)
    out = capsys.readouterr().out
    assert "verdict: INFRA-ERROR (exit 5): lore unreachable" in out
    assert out.endswith(f"run directory: {run.dir}\n") and run.dir.is_dir()


def test_bad_input_keeps_a_run_directory_its_message_points_into(tmp_path, capsys):
    log = tmp_path / "orch-runs" / "r1" / "logs" / "b4.log"
    run, _ = _ended(tmp_path, BadInput(f"b4 could not get a series (see {log})"))
    lifecycle.print_summary(run.dir)
    assert capsys.readouterr() == ("", "") and run.dir.is_dir()


def test_bad_input_after_builds_keeps_them_and_says_so(tmp_path, capsys):
    stream = io.StringIO()
    run = Run(tmp_path / "r2", ["orch", "bisect"], Progress(stream=stream))
    with pytest.raises(BadInput), Lifecycle(run):
        run.rec.bisect = record.BisectRecord(mode="test", terms=[], good="a", bad="b",
                                             config="base", tests=[], repeat=1, commits=2,
                                             max_steps=2)
        run.rec.bisect.steps.append(record.BisectStep(
            role="good end", commit="a", subject="s", outcome=record.StepOutcome.BAD,
            reason="it fails", build="built", build_seconds=1.0, build_log="x"))
        raise BadInput("the good end disagrees")
    lifecycle.print_summary(run.dir)
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"run directory: {run.dir} (kept: ")
    assert run.dir.is_dir()


def test_held_lines_show_once_the_hold_is_over(tmp_path):
    stream = io.StringIO()
    held = lifecycle.HeldProgress(Progress(stream=stream), hold=0.2)
    held.say("first")
    assert stream.getvalue() == ""
    time.sleep(1)
    held.say("second")
    lines = stream.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["first", "second"]
    held.done()
