"""The run record: its JSON round trip, its schema file, and `orch report`
on records of other versions. Every run.json the rest of the suite writes
is validated against the schema by schema_check.py."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from schema_check import schema_errors

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


def full_record(tmp_path: Path) -> RunRecord:
    built = BuildRecord("ok", 12.5, False, "/k/bzImage", "/l/build.log", "abc", 3,
                        {"hits": 1, "misses": 2, "hit_rate": 0.33}, "Linux version 7.2.13", [])
    side = SideRecord(built, BootRecord("ok", "tcg", False, 30.0, "/l/console", "/r/junit.xml",
                                        "/r/harness.log", 1, None, "", "Linux version 7.2.13"),
                      Outcome("FAIL", "", False, None),
                      [TestRecord("guest_tests/t.py::a", "FAIL", "boom", 1.5, {"k": "v"},
                                  ["PASS", "FAIL"])],
                      [{"kind": "warning", "title": "x", "frames": [], "line": 3,
                        "fingerprint": "f"}], {"scale.json": {"n": [1, 2]}})
    crashed = SideRecord(BuildRecord("cached", 0.1, True, "/k2", "/l2", "def", 0, None, "b", []),
                         BootRecord("failed", "tcg", True, 5.0, "/c", None, None, None,
                                    "guest_tests/t.py::a", "kernel panicked: x", "b",
                                    ["line 1"]),
                         Outcome("ERROR", "kernel panicked: x", False, "guest_tests/t.py::a"),
                         [], [], {})
    cfg = ConfigRecord("base", side, crashed, {"status": "compared", "added": [], "removed": []},
                       [Comparison("guest_tests/t.py::a", "FAIL", "ERROR", "still failing", "")],
                       [], [], "FAIL", 0, Problems([], ["config base: x"], []))
    pending = ConfigRecord("debug")
    failed = ConfigRecord("kasan", SideRecord(BuildRecord("failed", log="/l/b.log"),
                                              BootRecord("not run"), tests=[]))
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
