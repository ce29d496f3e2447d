"""`orch runs` and `orch report ID` end to end, as real `orch` subprocesses,
on runs orch really made on the stand-in tree: a build-only test, a test
booted in the stand-in guest, a series that does not apply, an `orch bisect
--build` (all in ./orch-runs, where they go by default) and an `orch check
--build` (its record in the cache's checks/). The list's order and columns,
its --json, `orch report` by id and by unique prefix printing what `orch
report DIR` prints, ids that are unknown, ambiguous or try to leave the
directories, and hostile entries beside the real runs. The lister alone, on
hand-written records: tests/reports/test_runs_list.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    FIXED,
    MINI,
    REPO,
    git,
    one_error_line,
    orch,
    orch_standin,
    processes_mentioning,
    run_json,
    series,
)

LINE = re.compile(r"^(\S+)  +(\d{4}-\d\d-\d\d \d\d:\d\d)  +(\S+)  +(\S+)  +(\S+)  +(.*)$")
KEYS = {"id", "dir", "kind", "started", "finished", "what", "verdict", "exit", "state",
        "seconds", "duration"}
NO_APPLY = """\
From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: T <t@example.org>
Date: Thu, 1 Jan 2026 00:00:00 +0000
Subject: [PATCH] mini: does not apply

---
 nosuch.c | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/nosuch.c b/nosuch.c
index 1111111..2222222 100644
--- a/nosuch.c
+++ b/nosuch.c
@@ -1 +1 @@
-int a;
+int b;
--
2.39.0

"""
BROKEN_C = "int broken(void)\n{\n\treturn undeclared_thing;\n}\n"


def _run_dir(r: subprocess.CompletedProcess, cwd: Path) -> Path:
    m = re.search(r"^run directory: (.+)$", r.stdout, re.M)
    assert m, r.stdout + r.stderr
    return (cwd / m.group(1)).resolve()


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """Five real runs, oldest first, by name: their run directories; and
    the environment and directory they were made in."""
    top = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "ORCH_CACHE": str(top / "cache"), "PYTHONPATH": str(REPO),
           "HOME": str(top), "ORCH_CONFIG": "/dev/null"}
    tree = top / "tree"
    shutil.copytree(MINI, tree)
    git(tree, "init", "-q", "-b", "main")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "mini: base")
    base = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    mbox = series(tree, top, "s", [("mini: add mini_new", {"new.c": FIXED})])
    shutil.copy(mbox, top / "booted.mbox")
    (top / "bad.mbox").write_text(NO_APPLY)
    dirs = {}
    r = orch(env, top, "test", "--offline-mode", "--build-only", "--mbox", str(mbox),
             "--tree", str(tree), "--config", "base")
    assert r.returncode == 0, r.stderr
    dirs["built"] = _run_dir(r, top)
    r = orch_standin(top, env, "test", "--offline-mode", "--mbox", "booted.mbox", "--tree",
                     str(tree), "--config", "base", harness=False)
    assert r.returncode == 0, r.stderr
    dirs["booted"] = _run_dir(r, top)
    r = orch(env, top, "test", "--offline-mode", "--mbox", "bad.mbox", "--tree", str(tree),
             "--config", "base")
    assert r.returncode == 3, r.stderr
    dirs["bad"] = _run_dir(r, top)
    for name, files in (("mini: u1", {"u1.c": "int u1(void) { return 1; }\n"}),
                        ("mini: broken", {"x.c": BROKEN_C}),
                        ("mini: u2", {"u2.c": "int u2(void) { return 2; }\n"})):
        for f, text in files.items():
            (tree / f).write_text(text)
        git(tree, "add", "-A")
        git(tree, "commit", "-q", "-m", name)
    r = orch(env, top, "bisect", "--tree", str(tree), "--good", base, "--bad", "HEAD",
             "--build", "--config", "base")
    assert r.returncode == 0, r.stderr
    dirs["bisect"] = _run_dir(r, top)
    r = orch(env, tree, "check", "--build", "--config", "base")
    assert r.returncode == 1, r.stderr          # HEAD does not build: bad
    dirs["check"] = _run_dir(r, tree)
    assert dirs["check"].parent == (top / "cache" / "checks").resolve()
    assert all(d.parent == (top / "orch-runs").resolve() for n, d in dirs.items()
               if n != "check")
    return {"env": env, "top": top, "dirs": dirs, "tree": tree}


def _listed(r: subprocess.CompletedProcess) -> list[tuple[str, ...]]:
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "WHEN", "VERDICT", "EXIT", "TOOK", "WHAT"], r.stdout
    assert all(len(line) <= 100 for line in lines), r.stdout
    rows = [LINE.match(line) for line in lines[1:]]
    assert all(rows), r.stdout
    return [m.groups() for m in rows]


def _json(made, *args, cwd=None) -> list[dict]:
    r = orch(made["env"], cwd or made["top"], "runs", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_orch_runs_lists_real_runs_newest_first_one_line_each(made):
    r = orch(made["env"], made["top"], "runs")
    assert r.stderr == ""
    rows = _listed(r)
    dirs = made["dirs"]
    order = ["check", "bisect", "bad", "booted", "built"]
    assert len(rows) == len(order)
    by_id = {x["id"]: x for x in _json(made)}
    for (shown, when, verdict, exit_, took, what), name in zip(rows, order):
        rec = run_json(dirs[name])
        (rid,) = [i for i in by_id if i.startswith(shown)]   # the id, or its unique prefix
        assert (made["top"] / by_id[rid]["dir"]).resolve() == dirs[name]
        assert when == dt.datetime.fromisoformat(rec["started"]).astimezone().strftime(
            "%Y-%m-%d %H:%M")
        assert re.fullmatch(r"\d+s|\d+m\d\ds", took), took
        assert (verdict, exit_) == {"check": ("BAD", "1"), "bisect": ("FOUND", "0"),
                                    "bad": ("NO-APPLY", "3"), "booted": ("PASS", "0"),
                                    "built": ("BUILT", "0")}[name]
        assert int(exit_) == rec["exit_code"]
    whats = [row[5] for row in rows]
    bisect = run_json(dirs["bisect"])["bisect"]
    assert whats[0] == f"check {run_json(dirs['check'])['tree']['base'][:12]} (build)"
    assert whats[1] == f"bisect {bisect['good'][:8]}..{bisect['bad'][:8]} (build)"
    assert whats[2] == "mini: does not apply"
    assert whats[3] == whats[4] == "mini: add mini_new"
    assert rows[0][0] == f"check/{dirs['check'].name}"[:21]   # check/<time>


def test_the_json_has_the_same_runs_in_the_same_order(made):
    runs = _json(made)
    dirs = made["dirs"]
    assert [(made["top"] / x["dir"]).resolve() for x in runs] == [
        dirs[n] for n in ("check", "bisect", "bad", "booted", "built")]
    for x in runs:
        assert set(x) == KEYS and Path(x["dir"]).is_absolute(), x
        rec = run_json(made["top"] / x["dir"])
        assert x["id"] == (f"check/{Path(x['dir']).name}" if x["kind"] == "check"
                           else Path(x["dir"]).name)
        assert (x["started"], x["finished"]) == (
            dt.datetime.fromisoformat(rec["started"]).isoformat(),
            dt.datetime.fromisoformat(rec["finished"]).isoformat())
        assert (x["verdict"], x["exit"], x["state"]) == (rec["verdict"], rec["exit_code"],
                                                         "done")
        assert isinstance(x["seconds"], float) and 0 <= x["seconds"] < 600
        assert isinstance(x["what"], str) and x["what"] and isinstance(x["duration"], str)
    assert [x["kind"] for x in runs] == ["check", "bisect", "test", "test", "test"]


def test_orch_report_takes_an_id_or_its_prefix_and_prints_what_it_prints_for_the_dir(made):
    env, top = made["env"], made["top"]
    shown = [row[0] for row in _listed(orch(env, top, "runs"))]
    for x, prefix in zip(_json(made), shown):
        by_dir = orch(env, top, "report", x["dir"])
        assert by_dir.returncode == x["exit"] and "verdict:" in by_dir.stdout, by_dir.stderr
        for given in (x["id"], prefix):
            by_id = orch(env, top, "report", given)
            assert (by_id.returncode, by_id.stdout, by_id.stderr) == (
                by_dir.returncode, by_dir.stdout, by_dir.stderr), given
    # From elsewhere: the runs' directory named with --runs; the checks are
    # in the cache wherever orch runs.
    bisect = made["dirs"]["bisect"].name
    elsewhere = orch(env, made["tree"], "report", bisect[:24], "--runs", str(top / "orch-runs"))
    assert elsewhere.returncode == 0 and "verdict: FOUND (exit 0)" in elsewhere.stdout
    lost = orch(env, made["tree"], "report", bisect[:24])
    assert lost.returncode == 2 and "no run directory or run id" in one_error_line(lost.stderr)
    check = orch(env, made["tree"], "report", "check/")
    assert check.returncode == 1 and "verdict: bad (git bisect run: exit 1)" in check.stdout


def test_an_unknown_ambiguous_or_escaping_id_is_one_line_and_status_2(made, tmp_path):
    env, top, dirs = made["env"], made["top"], made["dirs"]
    r = orch(env, top, "report", "2026")
    assert (r.returncode, r.stdout) == (2, "")
    line = one_error_line(r.stderr)
    assert "run id '2026' is ambiguous: it may be " in line
    assert all(dirs[n].name in line for n in ("bisect", "bad", "booted", "built")), line
    typo = dirs["booted"].name.replace("booted", "bootde")
    r = orch(env, top, "report", typo)
    assert (r.returncode, r.stdout) == (2, "")
    assert f"the nearest: {dirs['booted'].name}" in one_error_line(r.stderr)
    # A run directory beside orch-runs, and one in the cache beside checks/:
    # an id is looked up among the runs listed, never joined onto a path.
    for where in (top / "outside", top / "cache" / "outside"):
        shutil.copytree(dirs["booted"], where)
    try:
        # (none of them a path from where orch runs: that is read as a path)
        for given in ("../outside", "check/../outside", "check/../../outside",
                      "../../outside", "check/../../../outside"):
            assert not os.path.lexists(top / given)
            r = orch(env, top, "report", given)
            assert (r.returncode, r.stdout) == (2, ""), given
            assert "no run directory or run id" in one_error_line(r.stderr), given
    finally:
        for where in (top / "outside", top / "cache" / "outside"):
            shutil.rmtree(where)


def test_limit_and_all(made):
    env, top = made["env"], made["top"]
    r = orch(env, top, "runs", "--limit", "2")
    assert len(_listed(r)) == 2
    assert r.stderr == "orch runs: 3 older runs not shown (--all lists every run)\n"
    r = orch(env, top, "runs", "--limit", "2", "--all")
    assert len(_listed(r)) == 5 and r.stderr == ""
    assert len(_json(made, "--limit", "1")) == 1


def test_a_nightly_out_dir_lists_its_cells(made, tmp_path):
    """A night's cells are orch test runs at nights/<date>/cells/<cell>/."""
    env = made["env"]
    cell = tmp_path / "nightly" / "nights" / "2026-12-01" / "cells" / "s-v1--mini--base"
    shutil.copytree(made["dirs"]["booted"], cell)
    (x,) = [x for x in _json(made, str(tmp_path / "nightly")) if x["kind"] == "cell"]
    assert x["id"] == "nights/2026-12-01/cells/s-v1--mini--base" and x["dir"] == str(cell)
    by_id = orch(env, tmp_path, "report", "nights/2026-12-01/cells/s-v1",
                 "--runs", str(tmp_path / "nightly"))
    by_dir = orch(env, tmp_path, "report", str(cell))
    assert by_id.returncode == 0 and by_id.stdout == by_dir.stdout and "PASS" in by_id.stdout


def test_no_runs_is_a_line_and_status_0_a_bad_dir_or_flag_status_2(env, tmp_path):
    r = orch(env, tmp_path, "runs")
    checks = Path(env["ORCH_CACHE"]) / "checks"
    assert (r.returncode, r.stdout, r.stderr) == (
        0, f"no runs under orch-runs, and no checks in {checks}\n", "")
    r = orch(env, tmp_path, "runs", "--json")
    assert (r.returncode, r.stdout) == (0, "[]\n")
    assert r.stderr == f"no runs under orch-runs, and no checks in {checks}\n"
    (tmp_path / "a-file").write_text("x")
    for args, says in ((["nosuch"], "DIR nosuch: no such directory"),
                       (["a-file"], "DIR a-file: not a directory"),
                       (["--limit", "0"], "wants a positive whole number, not '0'"),
                       (["--limit", "x"], "wants a positive whole number, not 'x'")):
        r = orch(env, tmp_path, "runs", *args)
        assert (r.returncode, r.stdout) == (2, ""), args
        assert says in one_error_line(r.stderr), (args, r.stderr)


def test_hostile_entries_beside_real_runs_never_hang_or_stop_the_list(made):
    """What no orch writes, planted in orch-runs and in the cache's checks/:
    each skipped with a note, the real runs listed, in seconds."""
    env, top = made["env"], made["top"]
    runs, checks = top / "orch-runs", top / "cache" / "checks"
    planted = [runs / n for n in ("20991231-000000-link", "20991231-000000-fifo",
                                  "20991231-000000-huge", "20991231-000000-corrupt",
                                  "20991231-000000-newer")] + [checks / "20991231-000000-fifo"]
    for d in planted:
        d.mkdir()
    try:
        (planted[0] / "run.json").symlink_to("/etc/passwd")
        os.mkfifo(planted[1] / "run.json")
        with open(planted[2] / "run.json", "wb") as f:
            f.truncate(100 << 20)
        (planted[3] / "run.json").write_text("{")
        newer = run_json(made["dirs"]["built"]) | {"schema_version": "2.0"}
        (planted[4] / "run.json").write_text(json.dumps(newer))
        os.mkfifo(planted[5] / "run.json")
        r = orch(env, top, "runs", timeout=60)
        assert len(_listed(r)) == 5
        notes = r.stderr.splitlines()
        assert len(notes) == 6 and all(n.startswith("orch runs: skipped ") for n in notes), notes
        assert "root:" not in r.stdout + r.stderr
        for d, why in zip(planted, ("a symbolic link (not followed)", "not a regular file",
                                    "larger than 16 MiB", "not JSON", "newer than this orch",
                                    "not a regular file")):
            assert any(f"{d.name}/run.json: " in n and why in n for n in notes), (d, notes)
        r = orch(env, top, "report", "check/20991231-000000-fifo", timeout=60)
        assert r.returncode == 2 and "not a regular file" in one_error_line(r.stderr)
    finally:
        for d in planted:
            shutil.rmtree(d)


def test_a_run_still_going_is_running_and_killed_it_is_killed(tmp_path, mini):
    """A real orch test paused in its patched build (the stand-in's SLOW
    step) is "running"; killed with SIGKILL, so that it never finishes its
    record, "killed?". Its record names its process (pid, host)."""
    env = {**os.environ, "ORCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO),
           "HOME": str(tmp_path), "ORCH_CONFIG": "/dev/null"}
    mbox = series(mini, tmp_path, "s", [("mini: slow step", {"SLOW": "1\n"})])
    p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "test", "--offline-mode",
                          "--build-only", "--mbox", str(mbox), "--tree", str(mini),
                          "--config", "base", "--run-dir", "orch-runs/slow"],
                         cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(
                "sleep 120" in x for x in processes_mentioning(str(tmp_path / "cache"))):
            time.sleep(0.2)
        raw = json.loads((tmp_path / "orch-runs" / "slow" / "run.json").read_text())
        assert (raw["state"], raw["pid"], raw["host"]) == ("running", p.pid,
                                                           socket.gethostname())
        r = orch(env, tmp_path, "runs", "--json")
        assert [(x["id"], x["state"], x["duration"]) for x in json.loads(r.stdout)] == [
            ("slow", "running", "running")], \
            r.stdout + r.stderr
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    r = orch(env, tmp_path, "runs", "--json")
    assert [(x["id"], x["state"], x["duration"]) for x in json.loads(r.stdout)] == [
        ("slow", "running", "killed?")], \
        r.stdout + r.stderr


def test_a_reader_that_goes_away_is_no_internal_error(made, tmp_path):
    """`orch runs --json | head`: the pipe closes under a long listing."""
    many = tmp_path / "many"
    for i in range(600):
        d = many / f"run-{i:04}"
        d.mkdir(parents=True)
        shutil.copy(made["dirs"]["booted"] / "run.json", d / "run.json")
    p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "runs", "--json", "--all",
                          str(many)], cwd=tmp_path, env=made["env"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout.read(100).startswith(b"[")
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 130 and err == "", err
