"""reports/runs_list.py on hand-written run directories: what `orch runs`
lists and in which order, what it skips and why (links, FIFOs, huge, corrupt
and newer records: none may hang or stop the list), how a record still
"running" is told apart, the ids it shows, and `orch report ID`'s lookup
(unique prefixes, ambiguity, the nearest ids, nothing outside the lists).
The same on runs orch really made: tests/cli/test_runs_command.py."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.core.errors import BadInput
from orchestrator.reports import runs_list
from orchestrator.run import summary
from orchestrator.run.record import (
    BisectRecord,
    RunRecord,
    RunState,
    RunVerdict,
)

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)


def at(hours: float) -> str:
    return (T0 + dt.timedelta(hours=hours)).isoformat()


def write(run_dir: Path, *, started: str, finished: str | None = None, exit: int | None = 0,
          verdict: RunVerdict | None = RunVerdict.PASS, state: RunState = RunState.DONE,
          command: tuple | object = ("orch", "test"), series: dict | None = None,
          bisect: BisectRecord | None = None, **raw) -> Path:
    """A run.json as orch writes it, and `raw` fields on top."""
    rec = RunRecord("0.9", list(command) if isinstance(command, tuple) else command,
                    str(run_dir), started, state=state, verdict=verdict,
                    exit_code=exit, finished=finished, series=series, bisect=bisect)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps(rec.to_json() | raw))
    return run_dir


def bisect_rec(mode: str, good: str, bad: str) -> BisectRecord:
    return BisectRecord(mode=mode, terms=["good", "bad"], good=good, bad=bad, config="base",
                        tests=[], repeat=1, commits=4, max_steps=3)


@contextlib.contextmanager
def within(seconds: int):
    """Fail, rather than hang, when the body takes longer (a FIFO read
    without O_NONBLOCK would wait for a writer for ever)."""
    def expired(*_):
        raise TimeoutError(f"took more than {seconds}s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def hostile():
    """Directories of what no orch writes, removed after the test: the
    suite's schema check (schema_check.py) reads every run.json a test
    leaves behind, and would wait for ever on a FIFO."""
    made: list[Path] = []
    yield made
    for d in made:
        if d.is_symlink():
            d.unlink()
        else:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def places(tmp_path):
    """A runs directory holding every kind of run, and a cache's checks."""
    runs, checks = tmp_path / "orch-runs", tmp_path / "cache" / "checks"
    write(runs / "20261201-100000-m-1-x.org", started=at(0), finished=at(25.05 / 60),
          exit=1, verdict=RunVerdict.FAIL,
          series={"msgid": "m-1@x.org", "version": 3, "subject": "[PATCH v3 0/2] block: "
                  "enable RWF_DONTCACHE for block devices"})
    write(runs / "20261201-120000-bisect-v7.2..HEAD", started=at(2), finished=at(3.5),
          command=("orch", "bisect"), verdict=RunVerdict.FOUND,
          bisect=bisect_rec("test", "a" * 40, "b" * 40))
    write(runs / "nightly" / "nights" / "2026-12-01" / "cells" / "s-v2--linux--base",
          started=at(4), finished=at(4 + 5 / 3600),
          series={"msgid": "s@x.org", "version": 2, "subject": "mm: a \x1b[31mred\x1b[0m fix"})
    write(runs / "20261201-150000-interrupted", started=at(5), finished=at(5 + 30 / 3600),
          state=RunState.INTERRUPTED, verdict=RunVerdict.INTERRUPTED, exit=130)
    write(runs / "20261201-160000-killed", started=at(6), finished=None, exit=None,
          verdict=None, state=RunState.RUNNING)
    write(checks / "20261201-170000-cccccccccccc", started=at(7), finished=at(7.01),
          command=("orch", "check", "--build"), verdict=RunVerdict.BAD, exit=1,
          bisect=bisect_rec("build", "c" * 40, "c" * 40))
    return runs, checks


def test_lists_every_kind_newest_first_with_what_each_tested(places):
    runs, checks = places
    found = runs_list.scan(runs_list.tops([runs], checks))
    assert found.skipped == [] and found.notes == []
    got = [(r.id, r.kind, r.what, r.verdict, r.exit, r.took) for r in found.runs]
    assert got == [
        ("check/20261201-170000-cccccccccccc", "check", "check cccccccccccc (build)",
         "BAD", 1, "36s"),
        ("20261201-160000-killed", "test", "test", None, None, "not finished"),
        ("20261201-150000-interrupted", "test", "test", "INTERRUPTED", 130, "30s"),
        ("nightly/nights/2026-12-01/cells/s-v2--linux--base", "cell",
         "mm: a ?[31mred?[0m fix v2", "PASS", 0, "5s"),
        ("20261201-120000-bisect-v7.2..HEAD", "bisect", "bisect aaaaaaaa..bbbbbbbb (test)",
         "FOUND", 0, "1h30m"),
        ("20261201-100000-m-1-x.org", "test",
         "block: enable RWF_DONTCACHE for block devices v3", "FAIL", 1, "25m03s")]
    # The exit status is `orch report`'s (summary.conclusion), a check's git's.
    assert [r.exit for r in found.runs] == [
        summary.conclusion(r.record).code if r.record.exit_code is not None else None
        for r in found.runs]
    assert found.runs[0].dir == checks / "20261201-170000-cccccccccccc"


def test_the_json_of_a_run_has_every_fact_of_its_line(places):
    runs, checks = places
    found = runs_list.scan(runs_list.tops([runs], checks))
    first, killed = found.runs[0].as_json(), found.runs[1].as_json()
    assert first == {
        "id": "check/20261201-170000-cccccccccccc",
        "dir": str(checks / "20261201-170000-cccccccccccc"), "kind": "check",
        "started": at(7), "finished": at(7.01), "what": "check cccccccccccc (build)",
        "verdict": "BAD", "exit": 1, "state": "done", "seconds": 36.0, "duration": "36s"}
    assert (killed["exit"], killed["verdict"], killed["finished"], killed["seconds"],
            killed["state"], killed["duration"]) == (None, None, None, None, "running",
                                                     "not finished")
    json.dumps([r.as_json() for r in found.runs])   # all of it is JSON


def test_the_text_list_fits_100_columns_and_starts_each_line_with_an_id(places):
    runs, checks = places
    write(runs / ("20261202-100000-" + "a-very-long-message-id-" * 3 + "@example.org"),
          started=at(30), finished=at(31),
          series={"msgid": "x", "version": 1, "subject": "a subject " * 20})
    found = runs_list.scan(runs_list.tops([runs], checks))
    ids = [r.id for r in found.runs]
    out = runs_list.lines(found.runs, ids)
    assert out[0].split() == ["ID", "WHEN", "VERDICT", "EXIT", "TOOK", "WHAT"]
    assert all(len(line) <= runs_list.WIDTH for line in out), out
    assert len(out) == len(found.runs) + 1
    for line, r in zip(out[1:], found.runs):
        shown = line.split()[0]
        # the id, or the unique prefix of it `orch report` takes back
        assert r.id.startswith(shown) and [i for i in ids if i.startswith(shown)] == [r.id]
        assert r.started.astimezone().strftime("%Y-%m-%d %H:%M") in line
    long = next(line for line in out if line.startswith("20261202-100000-"))
    assert long.split()[0] == "20261202-100000-a-very-long"[:runs_list.ID_MIN]
    assert long.endswith("...") and " a subject" in long
    assert "\x1b" not in "\n".join(out)


def test_shown_ids_are_the_shortest_unique_prefixes():
    ids = ["check/20261201-170000-cccccccccccc", "20261204-113012-" + "x" * 40 + "-one",
           "20261204-113012-" + "x" * 40 + "-two", "20261204-113013-" + "y" * 40, "short"]
    shown = runs_list.shown_ids(ids)
    # at least ID_MIN characters, less the "-" that would end it
    assert shown["check/20261201-170000-cccccccccccc"] == "check/20261201-170000"
    assert shown["short"] == "short"
    assert shown[ids[1]] == ids[1][:-2] and shown[ids[2]] == ids[2][:-2]
    assert shown[ids[3]] == ids[3][:runs_list.ID_MIN]
    for rid, s in shown.items():
        assert [i for i in ids if i.startswith(s)] == [rid] or s == rid


def test_hostile_entries_are_skipped_with_a_note_and_never_hang(places, hostile):
    runs, checks = places
    bad = runs / "bad"
    hostile += [bad, runs / "linked-dir", runs / ".hidden", runs / "a"]
    write(bad / "newer", started=at(1), schema_version="2.0")
    (bad / "corrupt").mkdir()
    (bad / "corrupt" / "run.json").write_text('{"orch_version": "0.9", "comm')
    (bad / "link").mkdir()
    (bad / "link" / "run.json").symlink_to("/etc/passwd")
    (bad / "fifo").mkdir()
    os.mkfifo(bad / "fifo" / "run.json")
    (bad / "huge").mkdir()
    with open(bad / "huge" / "run.json", "wb") as f:
        f.truncate(100 << 20)                  # 100 MB, sparse
    write(bad / "typed", started=at(1), command=7)   # a field of the wrong type
    (bad / "deep").mkdir()
    (bad / "deep" / "run.json").write_text("[" * 100000 + "]" * 100000)
    # Not followed, not looked into, not found:
    (runs / "linked-dir").symlink_to(checks, target_is_directory=True)
    write(runs / ".hidden" / "x", started=at(1))
    write(runs / "a" / "b" / "c" / "d" / "e" / "f" / "g", started=at(1))
    with within(30):
        found = runs_list.scan(runs_list.tops([runs], checks))
    assert len(found.runs) == 6                # the good ones, the check once, as a check
    assert "check/20261201-170000-cccccccccccc" in {r.id for r in found.runs}
    assert not [r for r in found.runs if r.id.startswith(("linked-dir", ".hidden", "a/"))]
    why = {s.id: s.why for s in found.skipped}
    assert set(why) == {f"bad/{n}" for n in ("newer", "corrupt", "link", "fifo", "huge",
                                               "typed", "deep")}, why
    assert "newer than this orch reads" in why["bad/newer"]
    assert why["bad/corrupt"].startswith("not JSON")
    assert why["bad/link"] == "a symbolic link (not followed)"
    assert why["bad/fifo"] == "not a regular file"
    assert why["bad/huge"] == f"larger than 16 MiB ({100 << 20} bytes)"
    assert why["bad/typed"].startswith("not an orch run record: TypeError")
    assert why["bad/deep"].startswith("not JSON")
    notes = "\n".join(s.note() for s in found.skipped)
    assert "root:" not in notes and f"{runs / 'bad' / 'fifo' / 'run.json'}:" in notes


def test_a_walk_stops_after_max_dirs_and_says_so(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for i in range(5):
        write(runs / f"r{i}", started=at(i))
    monkeypatch.setattr(runs_list, "MAX_DIRS", 3)
    found = runs_list.scan(runs_list.tops([runs], None))
    assert [r.id for r in found.runs] == ["r1", "r0"]
    assert found.notes == [f"stopped looking under {runs} after 3 directories"]


def test_a_top_that_is_missing_is_empty_and_a_linked_cache_dir_is_not_followed(tmp_path,
                                                                               hostile):
    runs = tmp_path / "runs"
    write(runs / "r", started=at(0))
    (tmp_path / "checks").symlink_to(runs, target_is_directory=True)
    hostile.append(tmp_path / "checks")
    found = runs_list.scan(runs_list.tops([tmp_path / "nothing"], tmp_path / "checks"))
    assert found.runs == [] and found.notes == [
        f"not looked into {tmp_path / 'checks'}: a symbolic link (not followed)"]
    # The user's own directory may be a link.
    found = runs_list.scan(runs_list.tops([tmp_path / "checks"], None))
    assert [r.id for r in found.runs] == ["r"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("who,took", [
    ("me", "running"), ("dead", "killed?"), ("reused", "killed?"), ("elsewhere", "not finished"),
    ("no pid", "not finished"), ("bad pid", "not finished"), ("huge pid", "not finished")])
def test_a_record_still_running_is_running_or_killed_by_its_process(tmp_path, hostile, who,
                                                                    took):
    now = dt.datetime.now(dt.timezone.utc)
    started = (now - dt.timedelta(days=3650) if who == "reused" else now).isoformat()
    raw = {"me": {"pid": os.getpid(), "host": socket.gethostname()},
           "reused": {"pid": os.getpid(), "host": socket.gethostname()},
           "dead": {"pid": _dead_pid(), "host": socket.gethostname()},
           "elsewhere": {"pid": os.getpid(), "host": "another-" + socket.gethostname()},
           "no pid": {},
           "bad pid": {"pid": "1", "host": socket.gethostname()},
           "huge pid": {"pid": 1 << 80, "host": socket.gethostname()}}[who]
    hostile.append(write(tmp_path / "runs" / "r", started=started, exit=None, verdict=None,
                         state=RunState.RUNNING, **raw))   # pid, host: not in the schema
    (run,) = runs_list.scan(runs_list.tops([tmp_path / "runs"], None)).runs
    assert (run.took, run.exit, run.state) == (took, None, "running")


# -- orch report ID ---------------------------------------------------------------------


def test_an_id_or_a_unique_prefix_finds_its_run(places):
    runs, checks = places
    where = runs_list.tops([runs], checks)
    for text, rid in (("20261201-100000-m-1-x.org", "20261201-100000-m-1-x.org"),
                      ("20261201-10", "20261201-100000-m-1-x.org"),
                      ("check/2", "check/20261201-170000-cccccccccccc"),
                      ("nightly/", "nightly/nights/2026-12-01/cells/s-v2--linux--base")):
        run = runs_list.resolve(text, where)
        assert run.id == rid and run.dir == (checks if rid.startswith("check/") else runs) \
            / rid.removeprefix("check/")
        assert run.record.started == json.loads((run.dir / "run.json").read_text())["started"]


def test_an_ambiguous_prefix_lists_the_candidates(places):
    runs, checks = places
    with pytest.raises(BadInput) as e:
        runs_list.resolve("20261201-1", runs_list.tops([runs], checks))
    assert str(e.value) == (
        "run id '20261201-1' is ambiguous: it may be 20261201-160000-killed, "
        "20261201-150000-interrupted, 20261201-120000-bisect-v7.2..HEAD, "
        "20261201-100000-m-1-x.org")


def test_the_same_id_under_two_directories_is_ambiguous_and_names_both(tmp_path):
    write(tmp_path / "a" / "r", started=at(0))
    write(tmp_path / "b" / "r", started=at(1))
    with pytest.raises(BadInput, match=r"it may be r \(.*/b/r\), r \(.*/a/r\)$"):
        runs_list.resolve("r", runs_list.tops([tmp_path / "a", tmp_path / "b"], None))


def test_an_unknown_id_names_the_nearest(places):
    runs, checks = places
    with pytest.raises(BadInput) as e:
        runs_list.resolve("20261201-100000-m-2-x.org", runs_list.tops([runs], checks))
    assert str(e.value) == (
        f"no run directory or run id '20261201-100000-m-2-x.org' (ids looked up under {runs} "
        f"or {checks}); the nearest: 20261201-100000-m-1-x.org, 20261201-160000-killed, "
        "20261201-150000-interrupted")
    with pytest.raises(BadInput, match="`orch runs` lists the runs and their ids$"):
        runs_list.resolve("zzzz", runs_list.tops([runs], checks))


def test_an_id_never_reaches_outside_the_directories(places, tmp_path):
    runs, checks = places
    write(tmp_path / "outside", started=at(9))          # beside orch-runs, not in it
    write(tmp_path / "cache" / "elsewhere", started=at(9))
    where = runs_list.tops([runs], checks)
    for text in ("../outside", "orch-runs/../outside", str(tmp_path / "outside"),
                 "check/../elsewhere", "check/../../outside", "/", ".", ".."):
        with pytest.raises(BadInput, match="no run directory or run id"):
            runs_list.resolve(text, where)


def test_the_id_of_a_skipped_record_says_why(places, hostile):
    runs, checks = places
    hostile.append(runs / "linked")
    (runs / "linked").mkdir()
    (runs / "linked" / "run.json").symlink_to("/etc/passwd")
    with pytest.raises(BadInput) as e:
        runs_list.resolve("linked", runs_list.tops([runs], checks))
    assert str(e.value) == (f"run 'linked': skipped {runs / 'linked' / 'run.json'}: "
                            "a symbolic link (not followed)")
