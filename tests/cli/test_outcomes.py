"""What a script reads of a run: `orch check`'s status whatever stops it
(git bisect run takes 0, 1 and 125 for answers and stops at 128 and above),
and `orch report`'s status, which is what the run said: a check's in git's
words, 7 for a run whose record still says "running".

Real `orch` subprocesses on the stand-in tree (its kernel builds in
seconds); --build checks need no boot. Before: an unwritable --run-dir or
ORCH_CACHE, or any bug, made `orch check` exit 5 (git: "bad"); `orch report`
of a killed run exited 0 and of a failing check printed "BAD (exit 0)".
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from helpers import git, one_error_line, orch, run_json
from lore_server import LORE_DATA_DIR

from orchestrator import cli
from orchestrator.core.errors import Exit
from orchestrator.core.exits import GitBisect
from orchestrator.kernel import kconfig
from orchestrator.run import record
from orchestrator.run.record import RunRecord, RunState, RunVerdict

BROKEN_C = "int broken(void)\n{\n\treturn undeclared_thing;\n}\n"
STOPS = (GitBisect.BAD_INPUT, GitBisect.INFRA)


def check(env, tree: Path, *args) -> subprocess.CompletedProcess:
    return orch(env, tree, "check", "--build", "--config", "base", *args)


def commit(repo: Path, files: dict[str, str], subject: str) -> None:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", subject)


def stopped_in_one_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode in STOPS, (r.returncode, r.stderr)
    return one_error_line(r.stderr)


# -- orch check: whatever stops it stops the bisect ----------------------------------------

def test_check_with_a_file_as_run_dir_stops_the_bisect(env, mini, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("not a directory\n")
    line = stopped_in_one_line(check(env, mini, "--run-dir", str(afile)))
    assert str(afile) in line
    assert afile.read_text() == "not a directory\n"


@pytest.mark.parametrize("where", ["a file", "under /proc"])
def test_check_with_an_unusable_cache_stops_the_bisect(env, mini, tmp_path, where):
    cache = tmp_path / "cache-file"
    if where == "a file":
        cache.write_text("")
    else:
        cache = Path("/proc/orch-no-such-dir/cache")
    stopped_in_one_line(check({**env, "ORCH_CACHE": str(cache)}, mini))


def _bug(*args, **kwargs):
    raise RuntimeError("injected into the check")


def test_a_bug_before_the_check_begins_stops_the_bisect(env, mini, tmp_path, monkeypatch,
                                                        capsys):
    """A bug anywhere (here: loading the config, before the run directory
    exists) is 129, with its one line and its traceback kept."""
    for k in ("ORCH_CACHE", "HOME"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(kconfig, "load", _bug)
    code = cli.main(["check", "--tree", str(mini), "--build", "--config", "base",
                     "--run-dir", str(tmp_path / "rd")])
    assert code == GitBisect.INFRA
    err = capsys.readouterr().err
    assert err.startswith("orch: error: internal error: RuntimeError: injected into the check")
    assert len(err.splitlines()) == 1 and list(tmp_path.glob("orch-crash-*.txt"))


def test_a_traceback_is_never_written_through_a_planted_link(env, mini, tmp_path,
                                                             monkeypatch, capsys):
    """orch runs as root in CI: a link planted at the name the traceback
    file had (orch-crash-PID.txt in a shared /tmp) was written through."""
    for k in ("ORCH_CACHE", "HOME"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    (tmp_path / f"orch-crash-{os.getpid()}.txt").symlink_to(victim)
    monkeypatch.setattr(kconfig, "load", _bug)
    cli.main(["check", "--tree", str(mini), "--build", "--config", "base",
              "--run-dir", str(tmp_path / "rd")])
    assert victim.read_text() == "untouched\n"
    path = capsys.readouterr().err.rsplit("traceback in ", 1)[1].rstrip(")\n")
    kept = Path(path)
    assert kept.parent == tmp_path and not kept.is_symlink() and kept.stat().st_mode & 0o077 == 0
    assert "injected into the check" in kept.read_text()


def test_an_old_status_of_a_bug_is_caught(env, mini, tmp_path, monkeypatch, capsys):
    """The broken variant: a check whose command maps failures as every other
    command does (what cli.py did): 5, which git bisect reads as "bad"."""
    for k in ("ORCH_CACHE", "HOME"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(kconfig, "load", _bug)
    monkeypatch.setattr("orchestrator.bisect.check.stopped", cli._status)
    code = cli.main(["check", "--tree", str(mini), "--build", "--config", "base"])
    assert code == Exit.INFRA and code not in STOPS


# -- orch check's answer, its record and orch report of it -----------------------------

@pytest.mark.parametrize("broken,word,rc", [(False, "good", 0), (True, "bad", 1)])
def test_a_checks_record_and_report_say_what_git_read(env, mini, tmp_path, broken, word, rc):
    if broken:
        commit(mini, {"x.c": BROKEN_C}, "mini: broken build")
    rd = tmp_path / "check"
    r = check(env, mini, "--run-dir", str(rd))
    assert r.returncode == rc, r.stderr
    verdict = f"verdict: {word} (git bisect run: exit {rc})"
    # The result on stdout, nothing of it on stderr.
    assert verdict in r.stdout and f"run directory: {rd}" in r.stdout, r.stdout
    assert "verdict:" not in r.stderr and "run directory" not in r.stderr
    assert run_json(rd)["exit_code"] == rc and run_json(rd)["verdict"] == word.upper()
    rep = orch(env, tmp_path, "report", str(rd))
    assert rep.returncode == rc, rep.stderr
    assert rep.stdout.splitlines()[-1].startswith(verdict)
    assert "check (build, config base)" in rep.stdout


def test_report_of_an_old_check_record_says_gits_answer(tmp_path):
    """A check recorded before its exit_code was git's (0 for every answer)."""
    rec = RunRecord("0.9", ["orch", "check", "--build"], str(tmp_path), "t0",
                    state=RunState.DONE, verdict=RunVerdict.BAD, exit_code=0, finished="t1")
    rec.write(tmp_path / "run.json")
    code, out, _ = _report(tmp_path)
    assert code == 1 and out.splitlines()[-1] == "verdict: bad (git bisect run: exit 1)"
    rec.verdict, rec.exit_code, rec.error = RunVerdict.BAD_INPUT, 2, "no such tree: x"
    rec.write(tmp_path / "run.json")
    code, out, _ = _report(tmp_path)
    assert code == 128 and out.splitlines()[-1] == (
        "verdict: stopped (git bisect run: exit 128): no such tree: x")


def _report(run_dir: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["report", str(run_dir)])
    return code, out.getvalue(), err.getvalue()


def test_report_of_an_inconclusive_bisect_says_6_even_if_it_was_3(tmp_path):
    rec = RunRecord("0.9", ["orch", "bisect"], str(tmp_path), "t0", state=RunState.DONE,
                    verdict=RunVerdict.INCONCLUSIVE, exit_code=3, finished="t1",
                    error="only skipped commits are left")
    rec.write(tmp_path / "run.json")
    code, out, _ = _report(tmp_path)
    assert code == Exit.INCONCLUSIVE
    assert out.splitlines()[-1] == "verdict: INCONCLUSIVE (exit 6): only skipped commits are left"


# -- orch report of a run that never finished ----------------------------------------------

def _workspace_lock(cache: Path, tree: Path) -> Path:
    real = str(tree.resolve())
    ws = cache / "work" / f"{tree.name}-{hashlib.sha1(real.encode()).hexdigest()[:8]}"
    ws.mkdir(parents=True, exist_ok=True)
    return ws / "lock"


def test_report_of_a_killed_run_is_incomplete(env, mini, tmp_path):
    """An `orch test` killed with SIGKILL (nothing can finish its record)
    while it waits for the worktree another run holds."""
    holder = os.open(_workspace_lock(Path(env["ORCH_CACHE"]), mini), os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)   # as another orch run would
    rd = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "test", "--offline-mode",
                          "--mbox", str(LORE_DATA_DIR / "all.mbox"), "--tree", str(mini),
                          "--on", "HEAD", "--config", "base", "--build-only",
                          "--run-dir", str(rd)], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                (rd / "run.json").exists() and run_json(rd).get("tree")):
            time.sleep(0.2)
        assert run_json(rd)["state"] == "running"
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        os.close(holder)
        if p.poll() is None:
            p.kill()
    r = orch(env, tmp_path, "report", str(rd))
    assert r.returncode == Exit.INCOMPLETE, r.stdout + r.stderr
    last = r.stdout.splitlines()[-1]
    assert last.startswith("verdict: none (exit 7): the run did not finish: its record says "
                           "running since "), last
    assert r.stderr == ""


def test_report_of_a_finished_run_is_its_own_status(tmp_path):
    rec = RunRecord("0.9", ["orch", "test"], str(tmp_path), "t0", state=RunState.INTERRUPTED,
                    verdict=RunVerdict.INTERRUPTED, exit_code=130, finished="t1",
                    error="interrupted")
    rec.write(tmp_path / "run.json")
    assert _report(tmp_path)[0] == 130
    rec.state, rec.verdict, rec.exit_code, rec.error = (RunState.DONE, RunVerdict.NO_APPLY, 3,
                                                        "patch 1/1 does not apply")
    rec.write(tmp_path / "run.json")
    code, out, _ = _report(tmp_path)
    assert code == 3 and out.splitlines()[-1] == (
        "verdict: NO-APPLY (exit 3): patch 1/1 does not apply")
    assert json.loads((tmp_path / "run.json").read_text())["exit_code"] == 3
    assert record.read(tmp_path / "run.json").exit_code == 3
