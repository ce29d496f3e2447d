"""The run record: its JSON round trip, its schema file, and `orch report`
on records of other versions. Every run.json the rest of the suite writes
is validated against the schema by schema_check.py."""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import os
import shutil
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from schema_check import schema_errors

from orchestrator.core import jsonio
from orchestrator.core.errors import BadInput
from orchestrator.fanout import jobfiles
from orchestrator.nightly import night
from orchestrator.run import record, summary
from orchestrator.run.record import (
    Accel,
    ApplyRecord,
    BootRecord,
    BuildRecord,
    Comparison,
    ConfigRecord,
    EachPatchStep,
    Outcome,
    Problems,
    RunRecord,
    SideRecord,
    TestRecord,
    TreeRecord,
)

REPO = Path(__file__).resolve().parent.parent.parent
# run.json, night.json and job.json as orch wrote them before their statuses
# were Enums, frozen: written by the code of commit 34a9f01 from this file's
# full_record (finished, with a series and a three-step bisect added),
# tests/night_sample.py's sample_night, and a failed series job of its plan.
# Every later orch must read them, and write them again byte for byte.
RECORDS = REPO / "tests" / "data" / "records"


def full_record(tmp_path: Path) -> RunRecord:
    built = BuildRecord(status="ok", seconds=12.5, cached=False, image="/k/bzImage",
                        log="/l/build.log", key="abc", compiled=3,
                        ccache={"hits": 1, "misses": 2, "hit_rate": 0.33},
                        banner="Linux version 7.2.13", uncached=[])
    side = SideRecord(built, BootRecord(status="ok", accel="tcg", cached=False, seconds=30.0,
                                        console="/l/console", junit="/r/junit.xml",
                                        harness_log="/r/harness.log", harness_rc=1,
                                        died_in=None, error="",
                                        banner="Linux version 7.2.13"),
                      Outcome("FAIL", "", False, None),
                      [TestRecord("guest_tests/t.py::a", "FAIL", "boom", 1.5, {"k": "v"},
                                  ["PASS", "FAIL"])],
                      [{"kind": "warning", "title": "x", "frames": [], "line": 3,
                        "fingerprint": "f"}], {"scale.json": {"n": [1, 2]}})
    crashed = SideRecord(BuildRecord(status="cached", seconds=0.1, cached=True, image="/k2",
                                     log="/l2", key="def", compiled=0, ccache=None, banner="b",
                                     uncached=[]),
                         BootRecord(status="failed", accel="tcg", cached=True, seconds=5.0,
                                    console="/c", junit=None, harness_log=None,
                                    harness_rc=None, died_in="guest_tests/t.py::a",
                                    error="kernel panicked: x", banner="b",
                                    console_tail=["line 1"]),
                         Outcome("ERROR", "kernel panicked: x", False, "guest_tests/t.py::a"),
                         [], [], {})
    cfg = ConfigRecord("base", side, crashed, {"status": "compared", "added": [], "removed": []},
                       [Comparison("guest_tests/t.py::a", "FAIL", "ERROR", "still failing", "")],
                       [], [], "FAIL", 0, Problems([], ["config base: x"], []))
    pending = ConfigRecord("debug")
    failed = ConfigRecord("kasan", SideRecord(BuildRecord(status="failed", log="/l/b.log"),
                                              BootRecord(status="not run"), tests=[]))
    return RunRecord("0.1.0", ["orch", "test"], str(tmp_path), record.now(),
                     verdict="FAIL", exit_code=1, error="config base: x",
                     series={"subject": "s", "version": 3, "patches": []},
                     tree=TreeRecord("/t", "label", "a" * 40, "why"),
                     configs=[cfg, pending, failed], expected_tests=["guest_tests/t.py::a"],
                     repeat=2, apply=ApplyRecord(True, "b" * 40, None, []),
                     accel=Accel("tcg", "no kvm"),
                     each_patch=[EachPatchStep(1, "p1", "ok", {"base": built}),
                                 EachPatchStep(2, "p2", "failed", error="broke")],
                     finished=record.now())


def test_round_trip_keeps_every_field(tmp_path):
    rec = full_record(tmp_path)
    data = rec.to_json()
    assert RunRecord.from_json(json.loads(json.dumps(data))).to_json() == data
    assert schema_errors(data) == []
    # The fields other tools read, where they always were.
    assert data["configs"][0]["baseline"]["build"]["ccache"]["hits"] == 1
    assert data["configs"][0]["patched"]["boot"]["console_tail"] == ["line 1"]
    assert data["configs"][1] == {"name": "debug", "baseline": {"build": {"status": "pending"}},
                                  "patched": {"build": {"status": "pending"}}}
    assert data["configs"][2]["baseline"] == {"build": {"status": "failed", "log": "/l/b.log"},
                                              "boot": {"status": "not run"}, "tests": []}
    assert "console_tail" not in data["configs"][0]["baseline"]["boot"]
    assert data["schema_version"] == record.SCHEMA_VERSION
    assert "verdict: FAIL (exit 1)" in summary.summary(rec)


def test_schema_file_is_the_schema_of_the_types():
    """Change the record, regenerate the file (and bump the version):
    python -c 'import json; from orchestrator.run import record; print(json.dumps(record.json_schema(), indent=2))'"""
    assert json.loads(record.SCHEMA_FILE.read_text()) == record.json_schema()


@pytest.mark.parametrize("where,value,why", [
    (("exit_code",), "1", "is not valid under any of the given schemas"),
    (("configs", 0, "baseline", "build", "seconds"), "fast", "is not valid"),
    (("configs", 0, "verdict"), 3, "is not valid"),
    (("configs", 0, "baseline", "tests", 0, "surprise"), 1, "Additional properties"),
    (("accel",), {"mode": "tcg"}, "'reason' is a required property"),
])
def test_schema_check_can_fail(tmp_path, where, value, why):
    data = full_record(tmp_path).to_json()
    bad = copy.deepcopy(data)
    node = bad
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    errors = schema_errors(bad)
    assert errors and any(why in e for e in errors), errors


def test_missing_required_field_fails_the_schema(tmp_path):
    data = full_record(tmp_path).to_json()
    del data["configs"][0]["name"]
    assert any("'name' is a required property" in e for e in schema_errors(data))


def orch_report(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", "report", str(run_dir)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_report_refuses_a_newer_major_version(tmp_path):
    data = full_record(tmp_path).to_json() | {"schema_version": "2.0"}
    (tmp_path / "run.json").write_text(json.dumps(data))
    r = orch_report(tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "orch: error: run.json is schema version 2.0, newer than this orch reads "
        f"({record.SCHEMA_VERSION}); upgrade orch to read it"]


def test_report_reads_a_newer_minor_and_an_older_record(tmp_path):
    newer = full_record(tmp_path).to_json() | {"schema_version": "1.9", "added_later": {"x": 1}}
    (tmp_path / "run.json").write_text(json.dumps(newer))
    r = orch_report(tmp_path)
    assert r.returncode == 1 and "verdict: FAIL (exit 1)" in r.stdout, r.stderr
    older = full_record(tmp_path).to_json()
    del older["schema_version"]   # records before the field
    (tmp_path / "run.json").write_text(json.dumps(older))
    r = orch_report(tmp_path)
    assert r.returncode == 1 and "matrix:" in r.stdout, r.stderr


def test_report_on_a_broken_record_is_one_line(tmp_path):
    (tmp_path / "run.json").write_text('{"configs": 3}')
    r = orch_report(tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("orch: error: ") and len(r.stderr.strip().splitlines()) == 1



@pytest.mark.parametrize("kind", ["fifo", "huge", "device", "deep"])
def test_a_hostile_run_json_is_one_line_not_a_hang(tmp_path, kind, monkeypatch):
    """A run directory may come from a CI artifact: a FIFO named run.json
    would block a plain read for ever, a huge one would fill memory. (Not
    named run.json here: schema_check reads every run.json a test leaves.)"""
    path = tmp_path / "hostile.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        monkeypatch.setattr(record, "MAX_RECORD", 1 << 20)
        with open(path, "wb") as f:
            f.truncate(2 << 20)
    elif kind == "device":
        os.symlink("/dev/zero", path)
    else:
        path.write_text("[" * 10000 + "]" * 10000)
    with pytest.raises(BadInput) as e:
        record.read(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)

# -- the typed records, byte for byte ----------------------------------------

def through_typed_records(src: Path, dest: Path, name: str):
    """`name` read from `src` by its reader and written into `dest` by its writer."""
    if name == "run.json":
        rec = record.read(src / name)
        rec.write(dest / name)
    elif name == "night.json":
        rec = night.read(src)
        rec.write(dest)
    else:
        rec = jobfiles.read_job(src)
        rec.write(dest)
    return rec


def enum_fields(obj, where: str = ""):
    """(where, value, Enum type) of every field of `obj` typed with an Enum,
    however deep (in lists, dicts and optionals)."""
    if dataclasses.is_dataclass(obj):
        hints = jsonio.type_hints(type(obj))
        for f in dataclasses.fields(obj):
            yield from _typed(hints[f.name], getattr(obj, f.name), f"{where}.{f.name}")


def _typed(tp, value, where):
    if value is None:
        return
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        yield from _typed(args[0], value, where)
    elif typing.get_origin(tp) is list:
        for i, v in enumerate(value):
            yield from _typed(args[0], v, f"{where}[{i}]")
    elif typing.get_origin(tp) is dict:
        for k, v in value.items():
            yield from _typed(args[1], v, f"{where}[{k!r}]")
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        yield where, value, tp
    else:
        yield from enum_fields(value, where)


@pytest.mark.parametrize("name,kinds", [
    ("run.json", {"RunState", "RunVerdict", "BuildStatus", "BootStatus", "SideStatus", "Status",
                  "Verdict", "EachPatchStatus", "StepOutcome"}),
    ("night.json", {"RunState", "CellStatus", "Status"}),
    ("job.json", {"JobState"}),
])
def test_records_round_trip_byte_for_byte(tmp_path, name, kinds):
    rec = through_typed_records(RECORDS, tmp_path, name)
    assert (tmp_path / name).read_bytes() == (RECORDS / name).read_bytes()
    typed = list(enum_fields(rec))
    assert {tp.__name__ for _, _, tp in typed} == kinds
    assert [w for w, v, tp in typed if type(v) is not tp] == []


def test_round_trip_sees_a_status_written_by_its_name(tmp_path, monkeypatch):
    """The mutant: a dump that writes a member's name ("NOT_RUN") where
    run.json has its value ("not run")."""
    real = jsonio.dump
    monkeypatch.setattr(jsonio, "dump",
                        lambda obj: obj.name if isinstance(obj, enum.Enum) else real(obj))
    for name in ("run.json", "night.json", "job.json"):
        through_typed_records(RECORDS, tmp_path, name)
        assert (tmp_path / name).read_bytes() != (RECORDS / name).read_bytes(), name


UNKNOWN = [
    ("run.json", ("configs", 0, "baseline", "build", "status"), "BuildStatus"),
    ("run.json", ("bisect", "steps", 1, "outcome"), "StepOutcome"),
    ("run.json", ("state",), "RunState"),
    ("night.json", ("cells", 2, "status"), "CellStatus"),
    ("night.json", ("cells", 0, "tests", 1, "patched"), "Status"),
    ("job.json", ("state",), "JobState"),
]


def refusal(tmp_path: Path, name: str, where: tuple) -> str | None:
    """The one line a reader gives for `name` with the status at `where`
    made up, or None when it takes the record."""
    data = json.loads((RECORDS / name).read_text())
    node = data
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = "EXPLODED"
    d = tmp_path / "bad"
    d.mkdir(exist_ok=True)
    (d / name).write_text(json.dumps(data))
    try:
        through_typed_records(d, tmp_path, name)
    except BadInput as e:
        return str(e)
    return None


@pytest.mark.parametrize("name,where,kind", UNKNOWN)
def test_an_unknown_status_is_refused_in_one_line(tmp_path, name, where, kind):
    line = refusal(tmp_path, name, where)
    assert line is not None and "\n" not in line, line
    assert f"'EXPLODED' is not a {kind} (one of " in line, line


@pytest.mark.parametrize("name,where,kind", UNKNOWN)
def test_a_reader_that_keeps_strings_takes_an_unknown_status(tmp_path, monkeypatch,
                                                              name, where, kind):
    """The mutant: statuses loaded as the strings they are, as before."""
    monkeypatch.setattr(jsonio, "_member", lambda tp, data: data)
    assert refusal(tmp_path, name, where) is None


def test_report_on_an_unknown_status_is_one_line(tmp_path):
    data = json.loads((RECORDS / "run.json").read_text())
    data["configs"][0]["patched"]["boot"]["status"] = "exploded"
    (tmp_path / "run.json").write_text(json.dumps(data))
    r = orch_report(tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        (f"orch: error: {tmp_path / 'run.json'} is not an orch run record: ValueError: "
         "'exploded' is not a BootStatus (one of 'ok', 'failed', 'not run')")]
    shutil.copy(RECORDS / "run.json", tmp_path / "run.json")
    assert orch_report(tmp_path).returncode == 1   # the record as it was: FAIL
